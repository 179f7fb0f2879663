"""One call's lanes on a mesh: place, compile (cached), init, step an epoch, reshape.

A ``LaneGrid`` trains configurations × seeds that share one ``TrainSpec``: ``make_train_fns``
vmapped over configurations (inner) and seeds (outer), jitted with the configuration axis
sharded over a mesh (too few configurations shard the seeds). Seed ``i`` is the key
``jax.random.key(i)`` in every configuration, so the lanes of a seed share each minibatch and
its augmentation: one gather and one wide matrix product per seed. The loop (``run.loop``,
``run.stepped``) steps the grid an epoch at a time and may reshape it between epochs, as a
strategy decides (``keep``, ``copy``, ``set_hyperparams``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

import jax
import numpy as np
from jax.sharding import Mesh

from flaxmnist import interrupts
from flaxmnist.core.data import DataSplits
from flaxmnist.core.train import (
    Hyperparams,
    TrainSpec,
    TrainState,
    stack_hyperparams,
)
from flaxmnist.devices.compile_cache import cache_hits
from flaxmnist.devices.placement import Layout, lane_mesh, to_host
from flaxmnist.run.programs import compile_programs, gather, probabilities_program
from flaxmnist.run.progress import RunStats
from flaxmnist.specs.keys import Key, features


class LaneGrid:
    """Configurations × seeds of one ``TrainSpec``, trained in lockstep on a mesh.

    Args:
      spec: the static settings every lane shares (``spec.epochs`` is not used: the loop
        calls ``step`` once per epoch).
      hparams: one ``Hyperparams`` per configuration.
      seeds: the seeds; lane ``(s, c)`` trains configuration ``c`` with the key
        ``jax.random.key(seeds[s])``.
      data: the ``DataSplits``, on the devices of ``mesh`` (``replicate``).
      mesh: a 1-D mesh named ``"lanes"`` (default: every local device).
      stats: where compile and training time, programs and lane-epochs are added up.
      config_indices: what the caller calls each configuration (default ``0 … n-1``), kept
        in step by ``keep``: ``config_indices[c]`` names position ``c``.

    ``state`` holds every lane's ``TrainState``, ``[seed, config, ...]``, *with* the layout's
    padding (copies past ``len(seeds)`` and ``num_configs``); ``step``'s metrics have none.
    """

    def __init__(
        self,
        spec: TrainSpec,
        hparams: Sequence[Hyperparams],
        seeds: Sequence[int],
        data: DataSplits,
        *,
        mesh: Mesh | None = None,
        stats: RunStats | None = None,
        config_indices: Sequence[int] | None = None,
    ):
        if not hparams or not seeds:
            raise ValueError("a grid needs at least one configuration and one seed")
        for h in hparams:  # a feature compiled out would be silently ignored
            _check_fits(spec, h)
        self.spec, self.seeds, self.data = spec, tuple(seeds), data
        self.mesh = lane_mesh() if mesh is None else mesh
        self.stats = RunStats() if stats is None else stats
        self.hparams = list(hparams)
        self.config_indices = list(
            range(len(hparams)) if config_indices is None else config_indices
        )
        if len(self.config_indices) != len(self.hparams):
            raise ValueError(f"{len(self.config_indices)} config_indices for {len(hparams)}")
        self.epoch = 0
        self.state: TrainState | None = None
        self._place()

    @property
    def num_configs(self) -> int:
        return len(self.hparams)

    def _place(self) -> None:
        """Put hyperparameters and keys on the mesh for the current configurations."""
        self._layout = Layout.of(len(self.hparams), len(self.seeds), self.mesh)
        self._put_hyperparams()
        seeds = np.asarray([self.seeds[i] for i in self._layout.seed_rows], np.int32)
        # Made on the mesh by a program: a cluster's processes cannot device_put keys.
        self._keys = jax.jit(jax.vmap(jax.random.key), out_shardings=self._layout.keys)(seeds)
        self._data = jax.device_put(self.data, self._layout.replicated)
        self._programs = None

    def compile(self) -> str:
        """Get this grid's programs ready: ``"compiled"`` now, ``"loaded"`` from JAX's
        persistent compilation cache, or ``"reused"`` from an earlier grid of this process."""
        interrupts.check()
        start, hits = time.perf_counter(), cache_hits()
        init, epoch, reused = compile_programs(
            self.spec, self._layout, self._hparams, self._keys, self._data
        )
        self._programs = (init, epoch)
        interrupts.check()
        self.stats.program_bytes = max(self.stats.program_bytes, self.program_bytes() or 0)
        self.stats.compile_seconds += time.perf_counter() - start
        self.stats.programs_reused += reused
        self.stats.programs_compiled += not reused
        if reused:
            return "reused"
        loaded = cache_hits() - hits >= 2  # both programs came from the cache
        self.stats.programs_loaded += loaded
        return "loaded" if loaded else "compiled"

    def program_bytes(self) -> int | None:
        """Device memory the epoch program uses on each device, by XLA's own count
        (arguments, outputs not written over them, temporaries; the data included), or
        ``None`` where the backend does not say. ``plan.lane_bytes`` estimates it ahead."""
        if self._programs is None:
            self.compile()
        try:
            memory = self._programs[1].memory_analysis()
            return (
                memory.argument_size_in_bytes
                + memory.output_size_in_bytes
                - memory.alias_size_in_bytes
                + memory.temp_size_in_bytes
            )
        except Exception:  # not every backend (or version) gives one
            return None

    def init(self) -> None:
        """Draw every lane's initial parameters (epoch 0), compiling first if needed."""
        if self._programs is None:
            self.compile()
        self.state = self._programs[0](self._hparams, self._keys, self._data)
        self.epoch = 0
        self.stats.calls += 1

    def step(self) -> dict[str, np.ndarray]:
        """Train every lane one epoch; its metrics on the host, ``[seed, config]`` each."""
        if self.state is None:
            raise RuntimeError("LaneGrid.step before init")
        if self._programs is None:
            self.compile()
        start = time.perf_counter()
        epoch_index = jax.device_put(np.int32(self.epoch), self._layout.replicated)
        self.state, metrics = self._programs[1](
            self.state, self._hparams, self._keys, self._data, epoch_index
        )
        metrics = to_host(metrics)  # waits for the epoch
        self.epoch += 1
        self.stats.train_seconds += time.perf_counter() - start
        self.stats.lane_epochs += len(self.seeds) * self.num_configs
        interrupts.check()  # a Ctrl-C a gc callback swallowed stops here, between epochs
        return {k: v[: len(self.seeds), : self.num_configs] for k, v in metrics.items()}

    def probabilities(self) -> tuple[np.ndarray, np.ndarray]:
        """Every lane's softmax probabilities on the validation and the test split, as
        trained so far (the kept parameters: the moving average where there is one),
        ``[seed, config, count, classes]`` each, on the host."""
        if self.state is None:
            raise RuntimeError("LaneGrid.probabilities before init")
        val, test = to_host(
            probabilities_program(replace(self.spec, epochs=1))(self.state, self._data)
        )
        lanes = (slice(len(self.seeds)), slice(self.num_configs))
        return val[lanes], test[lanes]

    def host_state(self) -> TrainState:
        """Every lane's state as NumPy arrays, padding included (in every process)."""
        return to_host(self.state)

    def load_state(self, state: TrainState, epoch: int) -> None:
        """Go on from ``state`` (host arrays shaped as ``self.state``, padding included, e.g.
        a saved ``grid.host_state()``) at ``epoch``."""
        self.state = jax.device_put(state, self._layout.state)
        self.epoch = epoch

    def keep(self, configs: Sequence[int]) -> None:
        """Go on with configurations ``configs`` only (positions, in order): their lanes'
        state is gathered into a smaller grid."""
        if not configs:
            raise ValueError("keep: at least one configuration must go on")
        self._check_positions("keep", configs, distinct=True)
        self.hparams = [self.hparams[c] for c in configs]
        self.config_indices = [self.config_indices[c] for c in configs]
        self._place()
        if self.state is None:
            return
        # Old padded rows start with the real ones in order, so position i is row i.
        rows = np.asarray(self._layout.seed_rows)
        columns = np.asarray([configs[i] for i in self._layout.config_rows])
        self.state = self._gathered(rows, columns)

    def copy(self, source: Sequence[int], target: Sequence[int]) -> None:
        """Copy the state (parameters and optimizer) of configurations ``source`` onto
        ``target``, seed by seed; hyperparameters stay (``set_hyperparams`` changes them).

        Keys belong to seeds, not to configurations: a copy and its source draw the same
        shuffles and dropout masks from then on, so they differ by their hyperparameters only.
        """
        if self.state is None:
            raise RuntimeError("LaneGrid.copy before init")
        if len(source) != len(target):
            raise ValueError(f"copy: {len(source)} sources for {len(target)} targets")
        self._check_positions("copy", source)
        self._check_positions("copy", target, distinct=True)
        source_of = dict(zip(target, source, strict=True))  # all read before any is written
        rows = np.arange(len(self._layout.seed_rows))
        columns = np.asarray([source_of.get(c, c) for c in self._layout.config_rows])
        self.state = self._gathered(rows, columns)

    def _gathered(self, rows: np.ndarray, columns: np.ndarray) -> TrainState:
        """The lanes ``[rows][:, columns]`` of the state, placed by the current layout: on
        the device where this process holds the whole grid, else through the host (every
        process gathers the grid, picks the lanes and places its own part). Both move data
        only. Where the grid spans processes, jax 0.12.1's CPU collectives hung in the
        device gather's next step (two processes, a halving rung), so it is not used there."""
        leaves = jax.tree.leaves(self.state)
        if all(leaf.is_fully_addressable for leaf in leaves):
            return jax.device_put(gather(self.state, rows, columns), self._layout.state)
        picked = jax.tree.map(lambda x: x[rows][:, columns], to_host(self.state))
        return jax.device_put(picked, self._layout.state)

    def set_hyperparams(self, configs: Sequence[int], hparams: Sequence[Hyperparams]) -> None:
        """Train configurations ``configs`` with ``hparams`` from the next epoch on.

        Raises:
          ValueError: ``hparams`` of another depth, or a non-zero rate of a regulariser that
            this grid's program was compiled without (``TrainSpec.use_dropout`` etc.).
        """
        if len(configs) != len(hparams):
            raise ValueError(f"set_hyperparams: {len(hparams)} for {len(configs)} positions")
        self._check_positions("set_hyperparams", configs, distinct=True)
        for h in hparams:
            _check_fits(self.spec, h)
        for c, h in zip(configs, hparams, strict=True):
            self.hparams[c] = h
        self._put_hyperparams()

    def _put_hyperparams(self) -> None:
        """Stack the configurations' hyperparameters, padding included, onto the mesh."""
        stacked = stack_hyperparams([self.hparams[i] for i in self._layout.config_rows])
        self._hparams = jax.device_put(stacked, self._layout.hparams)

    def _check_positions(self, operation: str, configs: Sequence[int], distinct=False) -> None:
        if any(not 0 <= c < self.num_configs for c in configs):
            raise ValueError(
                f"{operation}: positions must lie in [0, {self.num_configs}), got {list(configs)}"
            )
        if distinct and len(set(configs)) != len(configs):
            raise ValueError(f"{operation}: a position is given twice in {list(configs)}")


def _off(key: Key) -> float:
    """The lane value of ``key`` that needs no feature: its default (a choice's index)."""
    return key.choices.index(key.default) if key.kind == "choice" else key.default


def _check_fits(spec: TrainSpec, hparams: Hyperparams) -> None:
    """Refuse hyperparameters that ``spec``'s program would not apply as given."""
    depth = (np.shape(hparams.l2), np.shape(hparams.dropout))
    if depth != ((spec.num_layers,), (len(spec.hidden),)):
        raise ValueError(f"hyperparameters for another depth than {spec.hidden}")
    widths = np.asarray(hparams.widths)
    fits = np.all(widths <= spec.hidden) if spec.padded else np.array_equal(widths, spec.hidden)
    if not fits or np.any(widths < 1):
        raise ValueError(f"widths {widths.tolist()} in a program of {spec.hidden}")
    compiled_out = [
        key.name
        for flag, served in features().items()
        if not getattr(spec, flag)
        for key in served
        if key.turns_on and np.any(np.asarray(getattr(hparams, key.name)) != _off(key))
    ]
    if compiled_out:
        raise ValueError(
            f"this grid's program has no {', '.join(compiled_out)} (compiled out): plan it "
            "with split_regularisers=False to change them"
        )
