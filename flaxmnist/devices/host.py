"""The JAX process's devices: how many a CPU-only machine is split into.

Set before JAX initialises (the command lines call it first); see BENCHMARKS.md.
"""

from __future__ import annotations

import os

import jax

#: JAX devices a CPU-only machine is split into (``--cpu-devices``); see BENCHMARKS.md.
DEFAULT_CPU_DEVICES = 2


def set_cpu_devices(requested: int | None) -> str | None:
    """Split the CPU into JAX devices, before JAX initialises; an error message or ``None``.

    Without ``--cpu-devices``, a device count the user forced through ``XLA_FLAGS`` is kept.
    When JAX already runs (``main`` called from a Python session that used JAX), its
    devices stay as they are; that is an error only if ``--cpu-devices`` asked for others.
    """
    if requested is None and "xla_force_host_platform_device_count" in os.environ.get(
        "XLA_FLAGS", ""
    ):
        return None
    count = requested or DEFAULT_CPU_DEVICES
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:
        have = len(jax.devices("cpu"))
        if requested is not None and have != requested:
            return (
                f"--cpu-devices {requested}: JAX is already initialised with {have} CPU "
                "device(s) in this process; run the command in a new process"
            )
    return None
