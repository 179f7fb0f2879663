"""A study whose strategy decides as it trains (halving, PBT, a learned search): its steps
(``run.steps``) trained as lane grids, in lockstep.

The strategy's first step adds configurations; they are grouped by shape (one program
each; a strategy that changes hyperparameters while lanes train shares programs across
regularisers) and each group is one grid when the memory budget allows, else several.
Lanes train in lockstep to the step's ``until``, so ranking them is a host step between
epochs (the strategy's), and keeping or copying them is a gather on the device
(``LaneGrid.keep`` / ``copy``). When the configurations going reach their last epoch they
are recorded and their best model kept, and the strategy is asked again (a learned search
then proposes its next round).

The compute a run may spend (``--budget``, training FLOPs) is checked before every epoch:
a search that would pass it stops there, and its lanes keep the epochs they trained.
After every step that asks for it, the grids' state is saved (``SearchState``), so a killed
run loses at most the work since, and resumes to the same final results. Process 0 asks
the strategy; every process trains what it decided.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
from jax.sharding import Mesh

from flaxmnist.core.train import TrainSpec
from flaxmnist.devices import cluster
from flaxmnist.errors import FlaxmnistWarning
from flaxmnist.run.grid import LaneGrid
from flaxmnist.run.keeper import Keeper
from flaxmnist.run.plan import (
    Call,
    PlanSettings,
    StudyPlan,
    derive,
    group_specs,
    hyperparams_of,
    split_call,
    train_flops,
)
from flaxmnist.run.progress import Progress
from flaxmnist.run.search_state import SearchState, restore_grids, save_state
from flaxmnist.run.steps import Copy, Standing, Step
from flaxmnist.specs.config import Config


class SteppedStudy:
    """Trains one study as its strategy decides (see the module): ``SteppedStudy(...).run()``.

    Args:
      index: the study's position in the run.
      strategy: its strategy (``search.base.Strategy``): ``first``, ``next``, ``state``,
        ``restore``, ``fields``, ``stop_after``, ``compiled_in``, ``shares_programs``.
      plan: the study's plan (its configurations' ``TrainSpec``s, the lanes of a round).
      settings: the run's plan settings (lanes per grid, padding, protocol, dtype).
      keeper: where records, ensembles and the best model are kept.
      mesh: the devices the lanes run on.
      progress: the progress hooks.
      budget: training FLOPs the run may spend (``None``: no budget).
    """

    def __init__(
        self,
        index: int,
        strategy: Any,
        plan: StudyPlan,
        settings: PlanSettings,
        keeper: Keeper,
        mesh: Mesh,
        progress: Progress,
        budget: float | None,
    ):
        self.index, self.strategy, self.plan, self.settings = index, strategy, plan, settings
        self.keeper, self.mesh, self.progress, self.budget = keeper, mesh, progress, budget
        self.name = plan.study.name
        derived = {} if plan.proposed else dict(zip(plan.configs, plan.specs, strict=True))
        self._specs: dict[Config, TrainSpec] = derived
        self.state = SearchState(epoch=0, configs={})
        self.grids: list[LaneGrid] = []
        self.fields: dict[int, dict[str, Any]] = {}
        self.until, self.label = 0, ""

    def run(self) -> None:
        """Ask, train, record, until the strategy has nothing left to train."""
        if line := self.strategy.announce(self.plan.study, self.plan.round_size, self.plan.warm):
            self.progress.study_started(f"{self.name} [{self.strategy.name}]", line)
        saved = self._checkpoint_to_resume()
        if saved is not None:
            self._resume(saved)
        else:
            step = self._decide(self.strategy.first)
            if not step.add:
                self.keeper.forget(self.index, step.forget)
                if self.keeper.of_study(self.index):  # an earlier attempt finished it
                    self.progress.skipped(f"{self.name} [{self.strategy.name}]")
                return
            self._apply(step)
            if step.checkpoint:
                self._checkpoint()
        while self.grids:
            if not self._train_until(self.until):
                self._finish(self.grids)
                break  # the budget is spent
            self._finish([g for g in self.grids if g.epoch >= g.spec.epochs])
            step = self._decide(self.strategy.next)
            self._apply(step)
            if self.grids and self.until <= self.state.epoch:
                self._finish(self.grids)  # the strategy trains them no further: as they are
                break
            if step.checkpoint and self.grids:
                self._checkpoint()
        if self.keeper.out is not None:  # done: nothing left to resume
            SearchState.remove(self.keeper.out, self.name)

    def _checkpoint_to_resume(self) -> SearchState | None:
        """The study's checkpoint, unless the study is done: every lane it would go on with
        recorded and its strategy, as saved, with nothing to add (a run killed after its
        last records and before the checkpoint went); that one is removed."""
        out = self.keeper.out
        saved = SearchState.read(out, self.name) if out is not None else None
        if saved is None:
            return None
        self.strategy.restore(saved.strategy)
        recorded = {r["config_index"] for r in self.keeper.of_study(self.index)}
        going = {c for grid in saved.grids for c in grid["configs"]}
        if cluster.share(lambda: going <= recorded and self.strategy.exhausted()):
            SearchState.remove(out, self.name)
            return None
        return saved

    def _decide(self, decide: Callable[[Standing], Step]) -> Step:
        """The strategy's step (process 0 decides, every process gets it)."""
        step = Step.from_dict(cluster.share(lambda: decide(self._standing()).to_dict()))
        self.keeper.stats.sampler_seconds += step.sampler_seconds
        return step

    def _standing(self) -> Standing:
        going = [c for grid in self.grids for c in grid.config_indices]
        return Standing(
            epoch=self.state.epoch,
            grids=tuple(tuple(grid.config_indices) for grid in self.grids),
            configs=dict(self.state.configs),
            curves={c: self.state.records_like(c) for c in going if c in self.state.histories},
            records=self.keeper.of_study(self.index),
            seeds=self.keeper.seeds,
            lanes=self.plan.round_size,
            budget=self.budget,
            budget_left=None if self.budget is None else self.budget - self.keeper.spent(),
            cost=lambda config: self._epoch_cost([config]),
        )

    def _apply(self, step: Step) -> None:
        """Forget, stop, copy and add as ``step`` says; train to its ``until`` next."""
        self.keeper.forget(self.index, step.forget)
        self.fields.update(step.fields)
        if step.stop:
            self._stop(set(step.stop))
        if step.copy:
            self._copy(step.copy)
        if step.add:
            self._add(step.add)
        self.until, self.label = step.until, step.label

    def _stop(self, stopped: set[int]) -> None:
        for grid in self.grids:
            mine = [c for c in grid.config_indices if c in stopped]
            self._record(grid, mine)
            going = [i for i, c in enumerate(grid.config_indices) if c not in stopped]
            if going and mine:
                grid.keep(going)
        self.grids = [g for g in self.grids if any(c not in stopped for c in g.config_indices)]

    def _copy(self, copies: Sequence[Copy]) -> None:
        for grid in self.grids:
            position = {c: i for i, c in enumerate(grid.config_indices)}
            mine = [copy for copy in copies if copy.target in position]
            if not mine:
                continue
            targets = [position[copy.target] for copy in mine]
            grid.copy([position[copy.source] for copy in mine], targets)
            for copy in mine:
                self.state.configs[copy.target] = copy.config
            grid.set_hyperparams(targets, [hyperparams_of(grid.spec, c.config) for c in mine])

    def _add(self, configs: Mapping[int, Config]) -> None:
        """Grids of new configurations (one program per group, split to fit), initialised
        when they first train. Without grids going they start a new round (the study's
        epochs count from 0 again), unless the strategy refills lanes: then they train
        beside the grids going, from their own epoch 0, the study's clock running on."""
        indices = list(configs)
        self.keeper.begin(self.index, indices)
        if self.grids or self.strategy.refills:
            self.state.configs.update(configs)
        else:
            self.state = SearchState(epoch=0, configs=dict(configs))
        horizon = max(c.epochs for c in configs.values())
        specs = [self._spec(configs[i]) for i in indices]
        groups = group_specs(specs, not self.strategy.shares_programs, self.settings.pad_widths)
        forced = dict.fromkeys(self.strategy.compiled_in(), True)
        for group in groups:
            spec = replace(group.spec, epochs=horizon, **forced)
            members = tuple(indices[i] for i in group.config_indices)
            whole = Call(self.index, spec, members, self.keeper.seeds)
            for call in split_call(whole, self.settings.lanes(spec, capped=False)):
                self.grids.append(self._grid(spec, list(call.config_indices)))

    def _spec(self, config: Config) -> TrainSpec:
        """The ``TrainSpec`` of ``config``: from the plan, or derived once."""
        if config not in self._specs:
            (self._specs[config],) = derive([config], self.settings)
        return self._specs[config]

    def _grid(self, spec: TrainSpec, configs: list[int]) -> LaneGrid:
        hparams = [hyperparams_of(spec, self.state.configs[c]) for c in configs]
        keeper = self.keeper
        return LaneGrid(
            spec,
            hparams,
            keeper.seeds,
            keeper.data,
            mesh=self.mesh,
            stats=keeper.stats,
            config_indices=configs,
        )

    def _resume(self, saved: SearchState) -> None:
        """The grids of the checkpoint, the strategy's state, and the step it was in. Lanes
        of the checkpoint recorded since (a kill between the records and the next
        checkpoint) lose their records: they train again from the checkpoint, to the same
        records, and are not counted twice against the budget meanwhile."""
        recorded = {r["config_index"] for r in self.keeper.of_study(self.index)}
        again = cluster.share(
            lambda: sorted(c for grid in saved.grids for c in grid["configs"] if c in recorded)
        )
        self.keeper.forget(self.index, again)
        self.state = saved
        self.grids = restore_grids(saved, self._grid)
        self.keeper.begin(self.index, [c for grid in saved.grids for c in grid["configs"]])
        self.strategy.restore(saved.strategy)
        decided = cluster.share(
            lambda: {
                "until": self.strategy.stop_after(saved.epoch),
                "fields": [[c, self.strategy.fields(c)] for c in sorted(saved.configs)],
            }
        )
        self.until, self.fields = decided["until"], dict(decided["fields"])

    def _train_until(self, stop: int) -> bool:
        """Step every grid to epoch ``stop``; ``False`` if the budget ran out first."""
        state, grids = self.state, self.grids
        what = ", ".join(filter(None, [self.strategy.name, self.label]))
        label = f"{self.name} [{what}, {state.epoch}->{stop} epochs]"
        self.progress.call_started(label, (stop - state.epoch) * len(grids))
        try:
            start = time.perf_counter()
            hows = {grid.compile() for grid in grids}  # new grids are initialised after
            how = next(h for h in ("compiled", "loaded", "reused") if h in hows)
            for grid in grids:
                if grid.state is None:
                    grid.init()
            self.progress.compiled(time.perf_counter() - start, how)
            while state.epoch < stop:
                if self._over_budget():
                    return False
                for grid in grids:
                    metrics = grid.step()
                    state.add_epoch(grid.config_indices, metrics)
                    self.progress.epoch(float(np.max(np.mean(metrics["val_accuracy"], 0))), 1)
                state.epoch += 1
        finally:
            self.progress.call_done()
        return True

    def _over_budget(self) -> bool:
        """Whether the next epoch of every grid would pass the budget (then it warns)."""
        if self.budget is None:
            return False
        costs = [
            (grid.epoch, self._epoch_cost([self.state.configs[c] for c in grid.config_indices]))
            for grid in self.grids
        ]
        going = sum(epoch * cost for epoch, cost in costs)  # trained, not yet recorded
        if self.keeper.spent() + going + sum(cost for _, cost in costs) <= self.budget:
            return False
        warnings.warn(
            f"{self.name}: the budget of {self.budget:.4g} training FLOPs is spent: the "
            f"search stops after epoch {self.state.epoch}",
            FlaxmnistWarning,
            stacklevel=4,
        )
        return True

    def _epoch_cost(self, configs: Sequence[Config]) -> int:
        """Training FLOPs of one epoch of ``configs``, every seed, each at its own widths
        (the only part of a ``TrainSpec`` the count reads)."""
        size, shape = self.keeper.data_settings["train_size"], self.plan.specs[0]
        per_lane = sum(train_flops(replace(shape, hidden=c.hidden), size) for c in configs)
        return len(self.keeper.seeds) * per_lane

    def _record(self, grid: LaneGrid, configs: list[int]) -> None:
        if configs:
            history = self.state.history(configs)
            trained = {c: self.state.configs[c] for c in configs}
            keeper = self.keeper
            keeper.add_records(self.index, grid.spec, history, trained, keeper.seeds, self.fields)
            keeper.keep_ensembles(self.index, grid, configs)

    def _checkpoint(self) -> None:
        self.keeper.save_progress()  # the stopped configurations' records first
        if self.keeper.out is not None:
            self.state.strategy = self.strategy.state()
            save_state(self.keeper.out, self.name, self.state, self.grids)

    def _finish(self, grids: list[LaneGrid]) -> None:
        """Record ``grids`` as they are, keep their best model, and drop them (the
        checkpoint stays until the strategy has nothing left to train: it may add more)."""
        if not grids:
            return
        trained = [grid for grid in grids if grid.epoch > 0]  # the budget may stop one first
        for grid in trained:
            self._record(grid, list(grid.config_indices))
        for grid in trained:
            self.keeper.keep_best(self.index, grid, grid.config_indices, self.state.configs)
        self.keeper.save_progress()
        self.grids = [g for g in self.grids if all(g is not done for done in grids)]
