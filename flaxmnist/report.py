"""Tables from results: one row per configuration, mean ± std over seeds.

Works from records alone (the dicts of ``results.jsonl``), so a finished run can be
re-reported without training anything.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

#: Config keys that are hyperparameters (the others describe the data).
HYPERPARAMETER_KEYS = (
    "hidden",
    "dropout",
    "learning_rate",
    "l2",
    "weight_decay",
    "epochs",
    "batch_size",
)


def varied_keys(records: Sequence[dict[str, Any]]) -> list[str]:
    """Hyperparameters whose value differs between the configurations of ``records``."""
    keys = [
        key
        for key in HYPERPARAMETER_KEYS
        if len({repr(record["config"][key]) for record in records}) > 1
    ]
    return keys or ["learning_rate"]


def _mean_std(values: list[float | None]) -> tuple[float, float]:
    array = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    std = float(np.std(array, ddof=1)) if len(array) > 1 else float("nan")
    return float(np.mean(array)), std


def summarize(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration, in study order, with seed statistics.

    Each row has ``config_index``, ``config``, ``seeds``, ``val_mean``, ``val_std``,
    ``test_mean``, ``test_std`` (std is the sample std over seeds, NaN for one seed) and
    ``diverged`` and ``at_chance`` (how many seeds did).
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


def _format_value(value: Any) -> str:
    if isinstance(value, list):
        return "-".join(_format_value(v) for v in value)
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


def format_table(records: Sequence[dict[str, Any]]) -> str:
    """The study's table as text: varied hyperparameters, accuracies in %, status, best row."""
    if not records:
        return "(no results)"
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
                *(_format_value(row["config"][key]) for key in keys),
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
    setting = ", ".join(f"{key}={_format_value(best['config'][key])}" for key in keys)
    lines.append(
        f"best by {'holdout' if holdout else 'validation'} accuracy: #{best['config_index'] + 1} "
        f"({setting}): validation {_format_accuracy(best['val_mean'], best['val_std'])} %, "
        f"test {_format_accuracy(best['test_mean'], best['test_std'])} %"
    )
    if not holdout:
        lines.append(
            "note: the test set was used for selection, so the best test accuracy is optimistic"
        )
    if seeds > 1:
        lines.append(f"(mean ± sample std over {seeds} paired seeds)")
    return "\n".join(lines)
