"""A configuration's records as one Optuna trial: what a sampler is told, and what
``optuna.db`` holds.

A configuration of a study, with all its seeds, is one trial. Its outcome (``outcome``):

- **failed**: a seed diverged, so the mean over seeds has no value;
- **pruned**: it trained fewer epochs than its configuration asks (a halving rung or the
  budget stopped it); its value is its last seed-mean holdout accuracy;
- **complete**: its values are the seed-mean holdout accuracy of the last epoch and, with two
  objectives, its cost (``cost``).

Its intermediate values are the seed-mean holdout accuracies of every epoch (1-based). The
test accuracy is never a value: it is kept beside, as a user attribute. Everything here is
read from records (the dicts of ``results.jsonl``), so a sampler told during a run and one
rebuilt from the run directory after a kill are told the very same numbers.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flaxmnist.specs.config import PER_LAYER_KEYS

COMPLETE, PRUNED, FAILED = "complete", "pruned", "failed"
INPUT_SIZE, NUM_CLASSES = 784, 10


@dataclass(frozen=True)
class Outcome:
    """What a configuration's seeds amount to as a trial (see the module)."""

    state: str
    values: tuple[float, ...] | None
    intermediate: dict[int, float]


def seed_mean(values: Sequence[float | None]) -> float:
    """The mean over seeds of a record field (``None``, a non-finite value, counts as NaN)."""
    return float(np.mean([np.nan if v is None else v for v in values]))


def intermediate_values(records: Sequence[dict[str, Any]]) -> dict[int, float]:
    """Epoch (1-based) → seed-mean holdout accuracy, for the epochs every seed has a value."""
    curves = zip(*(r["history"]["val_accuracy"] for r in records), strict=False)
    means = {epoch: seed_mean(values) for epoch, values in enumerate(curves, 1)}
    return {epoch: mean for epoch, mean in means.items() if np.isfinite(mean)}


def cost(records: Sequence[dict[str, Any]], objective: str) -> float:
    """A configuration's second objective: its ``params`` (weights and biases) or the
    ``compute`` of one seed's training (training FLOPs, mean over its seeds)."""
    if objective == "params":  # as models.param_count, without importing JAX to read results
        sizes = [INPUT_SIZE, *records[0]["config"]["hidden"], NUM_CLASSES]
        return float(sum((a + 1) * b for a, b in zip(sizes, sizes[1:], strict=False)))
    if objective == "compute":
        return float(np.mean([r.get("compute", 0) for r in records]))
    raise ValueError(f"no such objective: {objective!r}")


def outcome(
    records: Sequence[dict[str, Any]], objectives: Sequence[str] = ("val_accuracy",)
) -> Outcome:
    """The trial that the records of one configuration (every seed) make."""
    intermediate = intermediate_values(records)
    trained = min(len(r["history"]["val_accuracy"]) for r in records)
    accuracy = seed_mean([r["val_accuracy"] for r in records])
    if any(r["diverged"] for r in records) or not np.isfinite(accuracy):
        return Outcome(FAILED, None, intermediate)
    if trained < records[0]["config"].get("epochs", trained):
        return Outcome(PRUNED, (accuracy,), intermediate)
    values = (accuracy, *(cost(records, name) for name in objectives[1:]))
    return Outcome(COMPLETE, values, intermediate)


def param_value(key: str, value: Any) -> bool | int | float | str:
    """A spec value as an Optuna parameter: a number or string as it is; layer widths as
    JSON text (``"[1024, 1024]"``); a per-layer list as its number when every layer has the
    same, else as JSON text."""
    if isinstance(value, list | tuple):
        if key in PER_LAYER_KEYS and len(set(value)) == 1:
            return value[0]
        return json.dumps(list(value))
    return value


def named_param(name: str, config: dict[str, Any]) -> Any:
    """The Optuna parameter ``name`` of a configuration (``config``: ``Config.to_dict()``):
    a key's ``param_value``, or of a ``layers`` prior ``hidden.depth`` and
    ``hidden.width_<layer>`` (``None`` past its depth)."""
    hidden = config.get("hidden", [])
    if name == "hidden.depth":
        return len(hidden)
    if name.startswith("hidden.width_"):
        layer = int(name.rsplit("_", 1)[1])
        return hidden[layer - 1] if layer <= len(hidden) else None
    return param_value(name, config[name])


def by_config(records: Sequence[dict[str, Any]]) -> dict[int, list[dict[str, Any]]]:
    """A study's records grouped by ``config_index`` (in index order), seeds in order."""
    groups: dict[int, list[dict[str, Any]]] = {}
    for record in sorted(records, key=lambda r: (r["config_index"], r["seed"])):
        groups.setdefault(record["config_index"], []).append(record)
    return groups


def objectives_of(records: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    """The objectives a study's records were searched for (``search.objectives``)."""
    return tuple(records[0].get("search", {}).get("objectives", ["val_accuracy"]))


def pareto_front(records: Sequence[dict[str, Any]]) -> list[int]:
    """The ``config_index`` of every complete configuration that no other dominates (as
    accurate or more on the holdout and as cheap or cheaper, better in one), by accuracy
    then cost; ``[]`` for a study of one objective.

    Example::

        >>> def record(index, accuracy, hidden):
        ...     return {"config_index": index, "seed": 0, "val_accuracy": accuracy,
        ...             "diverged": False, "history": {"val_accuracy": [accuracy]},
        ...             "config": {"hidden": hidden, "epochs": 1},
        ...             "search": {"objectives": ["val_accuracy", "params"]}}
        >>> pareto_front([record(0, 0.9, [8]), record(1, 0.95, [64]), record(2, 0.93, [64])])
        [1, 0]
    """
    objectives = objectives_of(records)
    if len(objectives) < 2:
        return []
    points = {
        index: result.values
        for index, group in by_config(records).items()
        if (result := outcome(group, objectives)).state == COMPLETE
    }
    front = [
        index
        for index, (accuracy, price) in points.items()
        if not any(
            a >= accuracy and p <= price and (a > accuracy or p < price) for a, p in points.values()
        )
    ]
    return sorted(front, key=lambda i: (-points[i][0], points[i][1], i))
