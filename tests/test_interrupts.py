"""Ctrl-C always stops: a SIGINT is never lost (not even inside JAX's garbage-collection
callback, jax #18246), the command exits 130 with the resume line and whole records, and
the same command then completes to the records of a run never interrupted."""

import gc
import json
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from flaxmnist import interrupts


def _sigint_inside_a_gc_callback() -> None:
    """Deliver a SIGINT while a garbage-collection callback runs, as when it arrives during
    JAX's ``_xla_gc_callback``: Python runs the handler inside the callback."""

    def callback(phase, info):
        if phase == "start":
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):  # bytecode: the handler runs here
                pass

    gc.callbacks.append(callback)
    try:
        gc.collect()
    finally:
        gc.callbacks.remove(callback)


def test_pythons_own_handler_loses_a_sigint_inside_a_gc_callback(monkeypatch):
    """The root cause, shown: CPython hands the KeyboardInterrupt to ``sys.unraisablehook``
    (which prints "Exception ignored in") and goes on."""
    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", dropped.append)
    _sigint_inside_a_gc_callback()  # no exception reaches here
    assert [d.exc_type for d in dropped] == [KeyboardInterrupt]


def test_a_sigint_inside_a_gc_callback_is_raised_at_the_next_check(monkeypatch):
    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", dropped.append)
    with pytest.raises(KeyboardInterrupt), interrupts.stopping_on_ctrl_c():
        _sigint_inside_a_gc_callback()
        assert interrupts.pending()
        interrupts.check()
    assert dropped == []
    assert not interrupts.pending()


def test_a_sigint_inside_a_finaliser_is_raised_when_the_context_ends():
    class Finalised:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)
            for _ in range(1000):
                pass

    with pytest.raises(KeyboardInterrupt), interrupts.stopping_on_ctrl_c():
        Finalised()  # dropped at once: __del__ runs here
        assert interrupts.pending()


def test_a_sigint_inside_a_weakref_callback_is_neither_printed_nor_lost(monkeypatch):
    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", dropped.append)

    class Referent:
        pass

    def callback(reference):
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(1000):
            pass

    with pytest.raises(KeyboardInterrupt), interrupts.stopping_on_ctrl_c():
        referent = Referent()
        reference = weakref.ref(referent, callback)
        del referent  # the callback runs here, and CPython drops what it raises
        assert interrupts.pending() and reference() is None
        interrupts.check()
    assert dropped == []  # not printed: it was raised at the check instead
    assert sys.unraisablehook == dropped.append  # the context put the hook back


def test_other_unraisable_exceptions_are_still_reported(monkeypatch):
    dropped = []
    monkeypatch.setattr(sys, "unraisablehook", dropped.append)

    class Broken:
        def __del__(self):
            raise ValueError("a bug in a finaliser")

    with interrupts.stopping_on_ctrl_c():
        Broken()
    assert [d.exc_type for d in dropped] == [ValueError]


def test_a_sigint_elsewhere_is_raised_at_once():
    reached = False
    with pytest.raises(KeyboardInterrupt), interrupts.stopping_on_ctrl_c():
        os.kill(os.getpid(), signal.SIGINT)
        for _ in range(10**6):
            pass
        reached = True
    assert not reached


def test_a_sigint_during_an_import_lets_the_import_finish_and_is_raised_at_the_next_check(
    tmp_path, monkeypatch
):
    """A KeyboardInterrupt inside a C extension's initialisation (matplotlib's ft2font) made
    ``ImportError: initialization failed`` and an abort at exit: during an import the
    interrupt is only recorded."""
    (tmp_path / "slow_to_import.py").write_text(
        "import os, signal\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "for _ in range(10**5):  # bytecode: the handler runs here, within the import\n"
        "    pass\n"
        "finished = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "slow_to_import", raising=False)
    imported = False
    with pytest.raises(KeyboardInterrupt), interrupts.stopping_on_ctrl_c():
        import slow_to_import

        imported = slow_to_import.finished and interrupts.pending()
        interrupts.check()
    assert imported
    sys.modules.pop("slow_to_import")


def test_a_second_sigint_during_an_import_is_raised_at_once(tmp_path, monkeypatch):
    (tmp_path / "slower_to_import.py").write_text(
        "import os, signal\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "for _ in range(10**5):\n"
        "    pass\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "for _ in range(10**5):  # the second one is raised here\n"
        "    pass\n"
        "finished = True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(KeyboardInterrupt), interrupts.stopping_on_ctrl_c():
        import slower_to_import  # noqa: F401
    assert "slower_to_import" not in sys.modules


#: A SIGINT inside matplotlib's ft2font initialisation (a C extension: pybind11 makes its
#: enums with Python's enum module, the first Python it calls), within the context.
SIGINT_INSIDE_FT2FONT = """
import os, signal, sys
from flaxmnist import interrupts
import numpy, enum

importing, sent = [False], [False]

def audit(event, args):
    if event == "import" and args[0] == "matplotlib.ft2font":
        importing[0] = True

def profile(frame, event, arg):
    in_enum = event == "call" and frame.f_code.co_filename.endswith("enum.py")
    if importing[0] and not sent[0] and in_enum:
        sent[0] = True
        os.kill(os.getpid(), signal.SIGINT)

sys.addaudithook(audit)
sys.setprofile(profile)
try:
    with interrupts.stopping_on_ctrl_c():
        import matplotlib
        sys.setprofile(None)
        print("sent", sent[0], flush=True)
except KeyboardInterrupt:
    print("stopped", flush=True)
    interrupts.exit_process(130)
"""


def test_a_sigint_inside_a_c_extensions_initialisation_stops_cleanly():
    """Raised there, the KeyboardInterrupt made ``ImportError: initialization failed`` and
    the interpreter aborted at exit (SIGABRT), as a Ctrl-C during the report's plots did."""
    result = subprocess.run(
        [sys.executable, "-c", SIGINT_INSIDE_FT2FONT], capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["sent", "True", "stopped"], result.stderr
    assert result.returncode == 130, result.stderr
    assert result.stderr == ""


def test_the_context_restores_the_handler_and_forgets_what_it_raised():
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), interrupts.stopping_on_ctrl_c():
        with interrupts.stopping_on_ctrl_c():  # nested: the outer one's handler stays
            assert signal.getsignal(signal.SIGINT) is interrupts._on_sigint
        raise KeyboardInterrupt
    assert signal.getsignal(signal.SIGINT) is before
    interrupts.check()  # nothing left pending after the interrupt was raised


def test_outside_the_main_thread_the_context_changes_nothing():
    seen = []

    def worker():
        with interrupts.stopping_on_ctrl_c():
            seen.append(signal.getsignal(signal.SIGINT))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [signal.getsignal(signal.SIGINT)]


# The command, interrupted at many moments. Three calls (one program per width on a CPU),
# each compiling or loading its programs, training, and writing its records; then the table
# on stdout and the report.
SPEC = """description = "interrupted on purpose"
[base]
epochs = 3
batch_size = 100
learning_rate = 0.001
[grid]
hidden = [[16], [24], [32]]
"""
READY = "getting its programs ready"
TRAINING = ("compiled in", "loaded from the compilation cache")
#: (cache, trigger, count, delay in s): SIGINT ``delay`` after the ``count``-th sight of
#: the trigger, a line on stderr or stdout or a record in results.jsonl; with a compilation
#: cache that is empty ("cold": every program compiled and stored) or filled ("warm").
MOMENTS = [
    ("cold", READY, 1, 0.0),  # compiling
    ("cold", READY, 1, 0.3),
    ("cold", READY, 2, 0.05),
    ("cold", READY, 3, 0.15),
    ("cold", TRAINING, 1, 0.0),  # just compiled
    ("warm", READY, 1, 0.0),  # loading from the compilation cache
    ("warm", READY, 2, 0.02),
    ("warm", READY, 3, 0.0),
    ("warm", TRAINING, 1, 0.05),  # training
    ("warm", TRAINING, 2, 0.2),
    ("warm", TRAINING, 3, 0.4),
    ("cold", TRAINING, 3, 0.1),
    ("warm", "results.jsonl", 1, 0.0),  # writing records
    ("warm", "results.jsonl", 2, 0.0),
    ("warm", "results.jsonl", 2, 0.005),
    ("cold", "results.jsonl", 1, 0.01),
    ("warm", "best by", 1, 0.0),  # drawing the report
    ("warm", "best by", 1, 0.1),
    ("warm", "best by", 1, 0.2),
    ("cold", "best by", 1, 0.05),
]
#: The light suite's six: compiling and just compiled (cold), loading, training, writing
#: records, and drawing the report with a cold cache (matplotlib's C extensions importing).
SIX_MOMENTS = [MOMENTS[i] for i in (0, 4, 5, 9, 15, 19)]


def _command(spec: Path, out: Path, cache: Path) -> list[str]:
    return [
        sys.executable, "-m", "flaxmnist.sweep", str(spec), "--seeds", "1",
        "--limit-train", "600", "--cpu-devices", "1", "--out", str(out),
        "--compile-cache", str(cache),
    ]  # fmt: skip


def _seen(trigger, stdout: list[str], stderr: list[str], out: Path) -> int:
    if trigger == "results.jsonl":
        path = out / "results.jsonl"
        return len(path.read_text().splitlines()) if path.exists() else 0
    lines = stdout if trigger == "best by" else stderr
    triggers = (trigger,) if isinstance(trigger, str) else trigger
    return sum(any(t in line for t in triggers) for line in lines)


def _interrupt(command: list[str], moment, out: Path) -> subprocess.CompletedProcess:
    """Run ``command``, send SIGINT at ``moment``, and return what it did."""
    _, trigger, count, delay = moment
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout, stderr = [], []
    readers = [
        threading.Thread(target=lambda s=s, into=into: into.extend(s), daemon=True)
        for s, into in ((process.stdout, stdout), (process.stderr, stderr))
    ]
    for reader in readers:
        reader.start()
    deadline = time.monotonic() + 120
    while _seen(trigger, stdout, stderr, out) < count and process.poll() is None:
        assert time.monotonic() < deadline, (moment, stderr)
        time.sleep(0.002)
    time.sleep(delay)
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    for reader in readers:
        reader.join(timeout=10)
    return subprocess.CompletedProcess(
        command, process.returncode, "".join(stdout), "".join(stderr)
    )


def _try(moment, index: int, tmp: Path, spec: Path, warm: Path, reference: bytes) -> str | None:
    """Interrupt once and resume; ``None`` if all went as it must, else what went wrong."""
    out = tmp / f"run-{index}"
    cache = warm if moment[0] == "warm" else tmp / f"cold-cache-{index}"
    stopped = _interrupt(_command(spec, out, cache), moment, out)
    problems = []
    if stopped.returncode != 130:
        problems.append(f"exit {stopped.returncode}")
    if f"interrupted; finished calls are in {out}" not in stopped.stderr:
        problems.append("no resume line")
    if "Traceback" in stopped.stderr or "Exception ignored" in stopped.stderr:
        problems.append("a traceback")
    results = out / "results.jsonl"
    if results.exists():
        for line in results.read_text().splitlines():
            json.loads(line)  # whole records only
    rerun = subprocess.run(_command(spec, out, cache), capture_output=True, text=True)
    if rerun.returncode != 0:
        problems.append(f"the rerun exited {rerun.returncode}: {rerun.stderr[-500:]}")
    elif results.read_bytes() != reference:
        problems.append("the rerun's records differ from an uninterrupted run's")
    if problems:
        return f"{moment}: {', '.join(problems)}\n{stopped.stderr[-1500:]}"
    return None


@pytest.mark.parametrize(
    "moments",
    [
        pytest.param(SIX_MOMENTS, id="six"),
        pytest.param(MOMENTS, id="twenty", marks=pytest.mark.heavy),
    ],
)
def test_ctrl_c_at_many_moments_stops_and_the_same_command_resumes(moments, tmp_path):
    spec = tmp_path / "interrupted.toml"
    spec.write_text(SPEC)
    warm = tmp_path / "warm-cache"
    whole = subprocess.run(
        _command(spec, tmp_path / "whole", warm), capture_output=True, text=True, check=True
    )
    assert "best by" in whole.stdout
    reference = (tmp_path / "whole" / "results.jsonl").read_bytes()
    assert len(reference.splitlines()) == 3
    with ThreadPoolExecutor(2) as pool:  # two at a time: the machine busy, as it often is
        failures = pool.map(
            lambda item: _try(item[1], item[0], tmp_path, spec, warm, reference),
            enumerate(moments),
        )
    failed = [f for f in failures if f is not None]
    assert not failed, "\n\n".join(failed)
