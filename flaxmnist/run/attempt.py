"""One attempt at a run directory: the lock that keeps a second run out, and the manifest's
record of what ran, when, on what, and how it ended.

``run_directory`` is the context the runner trains in: it locks the directory (``flock``:
released by the operating system however the process ends), opens it for the run's
settings (``rundir.open_run_dir``), and appends an ``Attempt`` to the manifest.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import socket
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from flaxmnist.errors import RunDirError, first_line
from flaxmnist.run.rundir import (
    LOCK,
    MANIFEST,
    check_usable,
    open_run_dir,
    read_manifest,
    write_json_atomic,
)


def lock_run_dir(out: str | Path) -> int:
    """Take ``out``'s lock (creating ``out``); a file descriptor to pass to ``unlock_run_dir``.

    The lock is the operating system's (``flock``) on the file ``LOCK``: it ends with the
    process, however that ends, so a killed run never leaves a stale lock behind (its file
    stays until the next run takes the lock and ends; one that ends removes it).

    Raises:
      RunDirError: another process holds it (its pid, host and start are named).
    """
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        reason = f"cannot create it ({err.strerror or err})"
        raise RunDirError(reason, parameter="out", value=out) from err
    while True:
        fd = _lock_file(out)
        # A run that ended may have removed the file between our open and our lock: a lock
        # on a removed file guards nothing, so take the one on the file that is there now.
        if _still_there(fd, out / LOCK):
            break
        os.close(fd)
    with contextlib.suppress(OSError):  # who holds it: for the message of a second run only
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {started}".encode(), 0)
    return fd


def _lock_file(out: Path) -> int:
    """Open (creating it) and lock ``out/LOCK``; its file descriptor."""
    try:
        fd = os.open(out / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        reason = f"cannot create its lock file ({err.strerror or err})"
        raise RunDirError(reason, parameter="out", value=out) from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise RunDirError(
            f"another flaxmnist run ({holder}) is writing to it; wait for it to end, or use "
            "another directory",
            parameter="out",
            value=out,
        ) from None
    except OSError as err:  # a file system without locks (some NFS or FUSE mounts)
        os.close(fd)
        reason = f"cannot lock it ({err.strerror or err}); use a directory on a local disk"
        raise RunDirError(reason, parameter="out", value=out) from err
    return fd


def _still_there(fd: int, path: Path) -> bool:
    """Whether ``fd`` is the file at ``path`` (not one removed since it was opened)."""
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except FileNotFoundError:
        return False


def unlock_run_dir(fd: int, out: str | Path) -> None:
    """Remove ``out``'s lock file and release the lock ``lock_run_dir`` took (``fd``).

    Removed while still held: a run that opened the file meanwhile finds, once it holds the
    lock, that the file is gone, and takes the lock again on a new one."""
    with contextlib.suppress(OSError):
        os.unlink(Path(out) / LOCK)
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)


class Attempt:
    """One run of a sweep into a run directory, kept in its manifest's ``attempts`` list.

    Each entry says on what it ran (``machine.environment``), when it started, last wrote
    (``updated``) and ended, how it ended (``status``: running, finished, interrupted or
    ``failed: ...``) and what it cost (``RunStats``' fields and the wall seconds), so that
    the figures a run directory holds come with their proof. A run killed outright stays
    ``running``, with its last ``updated`` time.
    """

    def __init__(self, out: str | Path, environment: dict[str, Any], earlier: list):
        self.out, self.earlier = Path(out), earlier
        self.manifest = read_manifest(self.out / MANIFEST)
        self.started = time.monotonic()
        self.entry = {"status": "running", "started": now(), "updated": None, "ended": None}
        self.entry.update(environment)
        self.manifest.setdefault("attempts", []).append(self.entry)
        self.update({})

    def update(self, stats: dict[str, Any], status: str = "running") -> None:
        """Record ``stats`` (e.g. ``dataclasses.asdict(RunStats)``) and ``status`` now."""
        rounded = {k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()}
        self.entry.update(rounded, status=status, updated=now())
        self.entry["wall_seconds"] = round(time.monotonic() - self.started, 3)
        if status != "running":
            self.entry["ended"] = self.entry["updated"]
        write_json_atomic(self.out / MANIFEST, self.manifest)


class Follower:
    """What a process other than process 0 knows of the attempt (``cluster``): the records
    of earlier attempts, as process 0 read them; it writes nothing."""

    def __init__(self, out: str | Path, earlier: list):
        self.out, self.earlier = Path(out), earlier


def now(timespec: str = "seconds") -> str:
    """The local time with its zone, ISO 8601: the run directory's times."""
    return datetime.now().astimezone().isoformat(timespec=timespec)


@contextlib.contextmanager
def run_directory(
    out: str | Path,
    settings: dict[str, Any],
    environment: dict[str, Any],
    share: Callable[[Callable[[], list]], list] = lambda read: read(),
    specs: dict[str, Any] | None = None,
) -> Iterator[Attempt]:
    """Lock ``out``, open it for ``settings`` and ``specs`` (``open_run_dir``) and record an
    ``Attempt``; its ``earlier`` holds the records of earlier attempts. On leaving, the
    attempt's status says how it ended and the lock is released. ``share`` is told the
    opening (the earlier records, or the error): ``cluster.share`` passes it on to the
    other processes.

    Raises:
      SettingsError, RunDirError: as ``open_run_dir`` and ``lock_run_dir``.
    """
    out, opened = Path(out), {}

    def open_it() -> list:
        check_usable(out)  # before the lock file is made: a stranger's folder stays untouched
        opened["fd"] = lock_run_dir(out)
        try:
            opened["attempt"] = Attempt(out, environment, open_run_dir(out, settings, specs))
        except BaseException:
            unlock_run_dir(opened["fd"], out)
            raise
        return opened["attempt"].earlier

    share(open_it)
    fd, attempt = opened["fd"], opened["attempt"]
    try:
        try:
            yield attempt
        except BaseException as err:
            status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            reason = first_line(err, 300)
            with contextlib.suppress(RunDirError):  # a full disk must not hide the cause
                attempt.update({}, status if status == "interrupted" else f"failed: {reason}")
            raise
        attempt.update({}, "finished")
    finally:
        unlock_run_dir(fd, out)
