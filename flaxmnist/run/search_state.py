"""What a search carries between epochs, and its checkpoint in the run directory.

``SearchState`` holds the epoch reached, every configuration as it trains now (PBT changes
them), each configuration's per-epoch metrics per seed, and what the strategy carries (its
``state()``: PBT's lineage). After every step that asks for it (a rung, a PBT step),
``save_state`` writes it with each grid's ``TrainState`` (parameters and Adam's state,
padding included) to ``RUN_DIR/search/<study>/``: the grids' files first, then
``state.json`` naming them, atomically, so a kill leaves the previous checkpoint or this
one. Metrics are stored as their float32 values (``records.json_float``), so a resumed
search ranks, and records, exactly what an uninterrupted one would. With many processes
(``cluster``), process 0 alone reads and writes the checkpoint; the others get what it read.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from flaxmnist.core.augment import Augment
from flaxmnist.core.train import TrainSpec
from flaxmnist.devices import cluster
from flaxmnist.devices.placement import broadcast_from_main
from flaxmnist.run.checkpoint import load_tree, save_tree
from flaxmnist.run.records import json_float
from flaxmnist.run.rundir import write_json_atomic
from flaxmnist.specs.config import Config, config_from_dict

SEARCH = "search"
STATE = "state.json"


@dataclass
class SearchState:
    """A search's progress: see the module."""

    epoch: int
    configs: dict[int, Config]
    histories: dict[int, dict[str, list[np.ndarray]]] = field(default_factory=dict)
    strategy: dict[str, Any] = field(default_factory=dict)  # the strategy's own state()
    grids: list[dict[str, Any]] = field(default_factory=list)  # as last saved
    folder: Path | None = None  # where it was read from

    def add_epoch(self, config_indices: list[int], metrics: dict[str, np.ndarray]) -> None:
        """Append one epoch of a grid's metrics (``[seed, config]`` arrays)."""
        for column, index in enumerate(config_indices):
            history = self.histories.setdefault(index, {})
            for key, values in metrics.items():
                history.setdefault(key, []).append(np.asarray(values[:, column]))

    def history(self, configs: list[int]) -> dict[str, np.ndarray]:
        """``[seed, config, epoch]`` arrays of ``configs`` (trained the same epochs)."""
        keys = self.histories[configs[0]]
        return {
            key: np.stack([np.stack(self.histories[c][key], axis=-1) for c in configs], axis=1)
            for key in keys
        }

    def records_like(self, config: int) -> list[dict[str, Any]]:
        """Per seed, what ``records.selection_key`` reads: the validation history."""
        curves = np.stack(self.histories[config]["val_accuracy"], axis=-1)
        return [
            {"history": {"val_accuracy": list(c)}, "val_accuracy": _finite(c[-1])} for c in curves
        ]

    @staticmethod
    def read(out: Path, study: str) -> SearchState | None:
        """The checkpoint of ``study`` in run directory ``out``, or ``None``."""
        path = Path(out) / SEARCH / study / STATE
        saved = cluster.share(lambda: json.loads(path.read_text()) if path.exists() else None)
        if saved is None:
            return None
        histories = {
            int(c): {
                key: [
                    np.asarray([np.nan if v is None else v for v in epoch], _dtype(key))
                    for epoch in epochs
                ]
                for key, epochs in history.items()
            }
            for c, history in saved["histories"].items()
        }
        return SearchState(
            epoch=saved["epoch"],
            configs={int(c): config_from_dict(v) for c, v in saved["configs"].items()},
            histories=histories,
            # A checkpoint written before strategies kept their own state held PBT's lineage.
            strategy=saved.get("strategy", {"lineage": saved.get("lineage", {})}),
            grids=saved["grids"],
            folder=path.parent,
        )

    @staticmethod
    def remove(out: Path, study: str) -> None:
        """Delete ``study``'s checkpoint (its search is done and recorded)."""
        if not cluster.is_main():
            return
        shutil.rmtree(Path(out) / SEARCH / study, ignore_errors=True)
        with contextlib.suppress(OSError):  # the last search of the run: no folder left
            (Path(out) / SEARCH).rmdir()


def _dtype(key: str):
    return np.bool_ if key == "nonfinite" else np.float32


def _finite(value) -> float | None:
    return float(value) if np.isfinite(value) else None


def _json_history(history: dict[str, list[np.ndarray]]) -> dict[str, list[list[Any]]]:
    return {
        key: [[bool(v) if key == "nonfinite" else json_float(v) for v in epoch] for epoch in epochs]
        for key, epochs in history.items()
    }


def save_state(out: Path, study: str, state: SearchState, grids: list) -> None:
    """Write ``state`` and every grid's ``TrainState`` (see the module); older grid files of
    this study are deleted once ``state.json`` names the new ones. Every process calls it
    (the grids' state is gathered); process 0 writes."""
    folder = Path(out) / SEARCH / study
    state.grids = []
    for number, grid in enumerate(grids):
        name = f"grid-{state.epoch}-{number}.msgpack"
        if grid.state is None:  # added, not trained yet: initialised again on resume
            name = None
        else:
            host = grid.host_state()
            if cluster.is_main():
                save_tree(folder / name, host)
        state.grids.append(
            {"spec": asdict(grid.spec), "configs": grid.config_indices, "file": name}
        )
    if not cluster.is_main():
        return
    alive = {c for g in state.grids for c in g["configs"]}
    write_json_atomic(
        folder / STATE,
        {
            "epoch": state.epoch,
            "configs": {c: config.to_dict() for c, config in state.configs.items()},
            "histories": {c: _json_history(h) for c, h in state.histories.items() if c in alive},
            "strategy": state.strategy,
            "grids": state.grids,
        },
    )
    kept = {g["file"] for g in state.grids if g["file"] is not None}
    for path in folder.glob("grid-*.msgpack"):
        if path.name not in kept:
            path.unlink(missing_ok=True)


def spec_of(saved: dict[str, Any]) -> TrainSpec:
    """The ``TrainSpec`` that ``dataclasses.asdict`` wrote, its augmentation a dict again."""
    return TrainSpec(**{**saved, "augment": Augment(**saved.get("augment", {}))})


def restore_grids(state: SearchState, make_grid: Callable) -> list:
    """The grids of a checkpoint, their state loaded: ``make_grid(spec, configs)`` builds
    each (a ``LaneGrid`` of those ``config_indices``, with ``state``'s configurations), at
    the epochs its configurations trained (a grid added and not trained yet: uninitialised,
    as it was)."""
    grids = []
    for saved in state.grids:
        grid = make_grid(spec_of(saved["spec"]), list(saved["configs"]))
        grids.append(grid)
        if saved["file"] is None:
            continue
        grid.init()  # the state's structure, to read the file into
        target, main = grid.host_state(), cluster.is_main()
        loaded = load_tree(state.folder / saved["file"], target) if main else target
        history = state.histories.get(grid.config_indices[0], {}).get("val_accuracy")
        epoch = state.epoch if history is None else len(history)
        grid.load_state(broadcast_from_main(loaded, main), epoch)
    return grids
