"""Run a study: group configurations by shape, train each group as vmapped, sharded calls.

Configurations that share every static setting (layer widths, epochs, batch size, the
regularisers in use) form a group: one compiled program. A call trains a grid of the
group's configurations × seeds, the *lanes*: ``init`` and ``run_epoch`` of
``make_train_fns`` vmapped over configurations (inner, the key unbatched) and seeds (outer),
jitted with the configuration axis sharded over every local device, and the host looping
over epochs. Seeds are paired: seed ``i`` uses the key ``jax.random.key(i)`` in every
configuration, so two configurations differ by their hyperparameters only (same initial
weights where shapes agree, same shuffles, same dropout keys), and the configurations of a
seed share each minibatch, which the inner vmap exploits: one gather and one wide matrix
product per seed instead of one per lane.

Lanes are independent: a lane whose loss goes non-finite carries NaNs in its own slice of
the batch only; it is reported as ``diverged`` with the accuracy its parameters really give,
and the other lanes are unaffected (tests check this). A lane that stays finite but ends no
more accurate on the validation split than always guessing that split's most common class is
reported as ``at_chance`` (lr = 1 does this in every seed of the ``lr`` study).

One record per (configuration, seed) comes out, the same dicts that ``results.jsonl`` holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from flaxmnist.data import DataSplits, ValidateOn, load_dataset, make_splits
from flaxmnist.specs import Config, Study, load_studies
from flaxmnist.train import (
    COMPUTE_DTYPES,
    HISTORY_KEYS,
    TrainSpec,
    make_hyperparams,
    make_train_fns,
    stack_hyperparams,
)


class SettingsError(ValueError):
    """Settings that cannot run (bad seeds, epochs, split sizes, batch size, output path)."""


@dataclass(frozen=True)
class Group:
    """Configurations that share a compiled program (same static ``TrainSpec``)."""

    spec: TrainSpec
    config_indices: tuple[int, ...]


@dataclass(frozen=True)
class Chunk:
    """One compiled call: configurations × seeds of one study that share a ``TrainSpec``."""

    study_index: int
    spec: TrainSpec
    config_indices: tuple[int, ...]
    seeds: tuple[int, ...]

    @property
    def lanes(self) -> tuple[tuple[int, int], ...]:
        """``(config_index, seed)`` pairs, configuration-major."""
        return tuple((c, seed) for c in self.config_indices for seed in self.seeds)


def train_spec_of(config: Config, val_is_test: bool = False) -> TrainSpec:
    """The static part of a configuration.

    Regularisers a configuration does not use are compiled out (``use_dropout`` etc.):
    exact, and cheaper, so configurations without dropout never share a call with ones that
    have it.
    """
    return TrainSpec(
        hidden=config.hidden,
        epochs=config.epochs,
        batch_size=config.batch_size,
        loss=config.loss,
        use_dropout=any(rate != 0 for rate in config.applied_dropout()),
        use_l2=any(coefficient != 0 for coefficient in config.l2),
        use_weight_decay=config.weight_decay != 0,
        val_is_test=val_is_test,
    )


def group_configs(
    configs: Sequence[Config], val_is_test: bool = False, split_regularisers: bool = True
) -> list[Group]:
    """Group configurations by their static settings, keeping first-seen order.

    With ``split_regularisers=False`` configurations of one shape share a program whatever
    regularisers they use (it then has every regulariser any of them uses): fewer compiles,
    for accelerators (a choice not yet measured on one: fewer compiles against the cost of
    masks and penalties at rate 0).
    """
    specs = [train_spec_of(config, val_is_test) for config in configs]
    groups: dict[TrainSpec, list[int]] = {}
    for index, spec in enumerate(specs):
        if not split_regularisers:
            spec = replace(spec, use_dropout=False, use_l2=False, use_weight_decay=False)
        groups.setdefault(spec, []).append(index)
    result = []
    for spec, indices in groups.items():
        members = [specs[i] for i in indices]
        spec = replace(
            spec,
            use_dropout=any(m.use_dropout for m in members),
            use_l2=any(m.use_l2 for m in members),
            use_weight_decay=any(m.use_weight_decay for m in members),
        )
        result.append(Group(spec, tuple(indices)))
    return result


def lane_bytes(spec: TrainSpec, input_size: int = 784) -> int:
    """A generous estimate of the device memory one lane needs while it trains.

    Parameters, gradients, Adam's two moments and the update (6 copies of the weights), the
    activations of one training step (inputs, and per hidden unit its pre-activation,
    activation and dropout mask), and one evaluation chunk, all float32, times 1.5 for
    XLA's temporaries.
    """
    sizes = [input_size, *spec.hidden, spec.num_classes]
    params = sum(a * b + b for a, b in zip(sizes, sizes[1:], strict=False))
    units = sum(spec.hidden) + spec.num_classes
    step = spec.batch_size * (input_size + 3 * units)
    evaluation = spec.eval_batch_size * (input_size + 2 * units)
    return int(1.5 * 4 * (6 * params + step + evaluation))


#: On a CPU, lanes per call when neither ``max_lanes`` nor the memory budget asks for fewer.
#: Calls of 24 lanes ran 1.09× faster per lane than calls of 72 on the 2-core CPU
#: (BENCHMARKS.md). Accelerators get no such cap.
DEFAULT_MAX_LANES = 24


def plan_chunks(
    studies_configs: Sequence[Sequence[Config]],
    seeds: int,
    max_lanes: int | None,
    budget: int,
    val_is_test: bool = False,
    lane_cap: int | None = DEFAULT_MAX_LANES,
    split_regularisers: bool = True,
) -> list[Chunk]:
    """Split every study's shape groups into calls of configurations × seeds.

    A call holds at most ``max_lanes`` lanes, else as many as ``budget`` bytes allow
    (``lane_bytes``) up to ``lane_cap`` (``None``: no cap), and at least one. Groups are
    ``group_configs(configs, val_is_test, split_regularisers)``. All seeds of a
    configuration share a call when the size allows (then a call is whole configurations
    × every seed); otherwise a configuration's seeds are split over calls.
    """
    chunks = []
    for study_index, configs in enumerate(studies_configs):
        for group in group_configs(configs, val_is_test, split_regularisers):
            size = max_lanes or budget // lane_bytes(group.spec)
            if not max_lanes and lane_cap is not None:
                size = min(size, lane_cap)
            size = max(1, size)
            indices = group.config_indices
            if size >= seeds:
                per_call = size // seeds
                for start in range(0, len(indices), per_call):
                    chunk_indices = indices[start : start + per_call]
                    all_seeds = tuple(range(seeds))
                    chunks.append(Chunk(study_index, group.spec, chunk_indices, all_seeds))
            else:
                for index in indices:
                    for start in range(0, seeds, size):
                        chunk_seeds = tuple(range(start, min(seeds, start + size)))
                        chunks.append(Chunk(study_index, group.spec, (index,), chunk_seeds))
    return chunks


def _json_float(value) -> float | None:
    """A float32 as the shortest decimal that round-trips; non-finite becomes None (JSON null)."""
    value = np.float32(value)
    return float(str(value)) if np.isfinite(value) else None


def _grid(fn: Callable, config_axes: tuple, seed_axes: tuple) -> Callable:
    """vmap ``fn`` over configurations (inner) and seeds (outer): outputs are ``[seed, config]``."""
    return jax.vmap(jax.vmap(fn, in_axes=config_axes), in_axes=seed_axes)


def lane_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named ``"lanes"`` over ``devices`` (default: every local device)."""
    devices = list(jax.local_devices() if devices is None else devices)
    return Mesh(np.array(devices), ("lanes",))


def _state_spec(shard_seeds: bool) -> P:
    """How a ``[seed, config, ...]`` array is split over the mesh."""
    return P("lanes", None) if shard_seeds else P(None, "lanes")


@dataclass
class GridRun:
    """What ``run_grid`` measured: seconds spent compiling and training."""

    compile_seconds: float = 0.0
    train_seconds: float = 0.0


_COMPILED: dict[Any, tuple[Any, Any]] = {}


def compile_grid(
    spec: TrainSpec, mesh: Mesh, hparams, keys, data: DataSplits, shard_seeds: bool = False
):
    """Compile (or reuse) ``(init, run_epoch)`` over a ``[seed, config]`` grid for these shapes.

    The grid is split over ``mesh`` along configurations, or along seeds if ``shard_seeds``.
    Calls of the same shapes in one process share the executables; across processes the
    persistent compilation cache (``enable_compilation_cache``) does.
    """
    # The epoch count is the host loop's, not the programs': groups that differ only in
    # epochs share them.
    spec = replace(spec, epochs=1)
    signature = tuple((x.shape, str(x.dtype)) for x in jax.tree.leaves((hparams, keys, data)))
    cache_key = (spec, mesh, signature, shard_seeds)
    if cache_key not in _COMPILED:
        state_sharding = NamedSharding(mesh, _state_spec(shard_seeds))
        init, run_epoch = make_train_fns(spec)
        grid_init = jax.jit(
            _grid(init, (0, None, None), (None, 0, None)), out_shardings=state_sharding
        )
        grid_epoch = jax.jit(
            _grid(run_epoch, (0, 0, None, None, None), (0, None, 0, None, None)),
            out_shardings=(state_sharding, state_sharding),
            donate_argnums=0,  # the old state's buffers hold the new one
        )
        state_shape = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=state_sharding),
            jax.eval_shape(grid_init, hparams, keys, data),
        )
        epoch_index = jax.ShapeDtypeStruct((), jnp.int32, sharding=NamedSharding(mesh, P()))
        _COMPILED[cache_key] = (
            grid_init.lower(hparams, keys, data).compile(),
            grid_epoch.lower(state_shape, hparams, keys, data, epoch_index).compile(),
        )
    return _COMPILED[cache_key]


def enable_compilation_cache(directory: str | Path | None) -> Path | None:
    """Keep compiled programs in ``directory`` (JAX's persistent compilation cache).

    A later run of the same shapes, in any process, loads them instead of compiling.
    ``None`` leaves JAX's setting alone. Returns the directory.
    """
    if directory is None:
        return None
    directory = Path(directory).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(directory))
    # Cache every program, however quick to compile: a study has few and they are small.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return directory


def default_compilation_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/flaxmnist/jax`` (``~/.cache/flaxmnist/jax`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "flaxmnist" / "jax"


def run_grid(
    spec: TrainSpec,
    configs: Sequence[Config],
    config_indices: Sequence[int],
    seeds: Sequence[int],
    data: DataSplits,
    *,
    mesh: Mesh | None = None,
    on_compiled: Callable[[float], None] | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    timing: GridRun | None = None,
) -> list[dict[str, Any]]:
    """Train configurations × seeds (sharing ``spec``) as one vmapped, sharded program.

    Seed ``i`` uses the key ``jax.random.key(i)`` whatever the configuration (paired seeds).
    The configuration axis is sharded over ``mesh`` (default: every local device), padded
    to a multiple of the device count with copies of the last configuration, whose results
    are discarded. With fewer configurations than devices the seed axis is sharded instead
    (padded likewise), or, with fewer seeds too, the larger axis over fewer devices.
    The host loops over epochs, calling ``on_epoch(epoch_index, best validation accuracy
    so far)`` after each.

    Returns one partial record per lane, configuration-major: ``config_index``, ``seed``,
    ``history``, ``val_accuracy``, ``test_accuracy``, ``diverged``, ``at_chance``.
    """
    mesh = lane_mesh() if mesh is None else mesh
    num_devices = mesh.devices.size
    shard_seeds = len(config_indices) < num_devices and len(seeds) > len(config_indices)
    sharded = len(seeds) if shard_seeds else len(config_indices)
    if sharded < num_devices:
        mesh = lane_mesh(mesh.devices.flat[:sharded])
        num_devices = sharded
    padded = list(config_indices)
    padded_seeds = list(seeds)
    if shard_seeds:
        padded_seeds += [padded_seeds[-1]] * (-len(padded_seeds) % num_devices)
    else:
        padded += [padded[-1]] * (-len(padded) % num_devices)
    hparams = stack_hyperparams(
        [
            make_hyperparams(
                spec,
                learning_rate=configs[index].learning_rate,
                l2=configs[index].l2,
                weight_decay=configs[index].weight_decay,
                dropout=configs[index].applied_dropout(),
            )
            for index in padded
        ]
    )
    by_lane = NamedSharding(mesh, P("lanes"))
    replicated = NamedSharding(mesh, P())
    hparams = jax.device_put(hparams, replicated if shard_seeds else by_lane)
    keys = jnp.stack([jax.random.key(seed) for seed in padded_seeds])
    keys = jax.device_put(keys, by_lane if shard_seeds else replicated)
    data = jax.device_put(data, replicated)

    start = time.perf_counter()
    init_compiled, epoch_compiled = compile_grid(spec, mesh, hparams, keys, data, shard_seeds)
    compile_seconds = time.perf_counter() - start
    if on_compiled is not None:
        on_compiled(compile_seconds)

    start = time.perf_counter()
    state = init_compiled(hparams, keys, data)
    epochs = []
    best = float("nan")
    for epoch in range(spec.epochs):
        epoch_index = jax.device_put(jnp.int32(epoch), replicated)
        state, metrics = epoch_compiled(state, hparams, keys, data, epoch_index)
        metrics = jax.device_get(metrics)  # [seed, config] per metric; waits for the epoch
        epochs.append(metrics)
        real = metrics["val_accuracy"][: len(seeds), : len(config_indices)]
        accuracy = float(np.nanmax(real))
        best = accuracy if not accuracy <= best else best
        if on_epoch is not None:
            on_epoch(epoch, best)
    if timing is not None:
        timing.compile_seconds += compile_seconds
        timing.train_seconds += time.perf_counter() - start
    history = {key: np.stack([m[key] for m in epochs], axis=-1) for key in epochs[0]}

    val_labels = np.asarray(data.val_labels)
    # In float32, as train computes accuracies: a lane that predicts the majority class for
    # every image then compares equal, not one rounding step above.
    chance_accuracy = np.float32(np.bincount(val_labels).max()) / np.float32(len(val_labels))
    records = []
    for column, index in enumerate(config_indices):
        for row, seed in enumerate(seeds):
            lane_history = {
                key: [_json_float(v) for v in history[key][row, column]] for key in HISTORY_KEYS
            }
            diverged = bool(np.any(history["nonfinite"][row, column]))
            records.append(
                {
                    "config_index": index,
                    "seed": seed,
                    "history": lane_history,
                    "val_accuracy": lane_history["val_accuracy"][-1],
                    "test_accuracy": lane_history["test_accuracy"][-1],
                    "diverged": diverged,
                    "at_chance": not diverged
                    and bool(history["val_accuracy"][row, column][-1] <= chance_accuracy),
                }
            )
    return records


def write_json_atomic(path: Path, value: Any) -> None:
    """Write ``value`` as indented JSON to ``path`` via a temp file and a rename."""
    _write_atomic(path, json.dumps(value, indent=2, allow_nan=False) + "\n")


def write_jsonl_atomic(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """Write one JSON object per line to ``path`` via a temp file and a rename."""
    _write_atomic(path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in records))


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # make the rename itself durable
        finally:
            os.close(directory)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def default_out_dir(study_name: str) -> Path:
    """``runs/<study>-<timestamp>`` under the current directory, ``-2``, ``-3``… if taken."""
    base = Path("runs") / f"{study_name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    candidate, number = base, 1
    while candidate.exists():
        number += 1
        candidate = base.with_name(f"{base.name}-{number}")
    return candidate


class _Progress:
    """Progress of one call on stderr: a line when compiled, then a bar over epochs."""

    def __init__(self, label: str, epochs: int, enabled: bool):
        self.label, self.epochs, self.enabled = label, epochs, enabled
        self.bar = None

    def compiled(self, seconds: float) -> None:
        if self.enabled:
            from tqdm.auto import tqdm  # only for progress: the GPU benchmark runs without it

            print(f"{self.label}: compiled in {seconds:.1f}s", file=sys.stderr, flush=True)
            self.bar = tqdm(
                total=self.epochs, desc=self.label, unit="epoch", file=sys.stderr, leave=True
            )

    def epoch(self, _epoch_index: int, best_val_accuracy: float) -> None:
        if self.bar is not None:
            self.bar.set_postfix_str(f"best val {100 * best_val_accuracy:.2f}%", refresh=False)
            self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


DEFAULT_MEMORY_BUDGET = 8 * 2**30


def _fingerprint(settings: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _with_config_defaults(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` whose configurations lack keys added since (a newer flaxmnist's
    ``Config`` fields) get those keys at their defaults, which train as before."""
    defaults = Config().to_dict()
    studies = [
        {**study, "configs": [{**defaults, **config} for config in study.get("configs", [])]}
        for study in settings.get("studies", [])
    ]
    return {**settings, "studies": studies}


def _open_run_dir(out: Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Prepare ``out`` for a run with ``settings``; return the records of an earlier attempt.

    A new directory gets ``manifest.json`` (the resolved settings and their hash). An
    existing one must hold the same settings, else the run is refused rather than mixing
    results of different experiments.
    """
    manifest_path = out / "manifest.json"
    fingerprint = _fingerprint(settings)
    if manifest_path.exists():
        manifest = json.loads(manifest_path.read_text())
        old = _with_config_defaults(manifest.get("settings", {}))
        if _fingerprint(old) != fingerprint:
            changed = sorted(k for k in {*old, *settings} if old.get(k) != settings.get(k))
            raise SettingsError(
                f"--out {out}: holds a run with other settings (changed: "
                f"{', '.join(changed) or 'unknown'}); use another --out, or delete it to start over"
            )
        return _read_jsonl(out / "results.jsonl")
    if out.exists() and any(out.iterdir()):
        raise SettingsError(f"--out {out}: exists, is not empty and holds no flaxmnist manifest")
    write_json_atomic(manifest_path, {"fingerprint": fingerprint, "settings": settings})
    return []


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
    timing: GridRun | None = None,
    dtype: str = "float32",
) -> list[dict[str, Any]]:
    """Run a study (or several) and return one record per (study, configuration, seed).

    Args:
      study: a study name (``"lr"``, or ``"all"`` for the whole notebook), a path to a TOML
        spec, a loaded ``Study`` or a list of them.
      epochs: override every configuration's epoch count.
      seeds: seeds per configuration, paired across configurations, run as extra lanes of
        the same vmapped call.
      limit_train: train on only the first N images of the train split.
      validate_on: ``"holdout"`` (the last 10,000 training images, never trained on) or
        ``"test"`` (the reference notebook's protocol: the test set selects).
      dataset: ``"mnist"`` or ``"tfds:NAME"`` (TensorFlow Datasets, e.g.
        ``"tfds:fashion_mnist"``; needs the ``tfds`` extra and, on first use, the network).
      data_dir: a directory with MNIST-format IDX files instead of the shipped MNIST.
      out: if given, the run directory: ``manifest.json`` and ``results.jsonl``, rewritten
        atomically after every call. Running again with the same ``out`` and settings
        resumes: lanes already in ``results.jsonl`` are not trained again.
      quiet: no progress output on stderr.
      max_lanes: at most this many lanes per call (default: as many as ``memory_budget``
        allows by ``lane_bytes``).
      memory_budget: bytes of device memory one call's lanes may use.
      timing: if given, seconds spent compiling and training are added to it.
      dtype: ``"float32"`` or ``"bfloat16"``: the dtype of activations and matrix products
        (``TrainSpec.compute_dtype``); recorded in the settings and records when not float32.

    Returns:
      Records with ``study``, ``config`` (every hyperparameter, resolved, plus the data
      settings), ``config_index``, ``seed``, ``history`` (per-epoch lists), ``val_accuracy``
      and ``test_accuracy`` (last epoch), ``diverged`` (a training loss, a parameter or
      an evaluation loss went NaN or infinite) and ``at_chance`` (finite, but the last
      validation accuracy is no better than always guessing the most common class);
      in study order, then configuration, then seed.
    """
    if isinstance(study, Study):
        studies = [study]
    elif isinstance(study, str | Path):
        studies = load_studies(study)
    else:
        studies = list(study)
    if seeds < 1:
        raise SettingsError(f"seeds must be >= 1, got {seeds}")
    if epochs is not None and epochs < 1:
        raise SettingsError(f"epochs must be >= 1, got {epochs}")
    if max_lanes is not None and max_lanes < 1:
        raise SettingsError(f"max_lanes must be >= 1, got {max_lanes}")
    if dtype not in COMPUTE_DTYPES:
        raise SettingsError(f"dtype must be one of {', '.join(COMPUTE_DTYPES)}, got {dtype!r}")
    studies_configs = [
        [c if epochs is None else replace(c, epochs=epochs) for c in s.configs] for s in studies
    ]

    arrays = load_dataset(dataset, data_dir)
    try:
        splits = make_splits(arrays, validate_on=validate_on, limit_train=limit_train)
    except ValueError as err:
        raise SettingsError(str(err)) from None
    train_size = int(splits.train_images.shape[0])
    for study_, configs in zip(studies, studies_configs, strict=True):
        for config in configs:
            if config.batch_size > train_size:
                raise SettingsError(
                    f"{study_.source}: batch_size = {config.batch_size}: larger than the "
                    f"training set ({train_size} images)"
                )
    data_settings = {
        "dataset": dataset if data_dir is None else str(data_dir),
        "validate_on": validate_on,
        "train_size": train_size,
    }
    if dtype != "float32":  # absent at the default, so that older run directories resume
        data_settings["dtype"] = dtype

    done: dict[tuple[int, int, int], dict[str, Any]] = {}
    if out is not None:
        out = Path(out)
        if out.exists() and not out.is_dir():
            raise SettingsError(f"--out {out}: exists and is not a directory")
        settings = {
            "studies": [
                {"name": s.name, "configs": [c.to_dict() for c in configs]}
                for s, configs in zip(studies, studies_configs, strict=True)
            ],
            "seeds": seeds,
            **data_settings,
        }
        names = [s.name for s in studies]
        for record in _open_run_dir(out, settings):
            done[(names.index(record["study"]), record["config_index"], record["seed"])] = record

    mesh = lane_mesh()
    on_cpu = mesh.devices.flat[0].platform == "cpu"
    data = jax.device_put(splits, NamedSharding(mesh, P()))  # once, as uint8, on every device
    chunks = plan_chunks(
        studies_configs,
        seeds,
        max_lanes,
        memory_budget,
        val_is_test=validate_on == "test",
        # On a CPU: calls of at most 24 lanes, and unused regularisers compiled out (both
        # measured faster, BENCHMARKS.md); on an accelerator, unmeasured: every lane at once,
        # fewer compiles.
        lane_cap=DEFAULT_MAX_LANES if on_cpu else None,
        split_regularisers=on_cpu,
    )
    chunks = [replace(c, spec=replace(c.spec, compute_dtype=dtype)) for c in chunks]
    timing = GridRun() if timing is None else timing
    start = time.perf_counter()
    for number, chunk in enumerate(chunks, 1):
        study_, configs = studies[chunk.study_index], studies_configs[chunk.study_index]
        missing = [lane for lane in chunk.lanes if (chunk.study_index, *lane) not in done]
        widths = "-".join(str(w) for w in (784, *chunk.spec.hidden, 10))
        label = f"{study_.name} {number}/{len(chunks)} [{widths}, {len(chunk.lanes)} lanes]"
        if not missing:
            if not quiet:
                print(f"{label}: done in an earlier run, skipped", file=sys.stderr)
            continue
        # Rerun the (few) configurations with a missing seed, with all the chunk's seeds; keep
        # the records an earlier run wrote.
        config_indices = sorted({index for index, _ in missing})
        progress = _Progress(label, chunk.spec.epochs, enabled=not quiet)
        if not quiet:
            print(f"{label}: compiling...", file=sys.stderr, flush=True)
        try:
            records = run_grid(
                chunk.spec,
                configs,
                config_indices,
                chunk.seeds,
                data,
                mesh=mesh,
                on_compiled=progress.compiled,
                on_epoch=progress.epoch,
                timing=timing,
            )
        finally:
            progress.close()
        for record in records:
            key = (chunk.study_index, record["config_index"], record["seed"])
            if key in done:
                continue
            config = configs[record["config_index"]]
            done[key] = {
                "study": study_.name,
                "config": {**config.to_dict(), **data_settings},
                **record,
            }
        if out is not None:
            write_jsonl_atomic(out / "results.jsonl", [done[key] for key in sorted(done)])
    if not quiet:
        total = sum(len(configs) for configs in studies_configs)
        print(
            f"{', '.join(s.name for s in studies)}: {total} configs x {seeds} seeds in "
            f"{time.perf_counter() - start:.1f}s ({timing.compile_seconds:.1f}s compiling, "
            f"{timing.train_seconds:.1f}s training, {mesh.devices.size} device(s))",
            file=sys.stderr,
        )
    return [done[key] for key in sorted(done)]
