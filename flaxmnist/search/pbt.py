"""Population-based training (Jaderberg et al. 2017), synchronous, over the configurations
a study drew (quasi-randomly) or listed.

Every ``interval`` epochs, in each grid, the bottom ``fraction`` of the configurations copy
the parameters and Adam state of one of the top ``fraction`` (drawn at random) and explore:
each searched number is multiplied by 0.8 or 1.25 (clipped to its prior's bounds) or, with
``resample_probability``, drawn again from its prior. A record's ``config`` is what its
lane trained with last, ``search.lineage`` every copy and change. Only lane keys change
(``keys.toml``: ``role = "lane"``); widths, batch size and the other static keys would
need another program.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from flaxmnist.run.steps import Copy, Standing, Step
from flaxmnist.search.base import Strategy, rank
from flaxmnist.search.halving import next_stop
from flaxmnist.specs.config import Config
from flaxmnist.specs.keys import CONFIG

#: Spec keys that may change during PBT without another program (lane keys), each with
#: its ``TrainSpec`` flag (empty: none, always compiled in).
FEATURES = {key.name: key.feature for key in CONFIG.values() if key.role == "lane"}


def pbt_epochs(interval: int, epochs: int) -> list[int]:
    """The epochs after which PBT exploits and explores (never after the last)."""
    return list(range(interval, epochs, interval))


class PBT(Strategy):
    """Population-based training (see the module)."""

    name = "pbt"
    tables = ("pbt",)
    shares_programs = True
    lockstep = True
    figure = "pbt"

    def __init__(self, study):
        super().__init__(study)
        self.lineage: dict[int, list[dict[str, Any]]] = {}

    def stop_after(self, epoch: int) -> int:
        return next_stop([*pbt_epochs(self.search.interval, self.epochs), self.epochs], epoch)

    def compiled_in(self) -> set[str]:
        return {FEATURES.get(p.key) for p in self.search.priors} - {"", None}

    def fields(self, index: int) -> dict[str, Any]:
        initial = self.study.configs[index].to_dict()
        return {
            "strategy": self.name,
            "initial": {p.key: initial[p.key] for p in self.search.priors},
            "lineage": list(self.lineage.get(index, [])),
        }

    def next(self, standing: Standing) -> Step:
        if standing.epoch >= self.epochs:
            return Step()
        copies: list[Copy] = []
        for number, grid in enumerate(standing.grids):
            copies += self._exploit_and_explore(standing, list(grid), number)
        fields = {copy.target: self.fields(copy.target) for copy in copies}
        return Step(copy=tuple(copies), until=self.stop_after(standing.epoch), fields=fields)

    def _exploit_and_explore(self, standing: Standing, grid: list[int], number: int) -> list:
        ranked = rank(standing, grid)
        count = int(len(ranked) * self.search.fraction)
        if count == 0:
            return []
        rng = np.random.default_rng([self.search.seed, standing.epoch, number])
        top, bottom = ranked[:count], ranked[-count:]
        sources = [top[rng.integers(count)] for _ in bottom]
        copies = []
        for loser, winner in zip(bottom, sources, strict=True):
            config = explore(standing.configs[winner], self.search, rng)
            copies.append(Copy(winner, loser, config))
            searched = {p.key: config.to_dict()[p.key] for p in self.search.priors}
            entry = {"epoch": standing.epoch, "copied_from": winner, **searched}
            self.lineage.setdefault(loser, []).append(entry)
        return copies

    def state(self) -> dict[str, Any]:
        return {"lineage": {str(c): v for c, v in self.lineage.items()}}

    def restore(self, saved: dict[str, Any]) -> None:
        self.lineage = {int(c): v for c, v in saved.get("lineage", {}).items()}


def explore(config: Config, search: Any, rng: np.random.Generator) -> Config:
    """``config`` with every searched number of ``search.priors`` perturbed (×0.8 or ×1.25,
    within the prior's bounds) or, with ``search.resample_probability``, drawn again; a
    ``choice`` is drawn again with that probability (one that changes the shape never)."""
    changes = {}
    for prior in search.priors:
        if prior.key not in FEATURES:
            continue  # widths, batch size: another program
        resample = rng.random() < search.resample_probability
        if resample or prior.kind == "choice":
            if resample:
                changes[prior.key] = prior.value(rng.random())
            continue
        current = getattr(config, prior.key)
        number = current[0] if isinstance(current, tuple) else current
        changes[prior.key] = prior.clip(number * (0.8 if rng.random() < 0.5 else 1.25))
    return _with(config, changes)


def _with(config: Config, changes: dict[str, Any]) -> Config:
    values = {}
    for key, value in changes.items():
        current = getattr(config, key)
        if isinstance(current, tuple) and not isinstance(value, list | tuple):
            value = (float(value),) * len(current)  # per-layer keys: one number for all
        values[key] = tuple(value) if isinstance(value, list) else value
    return replace(config, **values)
