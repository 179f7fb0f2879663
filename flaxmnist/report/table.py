"""Tables and CSV from records: one row per configuration, mean ± std over seeds.

Works from records alone (the dicts of ``results.jsonl``); nothing here trains.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flaxmnist.specs import CONFIG_KEYS

#: Config keys that are hyperparameters (a record's config also describes the data).
HYPERPARAMETER_KEYS = CONFIG_KEYS


def varied_keys(records: Sequence[dict[str, Any]]) -> list[str]:
    """Hyperparameters whose value differs between the configurations of ``records``."""
    keys = [
        key
        for key in HYPERPARAMETER_KEYS
        if len({repr(record["config"].get(key)) for record in records}) > 1
    ]
    return keys or ["learning_rate"]


def _mean_std(values: list[float | None]) -> tuple[float, float]:
    array = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    std = float(np.std(array, ddof=1)) if len(array) > 1 else float("nan")
    return float(np.mean(array)), std


def mean_curve(records: Sequence[dict[str, Any]], key: str = "val_accuracy") -> np.ndarray:
    """Per-epoch mean over ``records`` (seeds) of ``history[key]``; null counts as NaN."""
    curves = [[np.nan if v is None else v for v in r["history"][key]] for r in records]
    return np.mean(np.array(curves, dtype=np.float64), axis=0)


def _best_epoch(records: Sequence[dict[str, Any]]) -> int | None:
    curve = mean_curve(records)
    return None if np.all(np.isnan(curve)) else int(np.nanargmax(curve)) + 1


def summarize(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration, in study order, with seed statistics.

    Each row has ``config_index``, ``config``, ``seeds``, ``val_mean``, ``val_std``,
    ``test_mean``, ``test_std`` (std is the sample std over seeds, NaN for one seed),
    ``best_epoch`` (1-based epoch of the highest mean validation accuracy), and
    ``diverged`` and ``at_chance`` (how many seeds did).

    Example::

        >>> import flaxmnist
        >>> records = flaxmnist.run_sweep("lr", epochs=1, seeds=2, limit_train=400)
        >>> rows = flaxmnist.summarize(records)
        >>> len(rows), rows[0]["seeds"], sorted(rows[0])[:3]
        (24, 2, ['at_chance', 'best_epoch', 'config'])
    """
    by_index: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        by_index.setdefault(record["config_index"], []).append(record)
    rows = []
    for index in sorted(by_index):
        group = by_index[index]
        val_mean, val_std = _mean_std([r["val_accuracy"] for r in group])
        test_mean, test_std = _mean_std([r["test_accuracy"] for r in group])
        rows.append(
            {
                "config_index": index,
                "config": group[0]["config"],
                "seeds": len(group),
                "val_mean": val_mean,
                "val_std": val_std,
                "test_mean": test_mean,
                "test_std": test_std,
                "best_epoch": _best_epoch(group),
                "diverged": sum(bool(r["diverged"]) for r in group),
                "at_chance": sum(bool(r["at_chance"]) for r in group),
            }
        )
    return rows


def best_row(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The configuration with the highest mean validation accuracy (first one on ties)."""
    return max(
        rows, key=lambda row: (np.nan_to_num(row["val_mean"], nan=-1.0), -row["config_index"])
    )


def format_value(value: Any) -> str:
    if isinstance(value, list):
        return "-".join(format_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _format_accuracy(mean: float, std: float) -> str:
    if np.isnan(mean):
        return "n/a"
    if np.isnan(std):
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def _status(row: dict[str, Any]) -> str:
    parts = [
        f"{label} {row[key]}/{row['seeds']}"
        for key, label in (("diverged", "diverged"), ("at_chance", "at chance"))
        if row[key]
    ]
    return ", ".join(parts) or "ok"


def split_by_study(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records grouped by their ``study`` field, in first-seen order."""
    studies: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        studies.setdefault(record["study"], []).append(record)
    return studies


def format_table(records: Sequence[dict[str, Any]]) -> str:
    """Each study's table as text: varied hyperparameters, accuracies in %, status, best.

    Example::

        >>> import flaxmnist
        >>> records = flaxmnist.run_sweep("lr", epochs=1, seeds=1, limit_train=400)
        >>> print(flaxmnist.format_table(records).splitlines()[1])  # doctest: +NORMALIZE_WHITESPACE
        #   learning_rate  holdout acc %  test acc %  status
    """
    if not records:
        return "(no results)"
    return "\n\n".join(_format_study(r) for r in split_by_study(records).values())


def _format_study(records: Sequence[dict[str, Any]]) -> str:
    rows = summarize(records)
    keys = varied_keys(records)
    config = records[0]["config"]
    seeds = rows[0]["seeds"]
    holdout = config.get("validate_on", "holdout") == "holdout"
    val_name = "holdout acc %" if holdout else "val(=test) acc %"
    header = ["#", *keys, val_name, "test acc %", "status"]
    body = []
    for row in rows:
        status = _status(row)
        body.append(
            [
                str(row["config_index"] + 1),
                *(format_value(row["config"].get(key)) for key in keys),
                _format_accuracy(row["val_mean"], row["val_std"]),
                _format_accuracy(row["test_mean"], row["test_std"]),
                status,
            ]
        )
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [
        f"study {records[0]['study']}: {len(rows)} configs x {seeds} seed(s), "
        f"{config.get('train_size', '?')} training images, "
        + (
            "validation on the holdout (last 10,000 training images, never trained on)"
            if holdout
            else "validation on the TEST set (the notebook's protocol)"
        ),
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False)),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False)) for line in body]
    best = best_row(rows)
    setting = ", ".join(f"{key}={format_value(best['config'].get(key))}" for key in keys)
    lines.append(
        f"best by {'holdout' if holdout else 'validation'} accuracy: #{best['config_index'] + 1} "
        f"({setting}): validation {_format_accuracy(best['val_mean'], best['val_std'])} %, "
        f"test {_format_accuracy(best['test_mean'], best['test_std'])} %"
    )
    if not holdout:
        lines.append(
            "note: the test set was used for selection, so the best test accuracy is optimistic"
        )
    if any(r["config"].get("dropout_semantics") == "keras1" for r in records):
        lines.append(
            "note: keras1 dropout semantics: a rate of 1.0 (or 0) trains with no dropout, as "
            "Keras 1's Dropout did"
        )
    if seeds > 1:
        lines.append(f"(mean ± sample std over {seeds} paired seeds)")
    return "\n".join(lines)


SUMMARY_COLUMNS = (
    "study",
    "config",
    *HYPERPARAMETER_KEYS,
    "validate_on",
    "train_size",
    "seeds",
    "val_mean",
    "val_std",
    "test_mean",
    "test_std",
    "best_epoch",
    "diverged",
    "at_chance",
)


def write_summary_csv(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write ``summary.csv``: one row per (study, configuration), columns ``SUMMARY_COLUMNS``.

    Lists (layer widths, per-layer rates) are written as ``300-150``; accuracies as
    fractions; an empty cell is a missing value (one seed has no std).
    """
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SUMMARY_COLUMNS)
        for study, study_records in split_by_study(records).items():
            for row in summarize(study_records):
                config = row["config"]
                values = {**config, **row, "study": study, "config": row["config_index"] + 1}
                writer.writerow(
                    [
                        "" if _missing(values.get(c)) else format_value(values.get(c))
                        for c in SUMMARY_COLUMNS
                    ]
                )
    return path


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))
