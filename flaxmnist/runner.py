"""``run_sweep``: load the data, plan the calls, train each as a grid, keep the records.

One record per (study, configuration, seed) comes out, the same dicts that
``results.jsonl`` holds. Lanes are independent: a lane whose loss goes non-finite carries
NaNs in its own slice of the grid only; it is reported as ``diverged`` with the accuracy
its parameters really give, and the other lanes are unaffected. A lane that stays finite
but ends no more accurate on the validation split than always guessing that split's most
common class is reported as ``at_chance``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from flaxmnist.data import ValidateOn, chance_accuracy, make_splits
from flaxmnist.errors import SettingsError
from flaxmnist.grid import LaneGrid, lane_mesh, replicate
from flaxmnist.plan import DEFAULT_MAX_LANES, DEFAULT_MEMORY_BUDGET, Call, plan_calls
from flaxmnist.progress import Progress, RunStats, TqdmProgress
from flaxmnist.rundir import make_records, open_run_dir, write_results
from flaxmnist.sources import load_dataset
from flaxmnist.specs import COMPUTE_DTYPES, Config, Study
from flaxmnist.studies import load_studies
from flaxmnist.train import Hyperparams, TrainSpec, make_hyperparams


def run_sweep(
    study: str | Path | Study | Sequence[Study],
    *,
    epochs: int | None = None,
    seeds: int = 3,
    limit_train: int | None = None,
    validate_on: ValidateOn = "holdout",
    dataset: str = "mnist",
    data_dir: str | Path | None = None,
    out: str | Path | None = None,
    quiet: bool = True,
    max_lanes: int | None = None,
    memory_budget: int = DEFAULT_MEMORY_BUDGET,
    dtype: str = "float32",
    stats: RunStats | None = None,
    progress: Progress | None = None,
) -> list[dict[str, Any]]:
    """Run a study (or several) and return one record per (study, configuration, seed).

    Args:
      study: a study name (``"lr"``, or ``"all"`` for the whole notebook), a path to a TOML
        spec, a loaded ``Study`` or a list of them.
      epochs: override every configuration's epoch count.
      seeds: seeds per configuration, paired across configurations (seed ``i`` is the key
        ``jax.random.key(i)`` everywhere), run as extra lanes of the same calls.
      limit_train: train on only the first N images of the train split.
      validate_on: ``"holdout"`` (the last 10,000 training images, never trained on) or
        ``"test"`` (the reference notebook's protocol: the test set selects).
      dataset: ``"mnist"`` or ``"tfds:NAME"`` (TensorFlow Datasets, e.g.
        ``"tfds:fashion_mnist"``; needs the ``tfds`` extra and, on first use, the network).
      data_dir: a directory with MNIST-format IDX files instead of the shipped MNIST.
      out: the run directory: ``manifest.json`` and ``results.jsonl``, rewritten atomically
        after every call. The same ``out`` and settings again resume: lanes already in
        ``results.jsonl`` are not trained again. ``None`` writes nothing.
      quiet: no progress on stderr (when ``progress`` is not given).
      max_lanes: at most this many lanes per call (default: as many as ``memory_budget``
        allows, and on a CPU at most ``DEFAULT_MAX_LANES``).
      memory_budget: bytes of device memory one call's lanes may use (``plan.lane_bytes``).
      dtype: ``"float32"`` or ``"bfloat16"``: activations and matrix products.
      stats: where compile and training time, programs and lane-epochs are added up.
      progress: the hooks told about calls and epochs (default: ``TqdmProgress``).

    Returns:
      Records with ``study``, ``config`` (every hyperparameter, resolved, plus ``dataset``,
      ``validate_on``, ``train_size``, ``dtype``), ``config_index``, ``seed``, ``history``
      (per-epoch lists), ``val_accuracy`` and ``test_accuracy`` (last epoch), ``diverged``
      and ``at_chance``; in study order, then configuration, then seed.

    Raises:
      SpecError, SettingsError, DataError: before anything trains, naming the parameter
        (or the spec file and key) at fault.

    Example::

        >>> import flaxmnist
        >>> records = flaxmnist.run_sweep("lr", epochs=1, seeds=1, limit_train=400)
        >>> len(records), sorted(records[0])[:3]
        (24, ['at_chance', 'config', 'config_index'])
    """
    studies = _studies(study, epochs)
    _check(seeds, max_lanes, dtype)
    splits = make_splits(load_dataset(dataset, data_dir), validate_on, limit_train=limit_train)
    _check_batch_sizes(studies, len(splits.train_labels))
    data_settings = {
        "dataset": dataset if data_dir is None else str(data_dir),
        "validate_on": validate_on,
        "train_size": len(splits.train_labels),
        "dtype": dtype,
    }
    done: dict[tuple[int, int, int], dict[str, Any]] = {}
    if out is not None:
        settings = {"studies": [_study_settings(s) for s in studies], "seeds": seeds}
        names = [s.name for s in studies]
        for record in open_run_dir(out, {**settings, **data_settings}):
            done[(names.index(record["study"]), record["config_index"], record["seed"])] = record
    mesh = lane_mesh()
    on_cpu = mesh.devices.flat[0].platform == "cpu"
    calls = plan_calls(
        [s.configs for s in studies],
        seeds,
        max_lanes=max_lanes,
        memory_budget=memory_budget,
        val_is_test=validate_on == "test",
        dtype=dtype,
        # Measured on a CPU only (BENCHMARKS.md); an accelerator gets every lane at once and
        # one program per shape.
        lane_cap=DEFAULT_MAX_LANES if on_cpu else None,
        split_regularisers=on_cpu,
    )
    data, chance = replicate(splits, mesh), chance_accuracy(splits.val_labels)
    stats = RunStats() if stats is None else stats
    progress = TqdmProgress(disable=quiet) if progress is None else progress
    start = time.perf_counter()
    for number, call in enumerate(calls, 1):
        name, configs = studies[call.study_index].name, studies[call.study_index].configs
        label = f"{name} {number}/{len(calls)} [{_widths(call.spec)}, {len(call.lanes)} lanes]"
        missing = sorted({c for c, s in call.lanes if (call.study_index, c, s) not in done})
        if not missing:
            progress.skipped(label)
            continue
        # The configurations with a missing seed are trained with all the call's seeds;
        # records an earlier run wrote are kept.
        grid = LaneGrid(
            call.spec, [_hyperparams(call.spec, configs[i]) for i in missing], call.seeds, data,
            mesh=mesh, stats=stats,
        )  # fmt: skip
        history = _train(grid, call, label, progress)
        for record in make_records(history, missing, call.seeds, chance):
            config = {**configs[record["config_index"]].to_dict(), **data_settings}
            key = (call.study_index, record["config_index"], record["seed"])
            done.setdefault(key, {"study": name, "config": config, **record})
        if out is not None:
            write_results(out, [done[key] for key in sorted(done)])
    progress.finished(_summary(studies, seeds, time.perf_counter() - start, stats, mesh))
    return [done[key] for key in sorted(done)]


def _studies(study: str | Path | Study | Sequence[Study], epochs: int | None) -> list[Study]:
    if isinstance(study, Study):
        studies = [study]
    elif isinstance(study, str | Path):
        studies = load_studies(study)
    else:
        studies = list(study)
    names = [s.name for s in studies]
    if len(set(names)) != len(names):
        raise SettingsError(f"two studies share a name ({names}): results are kept by name")
    if epochs is not None and epochs < 1:
        raise SettingsError("must be >= 1", parameter="epochs", value=epochs)
    if epochs is None:
        return studies
    return [
        replace(s, configs=tuple(replace(c, epochs=epochs) for c in s.configs)) for s in studies
    ]


def _check(seeds: int, max_lanes: int | None, dtype: str) -> None:
    if seeds < 1:
        raise SettingsError("must be >= 1", parameter="seeds", value=seeds)
    if max_lanes is not None and max_lanes < 1:
        raise SettingsError("must be >= 1", parameter="max_lanes", value=max_lanes)
    if dtype not in COMPUTE_DTYPES:
        raise SettingsError(
            f"expected one of {', '.join(COMPUTE_DTYPES)}", parameter="dtype", value=dtype
        )


def _check_batch_sizes(studies: Sequence[Study], train_size: int) -> None:
    for study in studies:
        for config in study.configs:
            if config.batch_size > train_size:
                raise SettingsError(
                    f"{study.source}: batch_size = {config.batch_size}: larger than the "
                    f"training set ({train_size} images)"
                )


def _study_settings(study: Study) -> dict[str, Any]:
    return {"name": study.name, "configs": [c.to_dict() for c in study.configs]}


def _hyperparams(spec: TrainSpec, config: Config) -> Hyperparams:
    return make_hyperparams(
        spec,
        learning_rate=config.learning_rate,
        l2=config.l2,
        weight_decay=config.weight_decay,
        dropout=config.applied_dropout(),
    )


def _widths(spec: TrainSpec) -> str:
    return "-".join(str(w) for w in (784, *spec.hidden, spec.num_classes))


def _train(grid: LaneGrid, call: Call, label: str, progress: Progress) -> dict[str, np.ndarray]:
    """Compile, init and train ``grid`` for the call's epochs; ``[seed, config, epoch]``."""
    progress.call_started(label, call.spec.epochs)
    try:
        start = time.perf_counter()
        compiled_now = grid.compile()
        progress.compiled(time.perf_counter() - start, compiled_now)
        grid.init()
        epochs, best = [], float("nan")
        for _ in range(call.spec.epochs):
            epochs.append(grid.step())
            accuracy = float(np.nanmax(epochs[-1]["val_accuracy"]))
            best = accuracy if not accuracy <= best else best
            progress.epoch(best)
    finally:
        progress.call_done()
    return {key: np.stack([m[key] for m in epochs], axis=-1) for key in epochs[0]}


def _summary(studies: Sequence[Study], seeds: int, seconds: float, stats: RunStats, mesh) -> str:
    configs = sum(len(s.configs) for s in studies)
    return (
        f"{', '.join(s.name for s in studies)}: {configs} configs x {seeds} seeds in "
        f"{seconds:.1f}s ({stats.compile_seconds:.1f}s compiling, {stats.train_seconds:.1f}s "
        f"training, {mesh.devices.size} device(s))"
    )
