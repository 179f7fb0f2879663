"""Search strategies as drivers of lane grids: successive halving and population-based
training (PBT), synchronous, over the configurations a study drew (``flaxmnist.specs.space``).

Lanes train in lockstep, so ranking them is a host step between epochs and keeping or
copying them is a gather on the device (``LaneGrid.keep`` / ``copy``). A study's
configurations are grouped by shape (one program each) and each group is one grid when the
memory budget allows, else several. A configuration's seeds rank by their mean validation
(holdout) accuracy; ties go to the lower index.

- **Successive halving**: rungs at ``min_epochs * eta**k`` epochs (and the last at
  ``epochs``); at each rung but the last the best ``max(1, n // eta)`` of the ``n``
  configurations still training, over every grid, go on; the others stop, and their records
  hold the epochs they trained.
- **PBT**: every ``interval`` epochs, in each grid, the bottom ``fraction`` of the
  configurations copy the parameters and Adam state of one of the top ``fraction`` (drawn
  at random) and explore: each searched number is multiplied by 0.8 or 1.25 (clipped to its
  prior's bounds) or, with ``resample_probability``, drawn again from its prior. A record's
  ``config`` is what its lane trained with last, ``search.lineage`` every copy and change.

The compute a run may spend (``SweepLoop.budget``, training FLOPs) is checked before every
epoch: a search that would pass it stops there, and its lanes keep the epochs they trained.
After every rung or PBT step the grids' state is saved (``SearchState``), so a killed run
loses at most the work since, and resumes to the same final results.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import replace
from typing import Any

import numpy as np

from flaxmnist.errors import FlaxmnistWarning
from flaxmnist.run.grid import LaneGrid
from flaxmnist.run.loop import SweepLoop
from flaxmnist.run.plan import Call, group_configs, hyperparams_of, split_call, train_flops
from flaxmnist.run.records import selection_key
from flaxmnist.search.state import SearchState, restore_grids, save_state
from flaxmnist.specs.config import Config, Study
from flaxmnist.specs.keys import CONFIG

#: Spec keys that may change during PBT without another program (lane keys), each with
#: its ``TrainSpec`` flag (empty: none, always compiled in).
FEATURES = {key.name: key.feature for key in CONFIG.values() if key.role == "lane"}


def rung_epochs(min_epochs: int, eta: int, epochs: int) -> list[int]:
    """The epochs at which successive halving ranks: ``min_epochs * eta**k``, then ``epochs``.

    Example::

        >>> rung_epochs(1, 3, 9), rung_epochs(1, 3, 10), rung_epochs(2, 2, 2)
        ([1, 3, 9], [1, 3, 9, 10], [2])
    """
    rungs, epoch = [], min_epochs
    while epoch < epochs:
        rungs.append(epoch)
        epoch *= eta
    return [*rungs, epochs]


def pbt_epochs(interval: int, epochs: int) -> list[int]:
    """The epochs after which PBT exploits and explores (never after the last)."""
    return list(range(interval, epochs, interval))


class SearchDriver:
    """Runs one search study (halving or PBT) for a ``SweepLoop``: its records, best model
    and run directory. Call it with the loop (``SweepLoop.run(..., then=[driver])``)."""

    def __init__(self, study_index: int, lanes_per_call: Any, pad_widths: bool = False):
        self.study_index = study_index
        self.lanes_per_call = lanes_per_call  # TrainSpec -> lanes one grid may hold
        self.pad_widths = pad_widths  # configurations of one depth share a program

    def __call__(self, loop: SweepLoop) -> None:
        self.loop = loop
        self.study: Study = loop.studies[self.study_index]
        self.epochs = max(c.epochs for c in self.study.configs)
        if self._finished():
            loop.progress.skipped(f"{self.study.name} [{self.study.strategy}]")
            return
        state = SearchState.read(loop.out, self.study.name) if loop.out else None
        if state is None:
            state = SearchState(epoch=0, configs={i: c for i, c in enumerate(self.study.configs)})
            grids = self._new_grids(state)
        else:
            grids = restore_grids(state, self._grid)
        self._run(state, grids)

    def _finished(self) -> bool:
        done = {c for (s, c, _) in self.loop.done if s == self.study_index}
        return len(done) == len(self.study.configs) and all(
            (self.study_index, c, seed) in self.loop.done for c in done for seed in self.loop.seeds
        )

    def _grid(self, spec, configs: list[int], state: SearchState) -> LaneGrid:
        hparams = [hyperparams_of(spec, state.configs[c]) for c in configs]
        grid = LaneGrid(
            spec, hparams, self.loop.seeds, self.loop.data, mesh=self.loop.mesh,
            stats=self.loop.stats, config_indices=configs,
        )  # fmt: skip
        return grid

    def _new_grids(self, state: SearchState) -> list[LaneGrid]:
        """Grids of ``state.configs`` (one program per group, split to fit), initialised."""
        loop, pbt = self.loop, self.study.strategy == "pbt"
        indices = sorted(state.configs)
        groups = group_configs(
            [state.configs[i] for i in indices], loop.data_settings["validate_on"] == "test",
            split_regularisers=not pbt, dtype=loop.data_settings["dtype"],
            pad_widths=self.pad_widths,
        )  # fmt: skip
        grids = []
        for group in groups:
            spec = replace(group.spec, epochs=self.epochs)
            if pbt:
                searched = {FEATURES.get(p.key) for p in self.study.search.priors} - {"", None}
                spec = replace(spec, **{flag: True for flag in searched})
            members = tuple(indices[i] for i in group.config_indices)
            whole = Call(self.study_index, spec, members, loop.seeds)
            for call in split_call(whole, self.lanes_per_call(spec)):
                grid = self._grid(spec, list(call.config_indices), state)
                grid.init()
                grids.append(grid)
        return grids

    def _stops(self) -> list[int]:
        """The epochs after which the strategy acts: halving's rungs, PBT's steps."""
        if self.study.strategy == "pbt":
            return pbt_epochs(self.study.search.interval, self.epochs)
        if self.study.search.halving:
            return rung_epochs(self.study.search.min_epochs, self.study.search.eta, self.epochs)
        return []

    def _run(self, state: SearchState, grids: list[LaneGrid]) -> None:
        for stop in [s for s in self._stops() if s > state.epoch] + [self.epochs]:
            if stop <= state.epoch:
                continue
            if not self._train_until(state, grids, stop):
                break  # the budget is spent
            if stop == self.epochs:
                break
            if self.study.strategy == "pbt":
                self._exploit_and_explore(state, grids)
            else:
                grids = self._halve(state, grids)
            self._checkpoint(state, grids)
        self._finish(state, grids)

    def _train_until(self, state: SearchState, grids: list[LaneGrid], stop: int) -> bool:
        """Step every grid to epoch ``stop``; ``False`` if the budget ran out first."""
        loop = self.loop
        label = f"{self.study.name} [{self._label()}, {state.epoch}->{stop} epochs]"
        loop.progress.call_started(label, (stop - state.epoch) * len(grids))
        try:
            start = time.perf_counter()
            hows = {grid.compile() for grid in grids}
            how = next(h for h in ("compiled", "loaded", "reused") if h in hows)
            loop.progress.compiled(time.perf_counter() - start, how)
            while state.epoch < stop:
                cost = sum(self._epoch_cost(g, state) for g in grids)
                if loop.budget is not None and self._spent(state, grids) + cost > loop.budget:
                    warnings.warn(
                        f"{self.study.name}: the budget of {loop.budget:.4g} training FLOPs "
                        f"is spent: the search stops after epoch {state.epoch}",
                        FlaxmnistWarning,
                        stacklevel=2,
                    )
                    return False
                for grid in grids:
                    metrics = grid.step()
                    state.add_epoch(grid.config_indices, metrics)
                    loop.progress.epoch(float(np.max(np.mean(metrics["val_accuracy"], 0))), 1)
                state.epoch += 1
        finally:
            loop.progress.call_done()
        return True

    def _label(self) -> str:
        return self.study.strategy

    def _epoch_cost(self, grid: LaneGrid, state: SearchState) -> int:
        size = self.loop.data_settings["train_size"]
        return len(grid.seeds) * sum(
            train_flops(replace(grid.spec, hidden=state.configs[c].hidden), size)
            for c in grid.config_indices
        )

    def _spent(self, state: SearchState, grids: list[LaneGrid]) -> int:
        """Training FLOPs of every record so far and of the lanes still training."""
        return self._recorded_compute() + state.epoch * sum(
            self._epoch_cost(g, state) for g in grids
        )

    def _recorded_compute(self) -> int:
        """Training FLOPs of every record so far, of every study of the run."""
        return sum(r.get("compute", 0) for r in self.loop.done.values())

    def _rank(self, state: SearchState, configs: list[int]) -> list[int]:
        """``configs`` best first, by ``records.selection_key`` of their seeds' metrics."""
        return sorted(configs, key=lambda c: selection_key(c, state.records_like(c)), reverse=True)

    def _halve(self, state: SearchState, grids: list[LaneGrid]) -> list[LaneGrid]:
        alive = [c for g in grids for c in g.config_indices]
        keep = set(self._rank(state, alive)[: max(1, len(alive) // self.study.search.eta)])
        for grid in grids:
            stopped = [c for c in grid.config_indices if c not in keep]
            self._record(state, grid, stopped)
            going = [i for i, c in enumerate(grid.config_indices) if c in keep]
            if going and stopped:
                grid.keep(going)
        return [g for g in grids if any(c in keep for c in g.config_indices)]

    def _exploit_and_explore(self, state: SearchState, grids: list[LaneGrid]) -> None:
        search = self.study.search
        for number, grid in enumerate(grids):
            ranked = self._rank(state, grid.config_indices)
            count = int(len(ranked) * search.fraction)
            if count == 0:
                continue
            rng = np.random.default_rng([search.seed, state.epoch, number])
            top, bottom = ranked[:count], ranked[-count:]
            sources = [top[rng.integers(count)] for _ in bottom]
            position = {c: i for i, c in enumerate(grid.config_indices)}
            grid.copy([position[c] for c in sources], [position[c] for c in bottom])
            for loser, winner in zip(bottom, sources, strict=True):
                state.configs[loser] = explore(state.configs[winner], search, rng)
                state.lineage.setdefault(loser, []).append(
                    {"epoch": state.epoch, "copied_from": winner, **_searched(state, loser, search)}
                )
            grid.set_hyperparams(
                [position[c] for c in bottom],
                [hyperparams_of(grid.spec, state.configs[c]) for c in bottom],
            )

    def _record(self, state: SearchState, grid: LaneGrid, configs: list[int]) -> None:
        if configs:
            history = state.history(configs)
            self.loop.add_records(
                self.study_index, grid.spec, history, configs, self.loop.seeds,
                configs={c: state.configs[c] for c in configs},
                extra={c: self._search_fields(state, c) for c in configs},
            )  # fmt: skip
            self.loop.keep_ensembles(self.study_index, grid, configs)

    def _search_fields(self, state: SearchState, config: int) -> dict[str, Any]:
        fields = {"strategy": self.study.strategy}
        if self.study.strategy == "pbt":
            initial = self.study.configs[config].to_dict()
            fields["initial"] = {p.key: initial[p.key] for p in self.study.search.priors}
            fields["lineage"] = state.lineage.get(config, [])
        return fields

    def _checkpoint(self, state: SearchState, grids: list[LaneGrid]) -> None:
        self.loop.save_progress()  # the stopped configurations' records first
        if self.loop.out is not None:
            save_state(self.loop.out, self.study.name, state, grids)

    def _finish(self, state: SearchState, grids: list[LaneGrid]) -> None:
        for grid in grids:
            self._record(state, grid, list(grid.config_indices))
        for grid in grids:
            self.loop.keep_best(self.study_index, grid, grid.config_indices)
        self.loop.save_progress()
        if self.loop.out is not None:
            SearchState.remove(self.loop.out, self.study.name)


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


def _searched(state: SearchState, config: int, search: Any) -> dict[str, Any]:
    values = state.configs[config].to_dict()
    return {p.key: values[p.key] for p in search.priors}
