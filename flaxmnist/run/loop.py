"""The sweep's loop: train a planned run, study by study. The studies trained up front
(``Plan.calls``) go call by call, each kept as it ends, and a call that runs out of memory
is split in halves and tried again (down to one lane); then each study whose strategy
decides as it trains runs its steps (``run.stepped``). One ``Keeper`` keeps every record
and the run directory up to date.
"""

from __future__ import annotations

import time
import warnings
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
from jax.errors import JaxRuntimeError
from jax.sharding import Mesh

from flaxmnist.core.data import DataSplits
from flaxmnist.errors import FlaxmnistWarning, OutOfMemoryError, first_line
from flaxmnist.run.attempt import Attempt, Follower
from flaxmnist.run.grid import LaneGrid
from flaxmnist.run.keeper import Keeper
from flaxmnist.run.plan import Call, Plan, hyperparams_of, split_call, widths
from flaxmnist.run.progress import Progress, RunStats, counted
from flaxmnist.run.rundir import read_timing
from flaxmnist.run.stepped import SteppedStudy


def _is_out_of_memory(err: Exception) -> bool:
    text = str(err)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


class SweepLoop:
    """Trains a planned run (see the module).

    Args:
      plan: the run's plan (``plan.make_plan``).
      strategies: per study, its strategy (``search.base.Strategy``): what it says of
        itself (``name``, ``searches``, ``up_front``), and, for a study not trained up
        front, its decisions.
      data_settings: what every record's ``config`` adds (dataset, protocol, sizes).
      data: the splits on the device.
      chance: the validation accuracy of a constant guess.
      mesh: the devices the lanes run on.
      stats: the run's costs, added up.
      progress: the progress hooks.
      budget: training FLOPs the run may spend (``None``: no budget).
    """

    def __init__(
        self,
        plan: Plan,
        strategies: Sequence[Any],
        data_settings: dict[str, Any],
        data: DataSplits,
        chance: float,
        mesh: Mesh,
        stats: RunStats,
        progress: Progress,
        budget: float | None = None,
    ):
        self.plan, self.strategies = plan, list(strategies)
        self.studies = [planned.study for planned in plan.studies]
        searches = [strategy.searches for strategy in self.strategies]
        self.keeper = Keeper(self.studies, searches, data_settings, data, chance, plan.seeds, stats)
        self.mesh, self.stats, self.progress, self.budget = mesh, stats, progress, budget

    def run(self, attempt: Attempt | Follower | None = None) -> list[dict[str, Any]]:
        """Train the plan (skipping lanes ``attempt.earlier`` holds); every record, sorted."""
        keeper, names = self.keeper, [s.name for s in self.studies]
        keeper.attempt, keeper.out = attempt, attempt.out if attempt else None
        for record in attempt.earlier if attempt else []:
            key = (names.index(record["study"]), record["config_index"], record["seed"])
            keeper.done[key] = record
        keeper.timing = read_timing(keeper.out) if keeper.out is not None else {}
        start = time.perf_counter()
        self._calls(self.plan.calls)
        for index, strategy in enumerate(self.strategies):
            if not strategy.up_front:
                planned, settings = self.plan.studies[index], self.plan.settings
                stepped = SteppedStudy(
                    index,
                    strategy,
                    planned,
                    settings,
                    keeper,
                    self.mesh,
                    self.progress,
                    self.budget,
                )
                stepped.run()
        # The chosen ensembles go to ensemble-<study>.json; the command prints them after
        # the table (a line here too would show twice in a terminal).
        for index in range(len(self.studies)):
            keeper.choose_ensemble(index)
        self.progress.finished(self._summary(time.perf_counter() - start))
        return keeper.records()

    def _calls(self, calls: Sequence[Call]) -> None:
        """Train ``calls`` one after another; one that runs out of memory is split."""
        names = [s.name for s in self.studies]
        queue, fits, number = deque(calls), {}, 0
        while queue:
            call = queue.popleft()
            if len(call.lanes) > fits.get(call.spec, len(call.lanes)):
                queue.extendleft(reversed(split_call(call, fits[call.spec])))
                continue
            number += 1
            try:
                self._call(call, f"{names[call.study_index]} {number}/{number + len(queue)}")
            except JaxRuntimeError as err:
                if not _is_out_of_memory(err):
                    raise
                fits[call.spec] = self._smaller(call, err, halved=call.spec in fits)
                queue.appendleft(call)
                number -= 1
                continue
            self.keeper.save_progress()

    def _smaller(self, call: Call, err: Exception, halved: bool) -> int:
        """The lanes to retry ``call`` with after it ran out of memory; raises at one."""
        lanes = len(call.lanes)
        study = self.studies[call.study_index]
        if lanes == 1:
            detail = first_line(err, 160)
            tried = ", after calls of more lanes failed too" if halved else ""
            raise OutOfMemoryError(
                f"{study.name}: out of memory training one lane of {widths(call.spec)}{tried}; "
                "the records before are kept; train a smaller model or on a device with more "
                f"memory (XLA: {detail})"
            ) from None
        warnings.warn(
            f"{study.name}: out of memory with {lanes} lanes of {widths(call.spec)} per "
            f"call; trying {lanes // 2}",
            FlaxmnistWarning,
            stacklevel=4,
        )
        return lanes // 2

    def _call(self, call: Call, label: str) -> None:
        """Train the call's lanes that no earlier attempt finished, and keep their records."""
        keeper, index = self.keeper, call.study_index
        label = f"{label} [{widths(call.spec)}, {len(call.lanes)} lanes]"
        if all((index, c, seed) in keeper.done for c, seed in call.lanes):
            self.progress.skipped(label)
            return
        # A call with any lane missing (a record cut short) is trained whole: a grid of
        # another shape rounds differently in the last bits. Records already kept stay.
        study, strategy = self.studies[index], self.strategies[index]
        configs = {c: study.configs[c] for c in call.config_indices}
        grid = LaneGrid(
            call.spec,
            [hyperparams_of(call.spec, config) for config in configs.values()],
            call.seeds,
            keeper.data,
            mesh=self.mesh,
            stats=self.stats,
            config_indices=call.config_indices,
        )
        keeper.begin(index, call.config_indices)
        history = _train(grid, call, label, self.progress)
        fields = {c: strategy.fields(c) for c in configs}
        keeper.add_records(index, call.spec, history, configs, call.seeds, fields)
        keeper.keep_ensembles(index, grid, call.config_indices)
        keeper.keep_best(index, grid, call.config_indices, configs)

    def _summary(self, seconds: float) -> str:
        done = self.keeper.done
        configs = len({(s, c) for s, c, _ in done})
        compute = self.keeper.spent()
        budget = f" of a budget of {self.budget:.4g}" if self.budget is not None else ""
        sampler = self.stats.sampler_seconds
        sampling = f"{sampler:.1f}s in the sampler, " if sampler else ""
        return (
            f"{', '.join(s.name for s in self.studies)}: {counted(configs, 'config')} x "
            f"{counted(len(self.plan.seeds), 'seed')}; "
            f"compute {compute:.4g} training FLOPs{budget}; "
            f"{seconds:.1f}s ({self.stats.compile_seconds:.1f}s compiling, "
            f"{self.stats.train_seconds:.1f}s training, {sampling}"
            f"{self.mesh.devices.size} device(s))"
        )


def _train(grid: LaneGrid, call: Call, label: str, progress: Progress) -> dict[str, np.ndarray]:
    """Compile, init and train ``grid`` for the call's epochs; ``[seed, config, epoch]``."""
    progress.call_started(label, call.spec.epochs)
    try:
        start = time.perf_counter()
        how = grid.compile()
        progress.compiled(time.perf_counter() - start, how)
        grid.init()
        epochs = []
        for _ in range(call.spec.epochs):
            epochs.append(grid.step())
            progress.epoch(_best_mean(epochs[-1]["val_accuracy"]), len(call.seeds))
    finally:
        progress.call_done()
    return {key: np.stack([m[key] for m in epochs], axis=-1) for key in epochs[0]}


def _best_mean(val_accuracy: np.ndarray) -> float:
    """The best configuration's validation accuracy, mean over seeds (``[seed, config]``):
    at the last epoch, what the table shows as the call's best."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN: a diverged configuration
        means = np.nanmean(np.where(np.isfinite(val_accuracy), val_accuracy, np.nan), axis=0)
        return float(np.nanmax(means)) if np.any(np.isfinite(means)) else float("nan")
