"""What a run needs to know of its machine: how much memory a call may use, and what to
record so that a run directory proves its figures (versions, commit, devices).

Nothing here imports JAX: devices are passed in, versions are read from the installed
packages' metadata.
"""

from __future__ import annotations

import contextlib
import os
import platform
import resource
import subprocess
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

#: The share of a device's memory one call's lanes may plan to use (XLA needs the rest).
MEMORY_SHARE = 0.8
#: The budget when a device reports no memory and the host's cannot be read.
FALLBACK_MEMORY_BUDGET = 8 * 2**30
#: Packages whose versions a run directory records.
RECORDED_PACKAGES = ("flaxmnist", "jax", "jaxlib", "flax", "optax", "numpy", "optuna")


def host_memory_bytes() -> int | None:
    """The memory this process may use on the host: the least of physical memory, the
    address-space limit (``ulimit -v``) and the cgroup's ``memory.max``; ``None`` if unknown.
    """
    limits = []
    with contextlib.suppress(ValueError, OSError, AttributeError):
        limits.append(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    soft, _ = resource.getrlimit(resource.RLIMIT_AS)
    if soft != resource.RLIM_INFINITY:
        limits.append(soft)
    for path in _cgroup_limit_files():
        with contextlib.suppress(OSError, ValueError):
            limits.append(int(path.read_text().strip()))  # "max" (no limit) is skipped
    return min(limits) if limits else None


def _cgroup_limit_files() -> list[Path]:
    """This process's cgroup memory limits: v2 (its own group and the root) and v1."""
    root = Path("/sys/fs/cgroup")
    files = [root / "memory.max", root / "memory" / "memory.limit_in_bytes"]
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::/") and len(line) > 4:
                files.append(root / line[4:] / "memory.max")
    return files


def memory_limit(device: Any) -> tuple[int | None, str]:
    """The memory ``device`` (a ``jax.Device``) has, and where the figure comes from: what
    the device reports as its limit (accelerators), else on a CPU the host's memory
    (``host_memory_bytes``); ``(None, ...)`` when neither is known."""
    try:
        stats = device.memory_stats() or {}
    except Exception:  # noqa: BLE001 - a backend without memory statistics
        stats = {}
    limit = stats.get("bytes_limit")
    if isinstance(limit, int) and limit > 0:  # -1 means unavailable
        return limit, "the device's memory"
    if device.platform == "cpu":
        host = host_memory_bytes()
        if host:
            return host, "the host's memory"
    return None, f"{device.platform} reports no memory limit"


def default_memory_budget(device: Any) -> tuple[int | None, str]:
    """Bytes one call's lanes may plan to use on ``device``: ``MEMORY_SHARE`` of
    ``memory_limit``, and words saying so; ``(None, why)`` when the memory is unknown."""
    limit, source = memory_limit(device)
    if limit is None:
        return None, source
    return int(MEMORY_SHARE * limit), f"{MEMORY_SHARE:.0%} of {source}"


def format_bytes(count: float) -> str:
    """``count`` bytes for people.

    Example::

        >>> format_bytes(300 * 2**20), format_bytes(57.1 * 2**30)
        ('300.0 MiB', '57.1 GiB')
    """
    for unit in ("B", "KiB", "MiB"):
        if abs(count) < 1024:
            return f"{count:.0f} {unit}" if unit != "MiB" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} GiB"


def _git(root: Path, *args: str) -> str:
    """The output of ``git -C root args``, stripped; raises when git fails or is missing."""
    git = subprocess.run(
        ["git", "-C", str(root), *args], capture_output=True, text=True, timeout=10, check=True
    )
    return git.stdout.strip()


def _git_commit() -> str | None:
    """The commit of the checkout flaxmnist runs from, ``+dirty`` if changed; else ``None``."""
    root = Path(__file__).resolve().parents[2]
    if not (root / ".git").exists():
        return None
    try:
        commit = _git(root, "rev-parse", "HEAD")
        changed = _git(root, "status", "--porcelain", "--untracked-files=no")
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{commit}+dirty" if changed else commit


def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux), else what ``platform`` knows."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def environment(devices: Sequence[Any]) -> dict[str, Any]:
    """What ran: package versions, the git commit (from a checkout), Python, the host, and
    the devices (platform, kind, count)."""
    return {
        "versions": {name: _version(name) for name in RECORDED_PACKAGES},
        "git_commit": _git_commit(),
        "python": platform.python_version(),
        "host": {
            "system": platform.system(),
            "machine": platform.machine(),
            "cpu": _cpu_model(),
            "cpu_count": os.cpu_count(),
        },
        "devices": {
            "platform": devices[0].platform,
            "kind": devices[0].device_kind,
            "count": len(devices),
        },
    }
