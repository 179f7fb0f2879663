import errno
import fcntl
import json
import os
import subprocess
import sys
import textwrap

import pytest
from test_rundir import SETTINGS  # the same small run's settings

from flaxmnist.errors import RunDirError, SettingsError
from flaxmnist.run.attempt import run_directory

ENVIRONMENT = {"versions": {"jax": "x"}, "devices": {"platform": "cpu", "count": 1}}


def test_a_second_run_on_a_locked_directory_is_refused_at_once(tmp_path):
    out = tmp_path / "run"
    locked = pytest.raises(RunDirError, match=r"another flaxmnist run \(pid \d+ on .*\) is writ")
    with run_directory(out, SETTINGS, ENVIRONMENT), locked, run_directory(out, SETTINGS, {}):
        pass
    with run_directory(out, SETTINGS, ENVIRONMENT):  # released on leaving
        assert (out / ".lock").exists()
    assert not (out / ".lock").exists()  # and its file removed: the run directory is clean
    with pytest.raises(ValueError), run_directory(out, SETTINGS, ENVIRONMENT):
        raise ValueError("a run that fails leaves no lock file either")
    assert not (out / ".lock").exists()


def test_a_lock_taken_on_a_file_removed_meanwhile_is_taken_again_on_the_new_one(
    tmp_path, monkeypatch
):
    """The race the removal opens: a second run opens the lock file, the first removes it
    and ends, the second locks the removed file; it must notice, and lock the file there."""
    from flaxmnist.run import attempt as attempt_module

    out = tmp_path / "run"
    out.mkdir()
    real_lock_file, opened = attempt_module._lock_file, []

    def lock_then_lose_the_file(directory):
        fd = real_lock_file(directory)
        if not opened:  # the first time: the file is removed under us, as by an ending run
            os.unlink(directory / ".lock")
        opened.append(fd)
        return fd

    monkeypatch.setattr(attempt_module, "_lock_file", lock_then_lose_the_file)
    fd = attempt_module.lock_run_dir(out)
    assert len(opened) == 2 and fd == opened[1]
    assert os.path.samestat(os.fstat(fd), os.stat(out / ".lock"))
    attempt_module.unlock_run_dir(fd, out)
    assert not (out / ".lock").exists()


def test_the_lock_of_another_process_refuses_and_ends_with_it(tmp_path):
    out = tmp_path / "run"
    holder = textwrap.dedent(
        f"""
        import sys, time
        from flaxmnist.run.attempt import lock_run_dir
        lock_run_dir({str(out)!r})
        print("locked", flush=True)
        time.sleep(60)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "locked"
        locked = pytest.raises(RunDirError, match=rf"pid {process.pid} on ")
        with locked, run_directory(out, SETTINGS, ENVIRONMENT):
            pass
    finally:
        process.kill()  # as a kill -9 would: the lock ends with the process
        process.wait()
    assert (out / ".lock").exists()  # a killed run leaves its file, not its lock
    with run_directory(out, SETTINGS, ENVIRONMENT):
        pass
    assert not (out / ".lock").exists()


def test_attempts_record_how_each_run_ended(tmp_path):
    out = tmp_path / "run"
    with run_directory(out, SETTINGS, ENVIRONMENT) as attempt:
        assert attempt.earlier == []
        attempt.update({"calls": 1})
    with pytest.raises(KeyboardInterrupt), run_directory(out, SETTINGS, ENVIRONMENT):
        raise KeyboardInterrupt
    with pytest.raises(ValueError), run_directory(out, SETTINGS, ENVIRONMENT):
        raise ValueError("boom\nsecond line")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["settings"] == SETTINGS
    attempts = manifest["attempts"]
    assert [a["status"] for a in attempts] == ["finished", "interrupted", "failed: boom"]
    assert attempts[0]["calls"] == 1 and attempts[0]["versions"] == {"jax": "x"}
    for entry in attempts:
        assert entry["started"] <= entry["ended"] and entry["wall_seconds"] >= 0


def test_a_strangers_folder_is_refused_and_left_untouched(tmp_path):
    stranger = tmp_path / "notes"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    refused = pytest.raises(SettingsError, match="holds no flaxmnist manifest")
    with refused, run_directory(stranger, SETTINGS, ENVIRONMENT):
        pass
    assert [p.name for p in stranger.iterdir()] == ["notes.txt"]


def test_a_file_system_without_locks_is_one_clear_error(tmp_path, monkeypatch):
    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    refused = pytest.raises(RunDirError, match=r"cannot lock it \(No locks available\)")
    with refused, run_directory(tmp_path / "run", SETTINGS, ENVIRONMENT):
        pass
    # The lock file is closed. Counting all descriptors would be flaky: other tests' leftovers
    # are closed by the garbage collector at any moment; so look for this file's only.
    assert _open_paths_under(tmp_path) == []


def _open_paths_under(folder):
    """The files under `folder` that this process holds open, from /proc/self/fd."""
    paths = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the listing's own descriptor, closed by now
            continue
        if target.startswith(str(folder)):
            paths.append(target)
    return paths


def test_a_first_run_killed_while_writing_its_manifest_leaves_a_usable_directory(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").write_text("")
    (out / ".manifest.json.abc123.tmp").write_text('{"fingerp')  # a write cut short
    with run_directory(out, SETTINGS, ENVIRONMENT) as attempt:
        assert attempt.earlier == []
    assert attempt.manifest["settings"] == SETTINGS
    assert attempt.entry["status"] == "finished"
