"""``summary.csv``: the table as CSV, one row per (study, configuration)."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flaxmnist.report.table import HYPERPARAMETER_KEYS, format_value, split_by_study, summarize

SUMMARY_COLUMNS = (
    "study",
    "config",
    *HYPERPARAMETER_KEYS,
    "validate_on",
    "train_size",
    "seeds",
    "val_mean_pct",
    "val_std_pct",
    "test_mean_pct",
    "test_std_pct",
    "ensemble_seeds",
    "ensemble_val_accuracy_pct",
    "ensemble_test_accuracy_pct",
    "best_epoch",
    "diverged",
    "at_chance",
)


def write_summary_csv(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write ``summary.csv``: one row per (study, configuration), columns ``SUMMARY_COLUMNS``.

    ``config`` is the 1-based configuration number of the table. Accuracies are in percent
    (``val_mean_pct`` ... ``test_std_pct``: mean and sample std over seeds of the last
    epoch; ``val`` is the split that selects, ``validate_on`` names it); ``ensemble_*``:
    the ensemble of the seeds (empty for one seed), never what selects. Lists (layer widths
    ``hidden``, per-layer ``dropout`` and ``l2``) are JSON arrays, e.g. ``[300, 150]`` and
    ``[0.0, 0.0]`` (quoted, as they hold commas), so ``json.loads`` reads them back. An
    empty cell is a missing value (one seed has no std; a diverged mean has no value).
    """
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SUMMARY_COLUMNS)
        for study, study_records in split_by_study(records).items():
            for row in summarize(study_records):
                values = {**row["config"], "study": study, "config": row["config_index"] + 1}
                values |= {k: row[k] for k in ("seeds", "best_epoch", "diverged", "at_chance")}
                for key in ("val_mean", "val_std", "test_mean", "test_std"):
                    values[f"{key}_pct"] = None if _missing(row[key]) else 100 * row[key]
                for key, value in (row["ensemble"] or {}).items():
                    name = "ensemble_seeds" if key == "seeds" else f"ensemble_{key}_pct"
                    values[name] = value if key == "seeds" or value is None else 100 * value
                writer.writerow([_csv_cell(values.get(c)) for c in SUMMARY_COLUMNS])
    return path


def _csv_cell(value: Any) -> str:
    if _missing(value):
        return ""
    if isinstance(value, list):
        return json.dumps(value)
    return format_value(value)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))
