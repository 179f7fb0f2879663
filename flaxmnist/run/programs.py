"""A grid's programs: ``make_train_fns`` vmapped over configurations (inner, the key
unbatched) and seeds (outer), jitted with the layout's shardings, and compiled once per
shape and layout in a process (JAX's persistent cache keeps them across processes).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import replace
from typing import Any

import jax
import jax.numpy as jnp

from flaxmnist.core.data import DataSplits
from flaxmnist.core.losses import make_probabilities
from flaxmnist.core.models import MLP
from flaxmnist.core.train import TrainSpec, TrainState, make_train_fns
from flaxmnist.devices.placement import Layout


def _vmap_grid(fn, config_axes: tuple, seed_axes: tuple):
    """vmap ``fn`` over configurations (inner) and seeds (outer): outputs are ``[seed, config]``."""
    return jax.vmap(jax.vmap(fn, in_axes=config_axes), in_axes=seed_axes)


#: Compiled programs a process keeps, the most recently used last. On a CPU each holds its
#: machine code in some 500 memory mappings (LLVM's JIT), and Linux allows a process 65,530
#: (``vm.max_map_count``): a search that had compiled about 120 programs died with "LLVM
#: compilation error: Cannot allocate memory". At ``MAX_COMPILED``, the least recently used
#: half is dropped with JAX's own caches (``forget_programs``); JAX's persistent cache loads
#: a dropped program again if a later grid needs it.
MAX_COMPILED = 16
_COMPILED: OrderedDict[Any, tuple[Any, Any]] = OrderedDict()


def forget_programs(keep: int = 0) -> None:
    """Drop all but the ``keep`` most recently used compiled programs, and JAX's in-memory
    caches (the probabilities and ``gather`` programs compiled on the way): their machine
    code is unmapped once nothing holds them."""
    while len(_COMPILED) > keep:
        _COMPILED.popitem(last=False)
    probabilities_program.cache_clear()
    jax.clear_caches()


def compile_programs(spec: TrainSpec, layout: Layout, hparams, keys, data) -> tuple[Any, Any, bool]:
    """``(init, run_epoch)`` compiled for these shapes and this layout, and whether they were
    reused from an earlier grid of this process (``MAX_COMPILED`` are kept)."""
    spec = replace(spec, epochs=1)  # the host loops over epochs: not part of the programs
    signature = tuple((x.shape, str(x.dtype)) for x in jax.tree.leaves((hparams, keys, data)))
    cache_key = (spec, layout.mesh, layout.shard_seeds, signature)
    if cache_key in _COMPILED:
        _COMPILED.move_to_end(cache_key)
        return (*_COMPILED[cache_key], True)
    if len(_COMPILED) >= MAX_COMPILED:  # half at once: JAX's caches are emptied less often
        forget_programs(keep=MAX_COMPILED // 2)
    init, run_epoch = make_train_fns(spec)
    grid_init = jax.jit(
        _vmap_grid(init, (0, None, None), (None, 0, None)), out_shardings=layout.state
    )
    grid_epoch = jax.jit(
        _vmap_grid(run_epoch, (0, 0, None, None, None), (0, None, 0, None, None)),
        out_shardings=(layout.state, layout.state),
        donate_argnums=0,  # the old state's buffers hold the new one
    )
    state_shape = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=layout.state),
        jax.eval_shape(grid_init, hparams, keys, data),
    )
    epoch_index = jax.ShapeDtypeStruct((), jnp.int32, sharding=layout.replicated)
    _COMPILED[cache_key] = (
        grid_init.lower(hparams, keys, data).compile(),
        grid_epoch.lower(state_shape, hparams, keys, data, epoch_index).compile(),
    )
    return (*_COMPILED[cache_key], False)


@functools.cache
def probabilities_program(spec: TrainSpec):
    """Every lane's softmax on the validation and test splits, of its kept parameters."""
    model = MLP(spec.hidden, num_classes=spec.num_classes, compute_dtype=spec.compute_dtype)
    probabilities = make_probabilities(model, spec.eval_batch_size)

    def lane(state: TrainState, data: DataSplits):
        val = probabilities(state.kept, data.val_images)
        return val, val if spec.val_is_test else probabilities(state.kept, data.test_images)

    return jax.jit(_vmap_grid(lane, (0, None), (0, None)))


@jax.jit
def gather(state: TrainState, rows: jax.Array, columns: jax.Array) -> TrainState:
    """The lanes ``[rows][:, columns]`` of a grid's state (rows: seeds, columns: configs)."""
    return jax.tree.map(lambda x: x[rows][:, columns], state)
