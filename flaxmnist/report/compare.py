"""``python -m flaxmnist.report --compare``: runs of several strategies side by side, each
number with its uncertainty.

Per label (a strategy; its runs the repeats, given in repeat order): the holdout and test
accuracy of the configuration the holdout selects in each run (mean ± std over runs), the
test accuracy's 95 % bootstrap interval, the compute spent, and the compute its runs needed
to reach the first label's median final holdout accuracy. Then each label against the
first, repeat by repeat: McNemar's exact test of the two selected configurations on the
test set (from ``model.json``'s ``test_errors``), and a verdict that calls a difference
smaller than one standard error of the accuracy no difference (``report.stats``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from flaxmnist.report.search import search_trace
from flaxmnist.report.stats import (
    accuracy_standard_error,
    bootstrap_interval,
    compute_to_reach,
    mcnemar,
)
from flaxmnist.run.records import best_config

ACCURACIES = ("val_accuracy", "test_accuracy")
SIGNIFICANCE = 0.05


@dataclass(frozen=True)
class Run:
    """One run of a label: its study's records and what its ``model.json`` says (``{}``:
    no kept model)."""

    records: list[dict[str, Any]]
    model: dict[str, Any]


def read_model(directory: Path, study: str) -> dict[str, Any]:
    """``models/<study>/model.json`` of a run directory, or ``{}``."""
    try:
        return json.loads((directory / "models" / study / "model.json").read_text())
    except (OSError, ValueError):
        return {}


def selected(records: Sequence[dict[str, Any]]) -> tuple[float, float]:
    """Holdout and test accuracy (means over seeds) of the configuration that
    ``records.best_config`` selects among those with every seed."""
    by_config: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        by_config.setdefault(record["config_index"], []).append(record)
    chosen = by_config[best_config(records, max(map(len, by_config.values())))]
    val, test = ([np.nan if r[k] is None else r[k] for r in chosen] for k in ACCURACIES)
    return float(np.mean(val)), float(np.mean(test))


def _spread(values: Sequence[float]) -> str:
    """Mean ± sample std over runs, in %; the mean alone for one run."""
    text = f"{100 * np.mean(values):.2f}"
    return text + (f" ± {100 * np.std(values, ddof=1):.2f}" if len(values) > 1 else "")


def _interval(values: Sequence[float]) -> str:
    if len(values) < 2:
        return "-"
    low, high = bootstrap_interval(values)
    return f"{100 * low:.2f}-{100 * high:.2f}"


def _reach(runs: Sequence[Run], target: float) -> str:
    """The median compute the runs needed to reach ``target``, and how many did."""
    needed = [compute_to_reach(*search_trace(run.records), target) for run in runs]
    reached = sum(np.isfinite(needed))
    median = np.median(needed)
    return (
        f"{median:.3g} ({reached} of {len(runs)})"
        if np.isfinite(median)
        else (f"not reached ({reached} of {len(runs)})")
    )


def comparison(runs: Mapping[str, Sequence[Run]]) -> str:
    """The text of ``--compare`` (see the module)."""
    reference, *_ = runs
    target = float(np.median([np.nanmax(search_trace(r.records)[1]) for r in runs[reference]]))
    width = max(5, *map(len, runs))
    lines = [
        f"{'label':<{width}}  runs  holdout % (selected)  test % (selected)  test % 95% CI  "
        f"compute (FLOP)  compute to {100 * target:.2f} % holdout"
    ]
    for name, group in runs.items():
        chosen = [selected(run.records) for run in group]
        tests = [t for _, t in chosen]
        spent = np.mean([sum(r["compute"] for r in run.records) for run in group])
        lines.append(
            f"{name:<{width}}  {len(group):>4}  {_spread([v for v, _ in chosen]):<20}  "
            f"{_spread(tests):<17}  {_interval(tests):<13}  {spent:<14.4g}  "
            f"{_reach(group, target)}"
        )
    lines.append(
        "selected: in each run, the configuration with the best mean holdout accuracy over "
        "seeds (flaxmnist.run.records.best_config),\nits accuracies the means over seeds; ± the "
        "sample std over runs; CI: the percentile bootstrap of the mean over runs;\ncompute: "
        "training FLOPs, all seeds, mean over runs; compute to the first label's median final "
        f"holdout ({reference}): median over runs (how many reached it)"
    )
    paired = [_paired(name, runs[reference], group) for name, group in runs.items()]
    if any(paired[1:]):
        lines.append(_paired_heading(reference, runs[reference]))
        lines += [line for line in paired[1:] if line]
    return "\n".join(lines)


def _paired_heading(reference: str, runs: Sequence[Run]) -> str:
    images = next((r.model.get("test_images") for r in runs if r.model.get("test_images")), 0)
    accuracy = float(np.mean([selected(r.records)[1] for r in runs]))
    error = accuracy_standard_error(accuracy, images) if images else float("nan")
    return (
        f"paired with {reference}, repeat by repeat: McNemar's exact test of the two selected "
        f"configurations on the {images:,} test images;\na mean difference under one standard "
        f"error of the accuracy ({100 * error:.2f} points at {100 * accuracy:.2f} %) is no "
        "difference"
    )


def _paired(name: str, reference: Sequence[Run], group: Sequence[Run]) -> str:
    """One label against the reference, run by run (``""``: no kept predictions)."""
    pairs = [
        (a, b)
        for a, b in zip(reference, group, strict=False)
        if all("test_errors" in m and "test_images" in m for m in (a.model, b.model))
    ]
    if not pairs:
        return ""
    tests = [mcnemar(a.model["test_errors"], b.model["test_errors"]) for a, b in pairs]
    images = pairs[0][0].model["test_images"]
    differences = [(b_only - a_only) / images for a_only, b_only, _ in tests]
    better = sum(
        p < SIGNIFICANCE and d > 0 for (_, _, p), d in zip(tests, differences, strict=True)
    )
    worse = sum(p < SIGNIFICANCE and d < 0 for (_, _, p), d in zip(tests, differences, strict=True))
    mean = float(np.mean(differences))
    accuracy = float(np.mean([selected(a.records)[1] for a, _ in pairs]))
    if abs(mean) < accuracy_standard_error(accuracy, images):
        verdict = "no difference"
    elif better > len(pairs) / 2 or worse > len(pairs) / 2:
        verdict = "better" if better > worse else "worse"
    else:
        verdict = "not significant"
    ps = " ".join(f"{p:.2g}" for _, _, p in tests)
    return (
        f"  {name}: {100 * mean:+.2f} points (mean of {len(pairs)}); p = {ps}; better in "
        f"{better}, worse in {worse} (p < {SIGNIFICANCE}): {verdict}"
    )
