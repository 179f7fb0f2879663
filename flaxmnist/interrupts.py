"""Ctrl-C that always stops.

Python turns a SIGINT into a ``KeyboardInterrupt`` raised in whatever Python code the main
thread runs next. When that code is a garbage-collection callback or a ``__del__`` method,
CPython prints ``Exception ignored in: ...`` and drops the exception: the Ctrl-C is lost.
JAX runs such a callback after every collection (``_xla_gc_callback``, jax issue #18246),
so a long sweep, which collects often, loses a Ctrl-C now and then and trains on to the end.

``stopping_on_ctrl_c`` makes the Ctrl-C a state as well as an exception: its handler
records the interrupt, raises at once where the exception can propagate, and where it
cannot (inside a collection callback or a finaliser) leaves it pending. ``check`` raises a
pending interrupt; the sweep calls it at every safe point (before and after a compile,
after every epoch, after records are written), and leaving the context raises it too.
So an interrupt is raised once, either at once or at the next safe point, never dropped.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType

_pending = False


def _where_exceptions_are_dropped(frame: FrameType | None) -> bool:
    """Whether ``frame`` runs inside a gc callback or a ``__del__``, where CPython prints
    and drops an exception instead of propagating it."""
    callbacks = {getattr(callback, "__code__", None) for callback in gc.callbacks}
    while frame is not None:
        if frame.f_code in callbacks or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    global _pending
    _pending = True
    if not _where_exceptions_are_dropped(frame):
        raise KeyboardInterrupt


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
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        raised = outermost and _pending
        if outermost:
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
