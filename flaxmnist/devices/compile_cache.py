"""JAX's persistent compilation cache, where flaxmnist keeps it: a rerun of the same shapes,
in any process, loads its programs instead of compiling them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import jax


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


_CACHE_HITS = [0]


def _count_cache_hit(event: str, **_) -> None:
    if event == "/jax/compilation_cache/cache_hits":
        _CACHE_HITS[0] += 1


jax.monitoring.register_event_listener(_count_cache_hit)


def cache_hits() -> int:
    """Programs this process has loaded from the persistent cache (JAX's monitoring event)."""
    return _CACHE_HITS[0]


def add_compile_cache_arguments(parser: argparse.ArgumentParser) -> None:
    """``--compile-cache DIR`` and ``--no-compile-cache`` (``set_compile_cache`` applies them)."""
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--compile-cache",
        type=Path,
        metavar="DIR",
        help="keep compiled programs in DIR, so a rerun compiles nothing (default: "
        "$FLAXMNIST_COMPILE_CACHE, else $XDG_CACHE_HOME/flaxmnist/jax or "
        "~/.cache/flaxmnist/jax)",
    )
    cache.add_argument(
        "--no-compile-cache", action="store_true", help="compile from scratch, store nothing"
    )


def set_compile_cache(args: argparse.Namespace) -> tuple[str, str] | None:
    """Apply the compile-cache policy; ``("error" | "warning", message)`` or ``None``."""
    if args.no_compile_cache:
        return None
    directory = (
        args.compile_cache
        or os.environ.get("FLAXMNIST_COMPILE_CACHE")
        or default_compilation_cache_dir()
    )
    try:
        enable_compilation_cache(directory)
    except OSError as err:
        if args.compile_cache is not None:  # asked for: an error
            return "error", f"--compile-cache {directory}: {err.strerror}"
        # The default place is not writable: run without the cache, say so.
        return "warning", f"no compilation cache ({directory}: {err.strerror})"
    return None
