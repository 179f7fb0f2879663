"""What a learned search optimises: ``objectives = ["val_accuracy"]`` (the default), or
``["val_accuracy", "params"]`` or ``["val_accuracy", "compute"]``: the holdout accuracy
maximised and a cost minimised, the parameter count or one seed's training FLOPs
(``trials.cost``). Two objectives make a Pareto front (``trials.pareto_front``).
"""

from __future__ import annotations

from typing import Any

from flaxmnist.errors import SpecError

#: What ``objectives`` may name: the first is always the holdout accuracy (maximised); a
#: second is minimised.
OBJECTIVES = ("val_accuracy", "params", "compute")


def parse_objectives(source: str, value: Any) -> tuple[str, ...]:
    """A spec's ``objectives``, checked: ``["val_accuracy"]`` and at most one cost.

    Raises:
      SpecError: naming ``source``, the value and what is wrong with it.
    """
    where = f"{source}: objectives = {value!r}"
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise SpecError(f'{where}: expected a list of metric names, e.g. ["val_accuracy"]')
    for name in value:
        if name not in OBJECTIVES:
            raise SpecError(
                f"{where}: {name!r} is not a metric flaxmnist optimises (known: "
                f"{', '.join(OBJECTIVES)})"
            )
    if not value or value[0] != "val_accuracy" or len(value) > 2 or len(set(value)) < len(value):
        raise SpecError(
            f'{where}: expected ["val_accuracy"] or ["val_accuracy", "params" | '
            '"compute"] (holdout accuracy maximised, then a cost minimised)'
        )
    return tuple(value)
