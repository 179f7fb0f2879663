"""What a search strategy and the loop that trains its lanes say to each other.

A strategy (``flaxmnist.search``) never touches a grid, a device or the run directory, and
reads nothing of the loop: the loop (``run.stepped``) hands it a ``Standing``, what it
needs to decide (the configurations still training and their curves, the records so far,
the lanes a call holds, the budget left), and gets back a ``Step``, what to train next (new
configurations, configurations to stop, lanes to copy, the epoch to train to). The loop
trains the step, records what stopped, checkpoints, and asks again, until a step has
nothing left to train.

A step crosses processes as JSON (``to_dict``): in a many-process run, process 0 decides
and the others do as told.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from flaxmnist.specs.config import Config, config_from_dict


@dataclass(frozen=True)
class Copy:
    """Lanes to copy: configuration ``target`` takes the parameters and Adam's state of
    ``source`` (the same grid) and trains on as ``config``."""

    source: int
    target: int
    config: Config


@dataclass(frozen=True)
class Step:
    """What to train next.

    Attributes:
      add: new configurations by index, trained from epoch 0 (none may be training).
      stop: configurations that stop now; their records hold the epochs they trained.
      copy: lanes to copy (``Copy``), after ``stop``.
      until: the epoch to train every configuration still going to; 0: nothing left.
      fields: each configuration's ``search`` field in its records, where it changed.
      forget: configurations whose records an earlier attempt left incomplete: dropped, to
        be trained again.
      label: what the progress line says of this step (``"round 2"``).
      checkpoint: save the grids after the step is applied (a learned round restarts
        whole instead).
      sampler_seconds: the time the strategy spent in its sampler deciding.
    """

    add: Mapping[int, Config] = field(default_factory=dict)
    stop: tuple[int, ...] = ()
    copy: tuple[Copy, ...] = ()
    until: int = 0
    fields: Mapping[int, dict[str, Any]] = field(default_factory=dict)
    forget: tuple[int, ...] = ()
    label: str = ""
    checkpoint: bool = True
    sampler_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The step as JSON-ready data (``from_dict`` reads it back)."""
        return {
            "add": [[i, c.to_dict()] for i, c in self.add.items()],
            "stop": list(self.stop),
            "copy": [[c.source, c.target, c.config.to_dict()] for c in self.copy],
            "until": self.until,
            "fields": [[i, f] for i, f in self.fields.items()],
            "forget": list(self.forget),
            "label": self.label,
            "checkpoint": self.checkpoint,
            "sampler_seconds": self.sampler_seconds,
        }

    @staticmethod
    def from_dict(saved: dict[str, Any]) -> Step:
        return Step(
            add={i: config_from_dict(c) for i, c in saved["add"]},
            stop=tuple(saved["stop"]),
            copy=tuple(Copy(s, t, config_from_dict(c)) for s, t, c in saved["copy"]),
            until=saved["until"],
            fields={i: f for i, f in saved["fields"]},
            forget=tuple(saved["forget"]),
            label=saved["label"],
            checkpoint=saved["checkpoint"],
            sampler_seconds=saved["sampler_seconds"],
        )


@dataclass(frozen=True)
class Standing:
    """What a strategy is told before each decision.

    Attributes:
      epoch: the study's epochs so far: what its configurations trained in lockstep, or,
        where a strategy refills lanes (``Strategy.refills``), its clock (a configuration
        added at epoch ``s`` has trained ``epoch - s``).
      grids: the configurations still going, by grid (PBT copies lanes within one).
      configs: every configuration of the study so far, as it trains now.
      curves: per configuration going or stopped in this search, per seed, what
        ``records.selection_key`` ranks: ``{"history": {"val_accuracy": [...]},
        "val_accuracy": last}``.
      records: the study's records so far (earlier attempts' included).
      seeds: the training seeds, every configuration's.
      lanes: configurations one round may hold (every seed of each in one call).
      budget: training FLOPs the run may spend (``None``: no budget).
      budget_left: what is left of it, the records so far (every study's) counted.
      cost: training FLOPs of one epoch of a configuration, every seed.
    """

    epoch: int
    grids: tuple[tuple[int, ...], ...]
    configs: Mapping[int, Config]
    curves: Mapping[int, list[dict[str, Any]]]
    records: list[dict[str, Any]]
    seeds: tuple[int, ...]
    lanes: int
    budget: float | None
    budget_left: float | None
    cost: Callable[[Config], int]

    @property
    def going(self) -> list[int]:
        """The configurations still training, grid by grid."""
        return [c for grid in self.grids for c in grid]
