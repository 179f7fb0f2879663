"""The sweep's loop: train planned calls one after another, keep every record, keep the
run directory up to date, and survive a call that runs out of memory (split in halves,
tried again, down to one lane).
"""

from __future__ import annotations

import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from typing import Any

import jax
import numpy as np
from jax.errors import JaxRuntimeError
from jax.sharding import Mesh

from flaxmnist.core.data import DataSplits
from flaxmnist.core.models import unpad_params
from flaxmnist.devices import cluster
from flaxmnist.errors import FlaxmnistWarning, OutOfMemoryError
from flaxmnist.run.attempt import Attempt, Follower
from flaxmnist.run.checkpoint import save_model
from flaxmnist.run.ensemble import (
    choose_ensemble,
    describe_ensemble,
    save_predictions,
    seed_ensemble,
)  # fmt: skip
from flaxmnist.run.grid import LaneGrid
from flaxmnist.run.plan import Call, hyperparams_of, split_call, train_flops, widths
from flaxmnist.run.progress import Progress, RunStats
from flaxmnist.run.records import best_config, make_records
from flaxmnist.run.rundir import write_results
from flaxmnist.specs.config import Config, Study


def _is_out_of_memory(err: Exception) -> bool:
    text = str(err)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower()


class SweepLoop:
    """Trains planned calls one after another, keeping every record and the run directory
    up to date; a call that runs out of memory is split in halves and tried again."""

    def __init__(
        self,
        studies: Sequence[Study],
        data_settings: dict[str, Any],
        data: DataSplits,
        chance: float,
        mesh: Mesh,
        stats: RunStats,
        progress: Progress,
        seeds: Sequence[int],
    ):
        self.studies, self.data_settings, self.data, self.chance = (
            studies, data_settings, data, chance,
        )  # fmt: skip
        self.mesh, self.stats, self.progress = mesh, stats, progress
        self.done: dict[tuple[int, int, int], dict[str, Any]] = {}
        self.seeds = tuple(seeds)
        self.attempt: Attempt | Follower | None = None
        self.budget: float | None = None  # training FLOPs the run may spend (runner sets it)
        self.out = None
        #: Called with every record after ``results.jsonl`` is written (process 0 only).
        self.exports: list[Callable[[list[dict[str, Any]]], None]] = []
        self.saved: dict[int, int] = {}  # study index → config index of its saved model
        self._partial: dict[tuple[int, int], dict[int, Any]] = {}  # seeds split over calls
        self._probabilities: dict[tuple[int, int], dict[int, Any]] = {}  # the same, softmax

    def run(
        self,
        calls: Sequence[Call],
        attempt: Attempt | Follower | None = None,
        then: Sequence[Callable[[SweepLoop], None]] = (),
    ) -> list[dict[str, Any]]:
        """Train ``calls`` (skipping lanes ``attempt.earlier`` holds), then run each of
        ``then`` (the search strategies' drivers) with this loop; every record, sorted."""
        names = [s.name for s in self.studies]
        self.attempt, self.out = attempt, attempt.out if attempt else None
        for record in attempt.earlier if attempt else []:
            key = (names.index(record["study"]), record["config_index"], record["seed"])
            self.done[key] = record
        start, queue, fits, number = time.perf_counter(), deque(calls), {}, 0
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
            self.save_progress()
        for driver in then:
            driver(self)
        chosen = [self._choose_ensemble(s) for s in self.studies if s.strategy != "grid"]
        lines = [describe_ensemble(c) for c in chosen if c]
        self.progress.finished("\n".join([self._summary(time.perf_counter() - start), *lines]))
        return self.records()

    def _choose_ensemble(self, study: Study) -> dict[str, Any] | None:
        if self.out is None or not cluster.is_main():
            return None
        labels = (np.asarray(self.data.val_labels), np.asarray(self.data.test_labels))
        return choose_ensemble(self.out, study.name, *labels)

    def save_progress(self) -> None:
        """Rewrite ``results.jsonl`` with every record so far, and the attempt's costs; then
        bring the run's exports (``optuna.db``) up to date."""
        if self.attempt is not None and cluster.is_main():
            records = self.records()
            write_results(self.out, records)
            self.attempt.update(asdict(self.stats))
            for export in self.exports:
                export(records)

    def add_configs(self, study_index: int, configs: Sequence[Config]) -> None:
        """Append ``configs`` to a study's (a learned search's proposals, as they come)."""
        study = self.studies[study_index]
        self.studies = list(self.studies)
        self.studies[study_index] = replace(study, configs=(*study.configs, *configs))

    def records(self) -> list[dict[str, Any]]:
        """Every record so far: study, configuration, seed order."""
        return [self.done[key] for key in sorted(self.done)]

    def _smaller(self, call: Call, err: Exception, halved: bool) -> int:
        """The lanes to retry ``call`` with after it ran out of memory; raises at one."""
        lanes = len(call.lanes)
        study = self.studies[call.study_index]
        if lanes == 1:
            detail = str(err).splitlines()[0][:160]
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
            stacklevel=3,
        )
        return lanes // 2

    def _call(self, call: Call, label: str) -> None:
        """Train the call's lanes that no earlier attempt finished, and keep their records."""
        configs = self.studies[call.study_index].configs
        label = f"{label} [{widths(call.spec)}, {len(call.lanes)} lanes]"
        if all((call.study_index, c, seed) in self.done for c, seed in call.lanes):
            self.progress.skipped(label)
            return
        # A call with any lane missing (a record cut short) is trained whole: a grid of
        # another shape rounds differently in the last bits. Records already kept stay.
        grid = LaneGrid(
            call.spec, [hyperparams_of(call.spec, configs[i]) for i in call.config_indices],
            call.seeds, self.data, mesh=self.mesh, stats=self.stats,
            config_indices=call.config_indices,
        )  # fmt: skip
        history = _train(grid, call, label, self.progress)
        self.add_records(call.study_index, call.spec, history, call.config_indices, call.seeds)
        self.keep_ensembles(call.study_index, grid, call.config_indices)
        self.keep_best(call.study_index, grid, call.config_indices)

    def add_records(
        self, study_index, spec, history, config_indices, seeds, configs=None, extra=None
    ) -> None:
        """Keep the records of ``history`` (``[seed, config, epoch]``), each with the
        compute it used (``plan.train_flops`` of its own widths, padded or not, per epoch
        trained). ``configs`` overrides the
        study's configurations (PBT changes them), ``extra`` adds a ``search`` field."""
        study = self.studies[study_index]
        epochs = history["val_accuracy"].shape[-1]
        for record in make_records(history, config_indices, seeds, self.chance):
            index = record["config_index"]
            trained = (configs or {}).get(index, study.configs[index])
            config = {**trained.to_dict(), **self.data_settings}
            record = {"study": study.name, "config": config, **record}
            own = replace(spec, hidden=trained.hidden)
            record["compute"] = epochs * train_flops(own, self.data_settings["train_size"])
            if extra and index in extra:
                record["search"] = extra[index]
            elif study.strategy != "grid":
                record["search"] = {"strategy": study.strategy}
            self.done.setdefault((study_index, index, record["seed"]), record)

    def keep_ensembles(self, study_index: int, grid: LaneGrid, config_indices: Sequence[int]):
        """The ensemble of each configuration's seeds, once they are all in: its holdout and
        test accuracy go into the configuration's records (``ensemble``), its seed-mean
        probabilities into the run directory (``ensemble.save_predictions``)."""
        study = self.studies[study_index]
        if len(self.seeds) < 2 and study.strategy == "grid":
            return  # no ensemble of seeds, no search to choose an ensemble after
        val, test = grid.probabilities()
        labels = (np.asarray(self.data.val_labels), np.asarray(self.data.test_labels))  # once
        name = study.name
        for index in config_indices:
            column = grid.config_indices.index(index)
            held = self._probabilities.setdefault((study_index, index), {})
            for row, seed in enumerate(grid.seeds):
                held[seed] = (val[row, column], test[row, column])
            if len(held) < len(self.seeds):
                continue
            del self._probabilities[(study_index, index)]
            vals, tests = (np.stack([held[seed][i] for seed in self.seeds]) for i in (0, 1))
            ensemble = seed_ensemble(vals, tests, *labels)
            for seed in self.seeds:
                if (study_index, index, seed) in self.done:
                    self.done[(study_index, index, seed)]["ensemble"] = ensemble
            if self.out is not None and cluster.is_main():
                mean_val, mean_test = vals.mean(axis=0), tests.mean(axis=0)
                save_predictions(self.out, name, index, mean_val, mean_test, len(self.seeds))

    def keep_best(self, study_index: int, grid: LaneGrid, config_indices: Sequence[int]) -> None:
        """Save the parameters of the study's validation-best configuration (every seed) in
        ``out/models/<study>`` when it is one of ``grid``'s, before its records are written."""
        if self.out is None:
            return
        host = grid.host_state().kept  # every process gathers; process 0 writes
        configs = self.studies[study_index].configs
        for column, index in enumerate(config_indices):
            for row, seed in enumerate(grid.seeds):
                params = jax.tree.map(lambda x, r=row, c=column: x[r, c], host)
                if grid.spec.padded:  # the model its lane trains, as load_model builds it
                    params = {"params": unpad_params(params["params"], configs[index].hidden)}
                self._partial.setdefault((study_index, index), {})[seed] = params
        records = [r for (s, _, _), r in self.done.items() if s == study_index]
        best = best_config(records, len(self.seeds))
        held = self._partial.get((study_index, best), {})
        if (
            best is not None
            and self.saved.get(study_index) != best
            and len(held) >= len(self.seeds)
        ):
            self._save(study_index, best, held)
        # Only a configuration whose seeds are still coming may become the best later.
        self._partial = {
            key: value for key, value in self._partial.items() if len(value) < len(self.seeds)
        }

    def _save(self, study_index: int, index: int, params_by_seed: dict[int, Any]) -> None:
        study = self.studies[study_index]
        mine = [self.done[(study_index, index, seed)] for seed in self.seeds]
        info = {
            "study": study.name,
            "config_index": index,
            "config": mine[0]["config"],
            "seeds": list(self.seeds),
            "val_accuracy": [r["val_accuracy"] for r in mine],
            "test_accuracy": [r["test_accuracy"] for r in mine],
            "selected_by": self.data_settings["validate_on"],
        }
        if "ensemble" in mine[0]:
            info["ensemble"] = mine[0]["ensemble"]
        stacked = jax.tree.map(
            lambda *xs: np.stack([np.asarray(x) for x in xs]),
            *[params_by_seed[seed] for seed in self.seeds],
        )
        if cluster.is_main():
            save_model(self.out, study.name, stacked, info)
        self.saved[study_index] = index

    def _summary(self, seconds: float) -> str:
        configs = sum(len(s.configs) for s in self.studies)
        compute = sum(r.get("compute", 0) for r in self.done.values())
        budget = f" of a budget of {self.budget:.4g}" if self.budget is not None else ""
        sampler = self.stats.sampler_seconds
        sampling = f"{sampler:.1f}s in the sampler, " if sampler else ""
        return (
            f"{', '.join(s.name for s in self.studies)}: {configs} configs x {len(self.seeds)} "
            f"seeds; compute {compute:.4g} training FLOPs{budget}; "
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
