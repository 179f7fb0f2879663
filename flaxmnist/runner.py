"""``run_sweep``: load the data, check every setting (and that a lane fits the memory
budget) before anything runs, plan the calls, and train them (``loop.SweepLoop``) inside the
locked run directory, whose manifest records the attempt (``attempt.run_directory``).

One record per (study, configuration, seed) comes out, the same dicts that
``results.jsonl`` holds (``records.make_records`` says what ``diverged`` and ``at_chance``
mean). Lanes are independent: a lane whose loss goes non-finite carries NaNs in its own
slice of the grid only, and the other lanes are unaffected.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

import jax

from flaxmnist import interrupts
from flaxmnist.core.data import ValidateOn, chance_accuracy, make_splits
from flaxmnist.core.sources import load_dataset
from flaxmnist.devices import cluster, machine
from flaxmnist.devices.machine import FALLBACK_MEMORY_BUDGET, default_memory_budget
from flaxmnist.devices.placement import lane_mesh, replicate
from flaxmnist.errors import SettingsError
from flaxmnist.preflight import (
    check_batch_sizes,
    check_memory,
    check_settings,
    check_strategies,
    resolve_studies,
)
from flaxmnist.run.attempt import Follower, run_directory
from flaxmnist.run.loop import SweepLoop
from flaxmnist.run.plan import DEFAULT_MAX_LANES, Plan, PlanSettings, StudyPlan, make_plan
from flaxmnist.run.progress import Progress, RunStats, TqdmProgress
from flaxmnist.search.optuna_db import LiveExport
from flaxmnist.search.registry import STRATEGIES, strategy_class
from flaxmnist.search.warm import warm_records
from flaxmnist.specs.config import DEFAULT_PRECISION, DEFAULTS, Study


@dataclass(frozen=True)
class SweepSettings:
    """How a sweep runs: every setting of ``run_sweep`` but the study and its hooks.

    ``run_sweep(study, settings)`` runs with them, and keywords override single fields:
    ``run_sweep("lr", settings, seeds=1)``. ``python -m flaxmnist.sweep`` builds one from
    its flags, which have the same names.

    Attributes:
      epochs: override every configuration's epoch count.
      seeds: seeds per configuration, paired across configurations (seed ``i`` is the key
        ``jax.random.key(i)`` everywhere), run as extra lanes of the same calls.
      first_seed: the first seed: seeds ``first_seed`` … ``first_seed + seeds - 1`` (fresh
        seeds to retrain a configuration a search selected).
      budget: training FLOPs the run may spend (``plan.train_flops``: 6 per weight per
        training image, every lane counted). A grid, random or quasi-random study keeps the
        configurations, in order, that fit; a halving or PBT search stops before the epoch
        that would pass it, a learned search (``flaxmnist.search.learned``) before the round.
        Every record has its ``compute``.
      limit_train: train on only the first N images of the train split.
      validate_on: ``"holdout"`` (the last 10,000 training images, never trained on) or
        ``"test"`` (the reference notebook's protocol: the test set selects).
      dataset: ``"mnist"`` or ``"tfds:NAME"`` (TensorFlow Datasets, e.g.
        ``"tfds:fashion_mnist"``; needs the ``tfds`` extra and, on first use, the network).
      data_dir: a directory with MNIST-format IDX files instead of the shipped MNIST.
      out: the run directory: ``manifest.json`` and ``results.jsonl``, rewritten atomically
        after every call, and ``optuna.db`` (``flaxmnist.search.optuna_db``) brought up to date.
        The same ``out`` and settings again resume: lanes already in ``results.jsonl`` are
        not trained again. ``None`` writes nothing.
      max_lanes: at most this many lanes per call (default: as many as ``memory_budget``
        allows, and on a CPU at most ``DEFAULT_MAX_LANES``).
      memory_budget: bytes of device memory one call's lanes may use, by
        ``plan.lane_bytes`` (default: ``machine.default_memory_budget``, 80% of what the
        device reports, or of the host's memory on a CPU). A configuration whose one lane
        does not fit is refused before anything runs; a call that runs out of memory all
        the same is retried with half its lanes, down to one.
      dtype: ``"float32"`` or ``"bfloat16"``: activations and matrix products.
      precision: how float32 matrix products are computed (``specs.MATMUL_PRECISIONS``):
        ``"float32"`` (the default: full float32 everywhere, as on a CPU), or, on GPUs and
        TPUs, the faster ``"tensorfloat32"`` or ``"bfloat16"`` passes, or ``"backend"``
        (JAX's default for the device). Recorded in the manifest.
      pad_widths: configurations of one depth share one program, their hidden layers
        padded to the widest (``plan.group_configs``): fewer compiles, more arithmetic;
        equal up to float rounding and dropout draws. Default: on a GPU or TPU, not on a CPU.
      quiet: no progress (when ``progress`` is not given; progress goes to stderr, or to
        a notebook's widget). Processes other than process 0 of a cluster show none.
      warm_start: an earlier run directory of the same space: its finished configurations
        are told to each learned sampler before it proposes (``search.warm``).

    Example::

        >>> import flaxmnist
        >>> quick = flaxmnist.SweepSettings(epochs=1, seeds=1, limit_train=400, quiet=True)
        >>> len(flaxmnist.run_sweep("l2", quick)), len(flaxmnist.run_sweep("l2", quick, seeds=2))
        (3, 6)
    """

    epochs: int | None = None
    seeds: int = 3
    first_seed: int = 0
    budget: float | None = None
    limit_train: int | None = None
    validate_on: ValidateOn = "holdout"
    dataset: str = "mnist"
    data_dir: str | Path | None = None
    out: str | Path | None = None
    quiet: bool = False
    max_lanes: int | None = None
    memory_budget: int | None = None
    dtype: str = "float32"
    precision: str = DEFAULT_PRECISION
    pad_widths: bool | None = None
    warm_start: str | Path | None = None


def run_sweep(
    study: str | Path | Study | Sequence[Study],
    settings: SweepSettings | None = None,
    *,
    stats: RunStats | None = None,
    progress: Progress | None = None,
    **overrides: Any,
) -> list[dict[str, Any]]:
    """Run a study (or several) and return one record per (study, configuration, seed).

    Args:
      study: a study name (``"lr"``, or ``"all"`` for the whole notebook), a path to a TOML
        spec, a loaded ``Study`` or a list of them.
      settings: how it runs (``SweepSettings``; default: its defaults).
      stats: where compile and training time, programs and lane-epochs are added up.
      progress: the hooks told about calls and epochs (default: ``TqdmProgress``).
      **overrides: ``SweepSettings`` fields that replace those of ``settings``, e.g.
        ``run_sweep("lr", epochs=1, seeds=2)``.

    Returns:
      Records with ``study``, ``config`` (every hyperparameter, resolved, plus ``dataset``,
      ``validate_on``, ``train_size``, ``dtype``), ``config_index``, ``seed``, ``history``
      (per-epoch lists), ``val_accuracy`` and ``test_accuracy`` (last epoch), ``diverged``
      and ``at_chance``; in study order, then configuration, then seed.

    Raises:
      SpecError, SettingsError, DataError: before anything trains, naming the parameter
        (or the spec file and key) at fault.
      RunDirError: ``out`` is in use by another run, torn, or cannot be written (a full
        disk); what was written before is intact, and the same call resumes.
      OutOfMemoryError: a lane cannot fit (before anything trains), or a call ran out of
        memory at every size down to one lane (the records before it are kept).

    Example::

        >>> import flaxmnist
        >>> records = flaxmnist.run_sweep("lr", epochs=1, seeds=1, limit_train=400)
        >>> len(records), sorted(records[0])[:4]
        (24, ['at_chance', 'compute', 'config', 'config_index'])
    """
    s = _settings(settings, overrides)
    studies = resolve_studies(study, s.epochs, s.validate_on)
    check_settings(s.seeds, s.max_lanes, s.memory_budget, s.dtype, s.precision)
    if s.first_seed < 0:
        raise SettingsError("must be >= 0", parameter="first_seed", value=s.first_seed)
    if s.budget is not None and not s.budget > 0:
        raise SettingsError("must be > 0 (training FLOPs)", parameter="budget", value=s.budget)
    splits = make_splits(
        load_dataset(s.dataset, s.data_dir), s.validate_on, limit_train=s.limit_train
    )
    data_settings = {
        "dataset": s.dataset if s.data_dir is None else str(s.data_dir),
        "validate_on": s.validate_on,
        "train_size": len(splits.train_labels),
        "dtype": s.dtype,
    }
    warm = _warm_start(s.warm_start, studies, data_settings)
    told = {name: len({r["config_index"] for r in records}) for name, (_, records) in warm.items()}
    plan = _plan(studies, s, len(splits.train_labels), told)
    strategies = [strategy_class(one.strategy)(one) for one in (p.study for p in plan.studies)]
    for strategy in strategies:
        if strategy.study.name in warm:
            strategy.warm(warm[strategy.study.name][1])
    mesh = lane_mesh()
    sweep = SweepLoop(
        plan,
        strategies,
        data_settings,
        replicate(splits, mesh),
        chance_accuracy(splits.val_labels),
        mesh,
        RunStats() if stats is None else stats,
        _progress(progress, s.quiet),
        budget=s.budget,
    )
    manifest_settings = {
        "studies": [_study_settings(p) for p in plan.studies],
        "seeds": s.seeds,
        "first_seed": s.first_seed,
        "budget": s.budget,
        "precision": s.precision,
        **data_settings,
        "warm_start": _warm_settings(s.warm_start, warm),
    }
    with _matmul_precision(s.precision), interrupts.stopping_on_ctrl_c():
        attempt_info = {"devices": list(mesh.devices.flat), "pad_widths": plan.settings.pad_widths}
        specs = {study.name: _study_spec(study) for study in studies}
        return _run(sweep, s.out, manifest_settings, attempt_info | {"specs": specs})


def _warm_start(
    directory: str | Path | None, studies: Sequence[Study], data: dict[str, Any]
) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    """Per study whose strategy can be told earlier results, its study in ``directory`` and
    the records it is told (``search.warm``); ``{}`` without a directory.

    Raises:
      SettingsError: no study of this run can be told earlier results, or ``warm_records``
        refuses the directory.
    """
    if directory is None:
        return {}
    told = [s for s in studies if strategy_class(s.strategy).warm_starts]
    if not told:
        able = [name for name, cls in STRATEGIES.items() if cls.warm_starts]
        raise SettingsError(
            f"no study of this run can be told earlier results (strategies that can: "
            f"{', '.join(able)})",
            parameter="warm_start",
            value=str(directory),
        )
    return cluster.share(  # process 0 reads the directory; the others get what it read
        lambda: {
            s.name: warm_records(directory, s, strategy_class(s.strategy)(s).epochs, data)
            for s in told
        }
    )


def _warm_settings(directory, warm) -> dict[str, Any] | None:
    """What ``manifest.json`` keeps of the warm start (a resume must be told the same)."""
    if directory is None:
        return None
    studies = {
        name: {"from": source, "configurations": len({r["config_index"] for r in records})}
        for name, (source, records) in warm.items()
    }
    return {"dir": str(Path(directory).resolve()), "studies": studies}


def _plan(
    studies: Sequence[Study], s: SweepSettings, train_size: int, warm: dict[str, int]
) -> Plan:
    """The run's plan, checked: every batch fits the training set (before the budget cuts
    any configuration), every lane the memory budget (where the device's memory is
    known). On a CPU calls hold at most ``DEFAULT_MAX_LANES`` lanes and programs compile
    unused regularisers out (measured, BENCHMARKS.md); an accelerator gets every lane at
    once and one program per shape."""
    device = jax.local_devices()[0]
    cpu = device.platform == "cpu"
    memory, source = (
        (s.memory_budget, "as given") if s.memory_budget else default_memory_budget(device)
    )
    settings = PlanSettings(
        max_lanes=s.max_lanes,
        memory_budget=memory or FALLBACK_MEMORY_BUDGET,
        val_is_test=s.validate_on == "test",
        dtype=s.dtype,
        lane_cap=DEFAULT_MAX_LANES if cpu else None,
        split_regularisers=cpu,
        pad_widths=not cpu if s.pad_widths is None else s.pad_widths,
    )
    seeds = tuple(range(s.first_seed, s.first_seed + s.seeds))
    strategies = [strategy_class(one.strategy) for one in studies]
    check_batch_sizes(studies, train_size, s.limit_train)
    plan = make_plan(studies, strategies, seeds, settings, train_size, s.budget, warm)
    check_strategies(plan)
    if memory is not None:  # unknown memory: no refusal; a call that runs out is halved
        check_memory(plan, memory, source)
    return plan


def _settings(settings: SweepSettings | None, overrides: dict[str, Any]) -> SweepSettings:
    """``settings`` with ``overrides``; an unknown name is a TypeError, as for any keyword."""
    names = {f.name for f in fields(SweepSettings)}
    for name in overrides:
        if name not in names:
            raise TypeError(
                f"run_sweep() got an unexpected keyword argument {name!r} (the settings are: "
                f"{', '.join(sorted(names))})"
            )
    return replace(settings or SweepSettings(), **overrides)


def _run(sweep: SweepLoop, out, settings, info) -> list[dict[str, Any]]:
    """Train in the run directory ``out`` (none if ``None``); process 0 owns it, the other
    processes of a cluster follow what it read."""
    if out is None:
        return sweep.run()
    if not cluster.is_main():
        return sweep.run(Follower(out, cluster.share(None)))
    hosts = cluster.hosts()
    environment = {
        **machine.environment(info["devices"]),
        "pad_widths": info["pad_widths"],
        "processes": jax.process_count(),
        # Known when cluster.start joined the cluster (not when the caller did).
        "hosts": len(set(hosts)) if len(hosts) == jax.process_count() else None,
    }
    live = LiveExport(out, settings)
    opened = run_directory(out, settings, environment, share=cluster.share, specs=info["specs"])
    with opened as attempt:
        sweep.keeper.exports.append(live)
        try:
            return sweep.run(attempt)
        finally:
            live.close()


def _progress(progress: Progress | None, quiet: bool) -> Progress:
    if progress is None:
        return TqdmProgress(disable=quiet or not cluster.is_main())
    return progress


def _matmul_precision(precision: str):
    """The context that sets JAX's float32 matrix-product precision (none for backend)."""
    if precision == "backend":
        return contextlib.nullcontext()
    return jax.default_matmul_precision(precision)


def _study_spec(study: Study) -> dict[str, Any]:
    """What ``manifest.json`` keeps of a study's spec beside its settings (not a setting: a
    resume may change its description): the description, where it came from, and for a
    search the spec resolved, its ``[base]`` filled in with the defaults. A grid's resolved
    spec is its settings' ``configs``, every key of every configuration."""
    spec: dict[str, Any] = {"description": study.description, "source": str(study.source)}
    if not strategy_class(study.strategy).searches:
        return spec
    return spec | {"resolved": {**study.search.settings, "base": {**DEFAULTS, **study.search.base}}}


def _study_settings(planned: StudyPlan) -> dict[str, Any]:
    study, strategy = planned.study, strategy_class(planned.study.strategy)
    settings = {"name": study.name, "configs": [c.to_dict() for c in study.configs]}
    if strategy.searches:
        # [base] too: what every proposal trains with (a resume with another is refused)
        settings["search"] = {**study.search.settings, "base": study.search.base}
    if facts := strategy.planned(study, planned.round_size, planned.warm):
        settings["planned"] = facts
    return settings
