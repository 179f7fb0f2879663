"""Where a grid's lanes live: the mesh over every device (of every process), how a
``[seed, config]`` grid lies on it, and the way back to the host.

One process or many (``cluster``), the code is the same: a mesh over ``jax.devices()``,
arrays placed with :func:`jax.device_put` from host values every process holds alike, and
results brought back with ``to_host``, which gathers the shards other processes hold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P


def lane_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh named ``"lanes"`` over ``devices`` (default: every device of every
    process, ``jax.devices()``)."""
    devices = list(jax.devices() if devices is None else devices)
    return Mesh(np.array(devices), ("lanes",))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """``tree`` (the data) placed whole on every device of ``mesh``."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


def to_host(tree: Any) -> Any:
    """``tree``'s arrays as NumPy arrays, whole, in every process (:func:`jax.device_get` when
    this process holds every shard; else gathered from the others, a collective that every
    process must call)."""
    leaves = jax.tree.leaves(tree)
    if all(getattr(x, "is_fully_addressable", True) for x in leaves):
        return jax.device_get(tree)
    return multihost_utils.process_allgather(tree, tiled=True)


def broadcast_from_main(tree: Any, is_main: bool) -> Any:
    """Process 0's ``tree`` (host arrays) in every process; the others pass arrays of the
    same shapes, whose values are ignored. A collective: every process calls it."""
    if jax.process_count() == 1:
        return tree
    return jax.device_get(multihost_utils.broadcast_one_to_all(tree, is_source=is_main))


@dataclass(frozen=True)
class Layout:
    """How a ``[seed, config]`` grid lies on a mesh, padding included.

    The configuration axis is sharded over the mesh, padded to a multiple of the device
    count with copies of the last configuration. With fewer configurations than devices the
    seed axis is sharded instead (padded likewise), or, with fewer seeds too, the larger axis
    over fewer devices: on one process only; a mesh that spans processes keeps every device
    (each process must hold a part of every array) and pads instead. Padding is computed
    and discarded.
    """

    mesh: Mesh
    shard_seeds: bool
    config_rows: tuple[int, ...]  # padded position → configuration position
    seed_rows: tuple[int, ...]  # padded position → seed position

    @staticmethod
    def of(num_configs: int, num_seeds: int, mesh: Mesh) -> Layout:
        devices = mesh.devices.size
        shard_seeds = num_configs < devices and num_seeds > num_configs
        sharded = num_seeds if shard_seeds else num_configs
        one_process = len({d.process_index for d in mesh.devices.flat}) == 1
        if sharded < devices and one_process:
            mesh, devices = lane_mesh(mesh.devices.flat[:sharded]), sharded

        def padded(count: int, pad: bool) -> tuple[int, ...]:
            return tuple(range(count)) + (count - 1,) * (-count % devices if pad else 0)

        return Layout(
            mesh, shard_seeds, padded(num_configs, not shard_seeds), padded(num_seeds, shard_seeds)
        )

    @property
    def state(self) -> NamedSharding:
        """How a ``[seed, config, ...]`` array is split over the mesh."""
        return NamedSharding(self.mesh, P("lanes", None) if self.shard_seeds else P(None, "lanes"))

    @property
    def hparams(self) -> NamedSharding:
        return NamedSharding(self.mesh, P() if self.shard_seeds else P("lanes"))

    @property
    def keys(self) -> NamedSharding:
        return NamedSharding(self.mesh, P("lanes") if self.shard_seeds else P())

    @property
    def replicated(self) -> NamedSharding:
        return NamedSharding(self.mesh, P())
