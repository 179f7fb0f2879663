"""Records: one JSON-ready dict per lane, from a call's per-epoch metrics.

A record is what ``results.jsonl`` holds and ``run_sweep`` returns, less the ``study`` and
``config`` the runner adds. Floats are float32 written as their shortest round-tripping
decimal, so a record reads back to the very numbers trained.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from flaxmnist.specs.config import HISTORY_KEYS


def json_float(value: Any) -> float | None:
    """A float32 as the shortest decimal that round-trips; non-finite becomes None (null)."""
    value = np.float32(value)
    return float(str(value)) if np.isfinite(value) else None


def make_records(
    history: dict[str, np.ndarray],
    config_indices: Sequence[int],
    seeds: Sequence[int],
    chance_accuracy: float,
) -> list[dict[str, Any]]:
    """One partial record per lane, configuration-major, from ``[seed, config, epoch]`` arrays.

    Each has ``config_index``, ``seed``, ``history`` (lists per ``HISTORY_KEYS``),
    ``val_accuracy`` and ``test_accuracy`` (last epoch), ``diverged`` (a ``nonfinite`` epoch)
    and ``at_chance`` (finite, but the last validation accuracy is no better than
    ``chance_accuracy``).
    """
    records = []
    for column, index in enumerate(config_indices):
        for row, seed in enumerate(seeds):
            lane = {key: [json_float(v) for v in history[key][row, column]] for key in HISTORY_KEYS}
            diverged = bool(np.any(history["nonfinite"][row, column]))
            last_val = history["val_accuracy"][row, column][-1]
            records.append(
                {
                    "config_index": index,
                    "seed": seed,
                    "history": lane,
                    "val_accuracy": lane["val_accuracy"][-1],
                    "test_accuracy": lane["test_accuracy"][-1],
                    "diverged": diverged,
                    "at_chance": not diverged and bool(last_val <= chance_accuracy),
                }
            )
    return records


def selection_key(config_index: int, records: Sequence[dict[str, Any]]) -> tuple:
    """How one configuration's records (its seeds) rank, higher first: most epochs trained
    (a search stops the losers early), then mean validation accuracy (a NaN, from a diverged
    seed, ranks as -1), then the lower ``config_index``."""
    epochs = max(len(r["history"]["val_accuracy"]) for r in records)
    values = [np.nan if r["val_accuracy"] is None else r["val_accuracy"] for r in records]
    return epochs, float(np.nan_to_num(np.mean(values), nan=-1.0)), -config_index


def best_config(records: Sequence[dict[str, Any]], seeds: int) -> int | None:
    """The ``config_index`` that validation selects (``selection_key``) among the
    configurations with ``seeds`` records or more; ``None`` when there is none yet."""
    by_index: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        by_index.setdefault(record["config_index"], []).append(record)
    complete = {c: group for c, group in by_index.items() if len(group) >= seeds}
    if not complete:
        return None
    return max(complete, key=lambda c: selection_key(c, complete[c]))
