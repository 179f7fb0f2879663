"""What a run keeps of the lanes it trained: one record per (study, configuration, seed),
each configuration's seed ensemble, each study's validation-best model, and the run
directory brought up to date after every call or step (``results.jsonl``, the attempt's
costs, ``optuna.db``).

Both ways a study trains use one ``Keeper``: planned calls (``run.loop``) and the steps a
strategy decides (``run.stepped``).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import jax
import numpy as np

from flaxmnist.core.data import DataSplits
from flaxmnist.core.models import unpad_params
from flaxmnist.core.train import TrainSpec
from flaxmnist.devices import cluster
from flaxmnist.run.attempt import Attempt, Follower, now
from flaxmnist.run.checkpoint import save_model
from flaxmnist.run.ensemble import (
    choose_ensemble,
    predictions_path,
    save_predictions,
    seed_ensemble,
)
from flaxmnist.run.grid import LaneGrid
from flaxmnist.run.plan import train_flops
from flaxmnist.run.progress import RunStats
from flaxmnist.run.records import best_config, make_records
from flaxmnist.run.rundir import TIMING, write_json_atomic, write_results
from flaxmnist.specs.config import Config, Study


@dataclass
class Keeper:
    """Every record of a run so far, and what is kept with them (see the module).

    Attributes:
      studies: the run's studies, in order (``done`` keys them by position).
      searches: per study, whether a strategy searched it (its records then say so, and
        an ensemble of configurations is chosen after it).
      data_settings: what every record's ``config`` adds (dataset, protocol, sizes, dtype).
      data: the splits on the device (their labels score the ensembles).
      chance: the validation accuracy of a constant guess (``records.make_records``).
      seeds: the training seeds, every configuration's.
      stats: the run's costs, written with every save.
      done: the records by (study index, configuration index, seed).
      attempt: the run directory's attempt (``None``: nothing written).
      out: the run directory (``None``: nothing written).
      exports: called with every record after ``results.jsonl`` is written (process 0).
      timing: when each configuration trained (``begin``, ``add_records``), written beside
        the records (``rundir.read_timing``).
    """

    studies: Sequence[Study]
    searches: Sequence[bool]
    data_settings: dict[str, Any]
    data: DataSplits
    chance: float
    seeds: tuple[int, ...]
    stats: RunStats
    done: dict[tuple[int, int, int], dict[str, Any]] = field(default_factory=dict)
    attempt: Attempt | Follower | None = None
    out: Any = None
    exports: list[Callable[[list[dict[str, Any]]], None]] = field(default_factory=list)
    saved: dict[int, int] = field(default_factory=dict)  # study → config index of its model
    timing: dict[str, dict[str, str]] = field(default_factory=dict)  # rundir.read_timing
    _partial: dict[tuple[int, int], dict[int, Any]] = field(default_factory=dict)
    _probabilities: dict[tuple[int, int], dict[int, Any]] = field(default_factory=dict)

    def records(self) -> list[dict[str, Any]]:
        """Every record so far: study, configuration, seed order."""
        return [self.done[key] for key in sorted(self.done)]

    def spent(self) -> int:
        """Training FLOPs of every record so far, of every study (what a budget counts)."""
        return sum(record.get("compute", 0) for record in self.done.values())

    def of_study(self, study_index: int) -> list[dict[str, Any]]:
        """The records of one study so far, in configuration and seed order."""
        return [self.done[k] for k in sorted(self.done) if k[0] == study_index]

    def forget(self, study_index: int, configs: Sequence[int]) -> None:
        """Drop the records of ``configs`` (an earlier attempt left them incomplete)."""
        for key in [k for k in self.done if k[0] == study_index and k[1] in configs]:
            del self.done[key]

    def begin(self, study_index: int, config_indices: Sequence[int]) -> None:
        """Note the time configurations start to train (the first time only)."""
        started = now("milliseconds")
        for index in config_indices:
            key = f"{self.studies[study_index].name}/{index}"
            self.timing.setdefault(key, {"started": started})

    def save_progress(self) -> None:
        """Rewrite ``results.jsonl`` with every record so far, ``timing.json``, and the
        attempt's costs; then bring the run's exports (``optuna.db``) up to date."""
        if self.attempt is not None and cluster.is_main():
            records = self.records()
            write_results(self.out, records)
            ended = {k: v for k, v in self.timing.items() if "ended" in v}
            write_json_atomic(Path(self.out) / TIMING, ended)
            self.attempt.update(asdict(self.stats))
            for export in self.exports:
                export(records)

    def add_records(
        self,
        study_index: int,
        spec: TrainSpec,
        history: dict[str, np.ndarray],
        configs: Mapping[int, Config],
        seeds: Sequence[int],
        fields: Mapping[int, dict[str, Any]],
    ) -> None:
        """Keep the records of ``history`` (``[seed, config, epoch]``, the configurations
        in ``configs``' order, each as it trained), each with the compute it used
        (``plan.train_flops`` of its own widths, per epoch trained) and its ``search``
        field (``fields``, where it has one)."""
        study = self.studies[study_index]
        epochs = history["val_accuracy"].shape[-1]
        for record in make_records(history, list(configs), seeds, self.chance):
            index = record["config_index"]
            trained = configs[index]
            config = {**trained.to_dict(), **self.data_settings}
            record = {"study": study.name, "config": config, **record}
            own = replace(spec, hidden=trained.hidden)
            record["compute"] = epochs * train_flops(own, self.data_settings["train_size"])
            if fields.get(index):
                record["search"] = fields[index]
            self.done.setdefault((study_index, index, record["seed"]), record)
        ended = now("milliseconds")
        for index in configs:
            if all((study_index, index, seed) in self.done for seed in self.seeds):
                times = self.timing.setdefault(f"{study.name}/{index}", {"started": ended})
                times.setdefault("ended", ended)

    def keep_ensembles(self, study_index: int, grid: LaneGrid, config_indices: Sequence[int]):
        """The ensemble of each configuration's seeds, once they are all in: its holdout and
        test accuracy go into the configuration's records (``ensemble``), its seed-mean
        probabilities into the run directory (``ensemble.save_predictions``)."""
        if len(self.seeds) < 2 and not self.searches[study_index]:
            return  # no ensemble of seeds, no search to choose an ensemble after
        val, test = grid.probabilities()
        labels = self.labels()
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
                name, seeds = self.studies[study_index].name, len(self.seeds)
                save_predictions(self.out, name, index, vals.mean(0), tests.mean(0), seeds)

    def labels(self) -> tuple[np.ndarray, np.ndarray]:
        """The holdout and test labels on the host (read once a call)."""
        return np.asarray(self.data.val_labels), np.asarray(self.data.test_labels)

    def keep_best(
        self,
        study_index: int,
        grid: LaneGrid,
        config_indices: Sequence[int],
        configs: Mapping[int, Config],
    ) -> None:
        """Save the parameters of the study's validation-best configuration (every seed) in
        ``out/models/<study>`` when it is one of ``grid``'s, before its records are written.
        ``configs``: the configurations by index (a padded lane's own widths)."""
        if self.out is None:
            return
        host = grid.host_state().kept  # every process gathers; process 0 writes
        for column, index in enumerate(config_indices):
            for row, seed in enumerate(grid.seeds):
                params = jax.tree.map(lambda x, r=row, c=column: x[r, c], host)
                if grid.spec.padded:  # the model its lane trains, as load_model builds it
                    params = {"params": unpad_params(params["params"], configs[index].hidden)}
                self._partial.setdefault((study_index, index), {})[seed] = params
        best = best_config(self.of_study(study_index), len(self.seeds))
        held = self._partial.get((study_index, best), {})
        complete = len(held) >= len(self.seeds)
        if best is not None and self.saved.get(study_index) != best and complete:
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
        if (errors := self._test_errors(study.name, index)) is not None:
            info["test_errors"], info["test_images"] = errors, len(self.labels()[1])
        stacked = jax.tree.map(
            lambda *xs: np.stack([np.asarray(x) for x in xs]),
            *[params_by_seed[seed] for seed in self.seeds],
        )
        if cluster.is_main():
            save_model(self.out, study.name, stacked, info)
        self.saved[study_index] = index

    def _test_errors(self, study: str, index: int) -> list[int] | None:
        """The test images the configuration's seed ensemble gets wrong (by position), where
        its predictions were kept (a search, or several seeds): what a paired test of two
        models (McNemar's, ``report --compare``) needs, in a few hundred numbers."""
        path = predictions_path(self.out, study, index)
        if not cluster.is_main() or not path.exists():
            return None
        with np.load(path) as kept:
            predicted = np.argmax(kept["test"].astype(np.float32), axis=-1)
        return np.flatnonzero(predicted != self.labels()[1]).tolist()

    def choose_ensemble(self, study_index: int) -> dict[str, Any] | None:
        """After a search, the greedy ensemble of its configurations (``None`` for a grid,
        or where nothing is written)."""
        if not self.searches[study_index] or self.out is None or not cluster.is_main():
            return None
        return choose_ensemble(self.out, self.studies[study_index].name, *self.labels())
