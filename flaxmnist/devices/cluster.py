"""Many processes, one sweep: JAX's own distributed runtime, set up from the command line.

Every host runs the same command. ``start`` calls :func:`jax.distributed.initialize` (on a CPU
with gloo collectives), after which ``jax.devices()`` is every device of every process and
the lanes are sharded over all of them (``grid.lane_mesh``). Process 0 owns the run
directory: it alone writes (``is_main``), and what it reads there (the records of earlier
attempts, a search's checkpoint) reaches the others through the coordination service's
key-value store (``share``). A process that dies is found by the coordination service's
heartbeat, or sooner by the survivors: their next collective fails, ``lost_processes`` names
the dead ones within half of ``heartbeat_seconds``, and the command exits with one line
(``sweep``).

Nothing is shared but through JAX: no shared file system is assumed (the compilation cache
and the data are each host's own; the data's checksum is checked on every host).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import io
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax

#: Seconds without a heartbeat after which a process counts as dead (JAX's default: 100).
HEARTBEAT_SECONDS = 30
_KEY = "flaxmnist"
_heartbeat_seconds = HEARTBEAT_SECONDS


@dataclass(frozen=True)
class Launch:
    """How this process joins a cluster: all ``None`` for one process on its own, or a
    cluster ``jax.distributed`` detects by itself (SLURM, TPU pods, Kubernetes)."""

    coordinator: str | None = None
    num_processes: int | None = None
    process_id: int | None = None
    heartbeat_seconds: int = HEARTBEAT_SECONDS

    @property
    def explicit(self) -> bool:
        return self.coordinator is not None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--coordinator``, ``--num-processes``, ``--process-id``, ``--heartbeat-timeout``."""
    from flaxmnist.cli import natural, positive_int

    group = parser.add_argument_group(
        "many hosts",
        "run the same command on every host (docs/many-hosts.md); none of these "
        "is needed where jax.distributed detects the cluster itself (SLURM, TPU pods, "
        "Kubernetes)",
    )
    group.add_argument(
        "--coordinator", metavar="HOST:PORT", help="address of process 0, reachable by all"
    )
    group.add_argument(
        "--num-processes",
        type=positive_int,
        metavar="N",
        help="processes in all (usually one per host)",
    )
    group.add_argument("--process-id", type=natural, metavar="I", help="0 .. N-1")
    group.add_argument(
        "--heartbeat-timeout",
        type=positive_int,
        default=HEARTBEAT_SECONDS,
        metavar="SECONDS",
        help="a process silent this long counts as dead and the others stop with an error "
        f"(default: {HEARTBEAT_SECONDS})",
    )


def launch_of(args: argparse.Namespace) -> tuple[Launch, str | None]:
    """The ``Launch`` the arguments ask for, and an error message or ``None``."""
    given = [args.coordinator, args.num_processes, args.process_id]
    if any(v is not None for v in given) and any(v is None for v in given):
        return Launch(), "--coordinator, --num-processes and --process-id go together"
    if args.process_id is not None and args.process_id >= args.num_processes:
        return Launch(), (
            f"--process-id {args.process_id}: must be below --num-processes {args.num_processes}"
        )
    launch = Launch(args.coordinator, args.num_processes, args.process_id, args.heartbeat_timeout)
    return launch, None


def detected() -> str | None:
    """The cluster ``jax.distributed.initialize()`` would find by itself with more than one
    process (``"SlurmCluster"``...), or ``None``."""
    try:  # JAX's own detection; private, so any change in it means "none found"
        from jax._src.clusters import ClusterEnv

        for env in ClusterEnv._cluster_types:
            if not env.opt_in_only_method and env.is_env_present():
                return env.__name__ if env.get_process_count() > 1 else None
    except Exception:
        return None
    return None


def start(launch: Launch, prog: str = "flaxmnist") -> bool:
    """Join the cluster ``launch`` names (or one JAX detects); ``False`` for a process on
    its own. Call before JAX starts its backends.

    Raises:
      RuntimeError: the coordinator cannot be reached within the initialisation timeout.
    """
    if not launch.explicit and detected() is None:
        return False
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    global _heartbeat_seconds
    _heartbeat_seconds = launch.heartbeat_seconds
    jax.distributed.initialize(
        coordinator_address=launch.coordinator,
        num_processes=launch.num_processes,
        process_id=launch.process_id,
        heartbeat_timeout_seconds=launch.heartbeat_seconds,
    )
    _client().key_value_set(f"{_KEY}/host/{jax.process_index()}", socket.gethostname())
    global _hosts
    _hosts = [
        _client().blocking_key_value_get(f"{_KEY}/host/{i}", _timeout_ms())
        for i in range(jax.process_count())
    ]
    _watch_stderr(prog)
    _native_stdout_to_stderr()
    return True


def _watch_stderr(prog: str) -> None:
    """Route stderr through ``_watch_stderr.py``, which names the lost process when JAX's
    coordination service ends this one (no Python runs then to say it)."""
    script = Path(__file__).with_name("_watch_stderr.py")
    args = [prog, str(jax.process_index()), str(jax.process_count()), json.dumps(_hosts)]
    sys.stderr.flush()
    watcher = subprocess.Popen(
        [sys.executable, str(script), *args], stdin=subprocess.PIPE, start_new_session=True
    )
    os.dup2(watcher.stdin.fileno(), 2)
    watcher.stdin.close()  # fd 2 holds the pipe now: the watcher ends when this process does
    atexit.register(_let_watcher_finish, watcher)


def _let_watcher_finish(watcher: subprocess.Popen) -> None:
    """At a normal exit: close stderr so that the watcher writes out the rest and ends."""
    sys.stderr.flush()
    os.close(2)
    with contextlib.suppress(subprocess.TimeoutExpired):
        watcher.wait(timeout=5)


def _native_stdout_to_stderr() -> None:
    """Gloo and XLA write chatter to the C++ standard output: send that to stderr and keep
    the standard output for what Python prints (the table)."""
    sys.stdout.flush()
    python_stdout = os.dup(1)
    os.dup2(2, 1)
    sys.stdout = io.TextIOWrapper(
        os.fdopen(python_stdout, "wb"), encoding=sys.stdout.encoding, line_buffering=True
    )


def _client():
    from jax._src import distributed

    return distributed.global_state.client


def is_distributed() -> bool:
    """Whether this process is one of several (``jax.distributed`` is initialised)."""
    return jax.distributed.is_initialized() and jax.process_count() > 1


def is_main() -> bool:
    """Whether this process writes the run directory and prints: process 0, or the only one."""
    return not jax.distributed.is_initialized() or jax.process_index() == 0


_hosts: list[str] = []


def hosts() -> list[str]:
    """The host name of each process, as each gave it at ``start`` (one entry for a
    process on its own)."""
    return list(_hosts) or [socket.gethostname()]


def _timeout_ms() -> int:
    return 1000 * 2 * _heartbeat_seconds


_shared = 0


def share(read: Any) -> Any:
    """What process 0 got from ``read()`` (a callable returning JSON-ready data), in every
    process; ``read`` runs in process 0 only. Every process must call ``share`` the same
    number of times in the same order. An exception ``read`` raised in process 0 is raised
    in every process, as a ``SharedError`` with its message, unless it is a ``RunDirError``
    or ``SettingsError``, raised as such.
    """
    global _shared
    if not is_distributed():
        return read()
    _shared += 1
    key = f"{_KEY}/share/{_shared}"
    if is_main():
        try:
            value, message = {"ok": read()}, None
        except Exception as err:
            value, message = _error_value(err), err
        _client().key_value_set_bytes(key, json.dumps(value).encode())
        if message is not None:
            raise message
        return value["ok"]
    value = json.loads(_client().blocking_key_value_get_bytes(key, _timeout_ms()))
    if "ok" in value:
        return value["ok"]
    from flaxmnist import errors

    kind = getattr(errors, value["error"], None)
    if isinstance(kind, type) and issubclass(kind, errors.FlaxmnistError):
        raise kind(value["reason"], parameter=value["parameter"], value=value["value"])
    raise SharedError(f"process 0 failed: {value['error']}: {value['reason']}")


def _error_value(err: Exception) -> dict[str, Any]:
    parameter, shown = getattr(err, "parameter", None), getattr(err, "value", None)
    return {
        "error": type(err).__name__,
        "reason": getattr(err, "reason", str(err)),
        "parameter": parameter,
        "value": None if shown is None else str(shown),
    }


class SharedError(RuntimeError):
    """Process 0 failed at something every process waited for."""


_roll_calls = 0


def lost_processes() -> list[int]:
    """After a failure, the processes that are gone: every survivor checks in with the
    coordination service and waits up to half the heartbeat timeout for the others (so it
    is done before JAX's own heartbeat check would abort it). Empty if all checked in: the
    failure was not a lost process. ``[0]`` if the coordinator (process 0) cannot be asked.
    """
    global _roll_calls
    if not is_distributed():
        return []
    _roll_calls += 1
    folder = f"{_KEY}/alive/{_roll_calls}"
    everyone = range(jax.process_count())
    try:
        _client().key_value_set(f"{folder}/{jax.process_index()}", "here")
        deadline = time.monotonic() + _heartbeat_seconds / 2
        while True:
            here = {int(key.rsplit("/", 1)[1]) for key, _ in _client().key_value_dir_get(folder)}
            if len(here) == len(everyone) or time.monotonic() > deadline:
                return [i for i in everyone if i not in here]
            time.sleep(0.1)
    except Exception:  # the coordination service lives in process 0
        return [0]


def exit_now(code: int) -> None:
    """End this process at once with ``code``, stderr written out (no JAX shutdown, which
    would wait for the processes that are gone)."""
    sys.stdout.flush()
    sys.stderr.flush()
    with contextlib.suppress(OSError):
        os.close(2)  # the watcher sees the end of stderr
    os._exit(code)


def lost_message() -> str | None:
    """One line naming the processes the cluster lost, or ``None`` if it lost none (asking
    may take up to the heartbeat timeout: the time the coordination service needs to see a
    process gone)."""
    lost = lost_processes()
    if not lost:
        return None
    where = hosts()
    named = ", ".join(f"process {i} (on {where[i] if i < len(where) else '?'})" for i in lost)
    return (
        f"lost {named} of {jax.process_count()}: it stopped answering, so this process "
        "stopped too; what was written before is intact: run the same command on every "
        "host again to resume"
    )
