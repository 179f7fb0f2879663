"""Run a study: group configurations by shape, train each group as one vmapped call.

Configurations that share every static setting (layer widths, epochs, batch size) form a
group; a group's configurations × seeds are the *lanes* of one
``jax.jit(jax.vmap(train))`` call: one compile and one call per group. Seeds are paired:
seed ``i`` uses the key ``jax.random.key(i)`` in every configuration, so two configurations
differ by their hyperparameters only (same initial weights where shapes agree, same shuffles,
same dropout keys).

Lanes are independent: a lane whose loss goes non-finite carries NaNs in its own slice of
the batch only; it is reported as ``diverged`` with the accuracy its parameters really give,
and the other lanes are unaffected (tests check this). A lane that stays finite but ends no
more accurate on the validation split than always guessing that split's most common class is
reported as ``at_chance`` (lr = 1 does this: Adam's first steps at that size kill the ReLUs
and the network predicts one class).

One record per (configuration, seed) comes out, the same dicts that ``results.jsonl`` holds.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from flaxmnist.data import DataSplits, ValidateOn, load_mnist, make_splits
from flaxmnist.specs import Config, Study, load_study
from flaxmnist.train import HISTORY_KEYS, TrainSpec, make_hyperparams, make_train, stack_hyperparams


class SettingsError(ValueError):
    """Settings that cannot run (bad seeds, epochs, split sizes, batch size, output path)."""


@dataclass(frozen=True)
class Group:
    """Configurations that share a compiled program (same static ``TrainSpec``)."""

    spec: TrainSpec
    config_indices: tuple[int, ...]


def train_spec_of(config: Config) -> TrainSpec:
    """The static part of a configuration."""
    return TrainSpec(hidden=config.hidden, epochs=config.epochs, batch_size=config.batch_size)


def group_configs(configs: Sequence[Config]) -> list[Group]:
    """Group configurations by their static settings, keeping first-seen order."""
    groups: dict[TrainSpec, list[int]] = {}
    for index, config in enumerate(configs):
        groups.setdefault(train_spec_of(config), []).append(index)
    return [Group(spec, tuple(indices)) for spec, indices in groups.items()]


def _json_float(value) -> float | None:
    """A float32 as the shortest decimal that round-trips; non-finite becomes None (JSON null)."""
    value = np.float32(value)
    return float(str(value)) if np.isfinite(value) else None


def run_group(
    group: Group,
    configs: Sequence[Config],
    data: DataSplits,
    seeds: int,
    on_epoch: Callable[[Any, Any], None] | None = None,
    on_compiled: Callable[[float], None] | None = None,
) -> list[dict[str, Any]]:
    """Train every (configuration, seed) lane of ``group`` in one vmapped call.

    Returns one partial record per lane (``config_index``, ``seed``, ``history``,
    ``val_accuracy``, ``test_accuracy``, ``diverged``, ``at_chance``), configuration-major,
    seed-minor.
    """
    spec = group.spec
    hparams, keys, lanes = [], [], []
    for index in group.config_indices:
        config = configs[index]
        for seed in range(seeds):
            hparams.append(
                make_hyperparams(
                    spec,
                    learning_rate=config.learning_rate,
                    l2=config.l2,
                    weight_decay=config.weight_decay,
                    dropout=config.dropout,
                )
            )
            keys.append(jax.random.key(seed))
            lanes.append((index, seed))
    stacked = stack_hyperparams(hparams)
    stacked_keys = jnp.stack(keys)

    train = make_train(spec, on_epoch=on_epoch)
    batched = jax.jit(jax.vmap(train, in_axes=(0, 0, None)))
    start = time.perf_counter()
    compiled = batched.lower(stacked, stacked_keys, data).compile()
    if on_compiled is not None:
        on_compiled(time.perf_counter() - start)
    _, history = compiled(stacked, stacked_keys, data)
    history = jax.device_get(history)
    val_labels = np.asarray(data.val_labels)
    # In float32, as train computes accuracies: a lane that predicts the majority class for
    # every image then compares equal, not one rounding step above.
    chance_accuracy = np.float32(np.bincount(val_labels).max()) / np.float32(len(val_labels))

    records = []
    for lane, (index, seed) in enumerate(lanes):
        lane_history = {key: [_json_float(v) for v in history[key][lane]] for key in HISTORY_KEYS}
        diverged = bool(np.any(history["nonfinite"][lane]))
        records.append(
            {
                "config_index": index,
                "seed": seed,
                "history": lane_history,
                "val_accuracy": lane_history["val_accuracy"][-1],
                "test_accuracy": lane_history["test_accuracy"][-1],
                "diverged": diverged,
                "at_chance": not diverged
                and bool(history["val_accuracy"][lane][-1] <= chance_accuracy),
            }
        )
    return records


def write_jsonl_atomic(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """Write one JSON object per line to ``path`` via a temp file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "w") as handle:
            for record in records:
                handle.write(json.dumps(record, allow_nan=False) + "\n")
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
    """Progress of one group on stderr: a line when compiled, then a bar over epochs.

    ``train`` calls back once per lane and epoch; a bar step is ``lanes`` calls.
    """

    def __init__(self, label: str, epochs: int, lanes: int, enabled: bool):
        self.label, self.epochs, self.lanes, self.enabled = label, epochs, lanes, enabled
        self.bar = None
        self.calls = 0
        self.best = float("nan")
        self.lock = threading.Lock()

    def compiled(self, seconds: float) -> None:
        if self.enabled:
            print(f"{self.label}: compiled in {seconds:.1f}s", file=sys.stderr, flush=True)
            self.bar = tqdm(
                total=self.epochs, desc=self.label, unit="epoch", file=sys.stderr, leave=True
            )

    def epoch(self, _epoch_index, val_accuracy) -> None:
        # Called from XLA's host-callback thread.
        with self.lock:
            self.calls += 1
            accuracy = float(val_accuracy)
            if not accuracy <= self.best:  # also replaces the initial NaN
                self.best = accuracy
            if self.bar is not None and self.calls % self.lanes == 0:
                self.bar.set_postfix_str(f"best val {100 * self.best:.2f}%", refresh=False)
                self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run_sweep(
    study: str | Path | Study,
    *,
    epochs: int | None = None,
    seeds: int = 1,
    limit_train: int | None = None,
    validate_on: ValidateOn = "holdout",
    data_dir: str | Path | None = None,
    out: str | Path | None = None,
    quiet: bool = True,
) -> list[dict[str, Any]]:
    """Run a study and return one record per (configuration, seed).

    Args:
      study: a study name (``"lr"``), a path to a TOML spec, or a loaded ``Study``.
      epochs: override every configuration's epoch count.
      seeds: seeds per configuration, run as extra lanes of the same vmapped call.
      limit_train: train on only the first N images of the train split.
      validate_on: ``"holdout"`` (the last 10,000 training images, never trained on) or
        ``"test"`` (the reference notebook's protocol: the test set selects).
      data_dir: a directory with MNIST-format IDX files instead of the shipped MNIST.
      out: if given, write ``results.jsonl`` there (atomically, after each group).
      quiet: no progress output on stderr.

    Returns:
      Records with ``study``, ``config`` (every hyperparameter, resolved, plus the data
      settings), ``config_index``, ``seed``, ``history`` (per-epoch lists), ``val_accuracy``
      and ``test_accuracy`` (last epoch), ``diverged`` (a training loss, a parameter or
      an evaluation loss went NaN or infinite) and ``at_chance`` (finite, but the last
      validation accuracy is no better than always guessing the most common class);
      configuration order, then seed.
    """
    if not isinstance(study, Study):
        study = load_study(study)
    if seeds < 1:
        raise SettingsError(f"seeds must be >= 1, got {seeds}")
    if epochs is not None and epochs < 1:
        raise SettingsError(f"epochs must be >= 1, got {epochs}")
    configs = list(study.configs)
    if epochs is not None:
        configs = [Config(**{**config.__dict__, "epochs": epochs}) for config in configs]

    arrays = load_mnist(data_dir)
    try:
        splits = make_splits(arrays, validate_on=validate_on, limit_train=limit_train)
    except ValueError as err:
        raise SettingsError(str(err)) from None
    train_size = int(splits.train_images.shape[0])
    too_big = [c.batch_size for c in configs if c.batch_size > train_size]
    if too_big:
        raise SettingsError(
            f"batch_size {too_big[0]} is larger than the training set ({train_size} images)"
        )
    if out is not None and Path(out).exists() and not Path(out).is_dir():
        raise SettingsError(f"--out {out}: exists and is not a directory")
    data = jax.device_put(splits)  # once, as uint8
    data_settings = {
        "dataset": "mnist" if data_dir is None else str(data_dir),
        "validate_on": validate_on,
        "train_size": train_size,
    }

    groups = group_configs(configs)
    results_path = Path(out) / "results.jsonl" if out is not None else None
    by_index: dict[int, list[dict[str, Any]]] = {}
    start = time.perf_counter()
    for number, group in enumerate(groups, 1):
        widths = "-".join(str(w) for w in (784, *group.spec.hidden, 10))
        lanes = len(group.config_indices) * seeds
        label = f"group {number}/{len(groups)} [{widths}, {lanes} lanes]"
        progress = _Progress(label, group.spec.epochs, lanes, enabled=not quiet)
        if not quiet:
            print(f"{label}: compiling...", file=sys.stderr, flush=True)
        try:
            lane_records = run_group(
                group, configs, data, seeds, on_epoch=progress.epoch, on_compiled=progress.compiled
            )
        finally:
            progress.close()
        for record in lane_records:
            config = configs[record["config_index"]]
            full = {"study": study.name, "config": {**config.to_dict(), **data_settings}, **record}
            by_index.setdefault(record["config_index"], []).append(full)
        if results_path is not None:
            write_jsonl_atomic(results_path, _in_order(by_index))
    if not quiet:
        elapsed = time.perf_counter() - start
        print(
            f"{study.name}: {len(configs)} configs x {seeds} seeds in {elapsed:.1f}s",
            file=sys.stderr,
        )
    return _in_order(by_index)


def _in_order(by_index: dict[int, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    return [record for index in sorted(by_index) for record in by_index[index]]
