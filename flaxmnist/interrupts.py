"""Ctrl-C that always stops.

Python turns a SIGINT into a ``KeyboardInterrupt`` raised in whatever Python code the main
thread runs next. When that code is a garbage-collection callback, a ``__del__`` method or
a weak reference's callback, CPython prints ``Exception ignored in: ...`` and drops the
exception: the Ctrl-C is lost. JAX runs such a callback after every collection
(``_xla_gc_callback``, jax issue #18246), so a long sweep, which collects often, lost a
Ctrl-C now and then and trained on to the end. And a ``KeyboardInterrupt`` raised while a C
extension initialises (matplotlib's ``ft2font``, imported for the plots) leaves it half made:
the import fails with ``ImportError: initialization failed`` and the interpreter aborts as it
exits (SIGABRT).

``stopping_on_ctrl_c`` makes the Ctrl-C a state as well as an exception: its handler
records the interrupt and raises it. Where CPython drops the exception, it reaches
``sys.unraisablehook``, which stays silent about it, and the interrupt stays pending:
``check`` raises it at the next safe point (the sweep checks before and after a compile
and after every epoch), and leaving the context raises it too. A Ctrl-C during an import is
only recorded, for the same safe points; a second one is raised at once. So every Ctrl-C
is raised where it can propagate, at once or at the next safe point, and none is lost.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any, NoReturn

_pending = False


def _importing(frame: FrameType | None) -> bool:
    """Whether ``frame`` runs within an import (importlib's frames are below it)."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib."):
            return True
        frame = frame.f_back
    return False


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    global _pending
    again, _pending = _pending, True
    if again or not _importing(frame):  # a second Ctrl-C stops even a slow import
        raise KeyboardInterrupt


def _unraisable(previous: Callable[[Any], object]) -> Callable[[Any], object]:
    """``sys.unraisablehook`` that is silent about the Ctrl-C it could not raise (it is
    pending, raised at the next ``check``) and passes everything else to ``previous``."""

    def hook(unraisable: Any) -> None:
        if not (_pending and unraisable.exc_type is KeyboardInterrupt):
            previous(unraisable)

    return hook


def pending() -> bool:
    """Whether a Ctrl-C arrived that has not been raised yet."""
    return _pending


def check() -> None:
    """Raise ``KeyboardInterrupt`` if a Ctrl-C is pending: call it where stopping is safe.

    Example::

        >>> check()  # nothing pending: returns
    """
    if _pending:
        raise KeyboardInterrupt


@contextlib.contextmanager
def stopping_on_ctrl_c() -> Iterator[None]:
    """Within the context, a Ctrl-C (SIGINT) is never lost: raised as ``KeyboardInterrupt``
    at once, or at the next ``check`` or the context's end where it could not be. Only the
    main thread can handle signals: elsewhere the context does nothing. Contexts nest.

    Example::

        >>> with stopping_on_ctrl_c():
        ...     check()
    """
    global _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _on_sigint)
    outermost = previous is not _on_sigint
    if outermost:
        _pending = False
        previous_hook, sys.unraisablehook = sys.unraisablehook, _unraisable(sys.unraisablehook)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        raised = outermost and _pending
        if outermost:
            sys.unraisablehook = previous_hook
            _pending = False  # raised below, or by the exception leaving the context now
    if raised:
        raise KeyboardInterrupt


def exit_process(code: int) -> None:
    """End a command's process with ``code``, flushed, without tearing the interpreter down.

    After an interrupt XLA may still be compiling in its own thread pool (the compile the
    ``KeyboardInterrupt`` abandoned); the interpreter's teardown destroys JAX's client under
    it and the process dies of SIGSEGV. A command ends with this once everything it wrote
    is on disk (every write is atomic), so there is nothing left to tear down safely.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_command(main: Callable[[], int]) -> NoReturn:
    """A command's process: ``main()``'s exit code, and after an interrupt (130) the exit
    without teardown of ``exit_process``, since XLA may be compiling still."""
    code = main()
    if code == 130:
        exit_process(code)
    sys.exit(code)
