"""The errors flaxmnist raises, for bad input and for a run that cannot go on (a run
directory in use, torn or unwritable, memory run out): one line each, naming what is at
fault and what to do. And the warnings it gives when it goes on (``FlaxmnistWarning``).

Library functions name their *parameters* (``out='runs/x': ...``); the command line words
the same error with its *flags* (``--out runs/x: ...``) through ``flag_message``. Every
error is a ``ValueError`` (bad input, in the widest sense): catch ``FlaxmnistError``, or a
subclass, rather than ``ValueError`` to tell them from other errors.
"""

from __future__ import annotations

import contextlib
import sys
import warnings
from collections.abc import Iterator
from pathlib import PurePath
from typing import Any


class FlaxmnistError(ValueError):
    """Base class: a reason, and optionally the parameter and value it is about.

    Example::

        >>> str(SettingsError("must be >= 1", parameter="seeds", value=0))
        'seeds=0: must be >= 1'
        >>> SettingsError("must be >= 1", parameter="seeds", value=0).flag_message()
        '--seeds 0: must be >= 1'
    """

    def __init__(self, reason: str, *, parameter: str | None = None, value: Any = None):
        self.reason, self.parameter, self.value = reason, parameter, value
        if parameter is None:
            subject = None
        else:
            shown = str(value) if isinstance(value, PurePath) else value
            subject = f"{parameter}={shown!r}"
        super().__init__(_join(subject, reason))

    def flag_message(self) -> str:
        """The message with the parameter worded as the command line's flag."""
        if self.parameter is None:
            return str(self)
        return _join(f"--{self.parameter.replace('_', '-')} {self.value}", self.reason)


def _join(subject: str | None, reason: str) -> str:
    return reason if subject is None else f"{subject}: {reason}"


class DataError(FlaxmnistError):
    """A data file is missing, truncated, corrupt or inconsistent with its partner, or a
    dataset cannot be loaded; the message names the file or the dataset.

    Example::

        >>> import flaxmnist
        >>> flaxmnist.load_mnist("/nonexistent")
        Traceback (most recent call last):
        flaxmnist.errors.DataError: /nonexistent: not a directory
    """


class SpecError(FlaxmnistError):
    """A sweep spec is missing, unreadable or invalid; the message names file, key and value.

    Example::

        >>> import flaxmnist
        >>> flaxmnist.load_study("nosuchstudy")  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        flaxmnist.errors.SpecError: unknown study 'nosuchstudy' (known: all, best-mlp, ...
    """


class SettingsError(FlaxmnistError):
    """Settings that cannot run: bad seeds, epochs, split sizes, batch size, dtype, or a run
    directory that holds another experiment.

    Example::

        >>> import flaxmnist
        >>> flaxmnist.run_sweep("lr", seeds=0)
        Traceback (most recent call last):
        flaxmnist.errors.SettingsError: seeds=0: must be >= 1
    """


class RunDirError(FlaxmnistError):
    """The run directory cannot be used as it is: another run holds it, a file in it is torn
    or not flaxmnist's, or it cannot be written (disk full, read-only). What was written
    before is intact; the message says what to do.

    Example::

        >>> str(RunDirError("another flaxmnist run is writing to it", parameter="out",
        ...                 value="runs/lr"))
        "out='runs/lr': another flaxmnist run is writing to it"
    """


class OutOfMemoryError(FlaxmnistError):
    """A lane does not fit the device's memory: refused before training when the estimate
    says so, or after a call ran out of memory with every smaller size down to one lane.

    Example::

        >>> import flaxmnist
        >>> flaxmnist.run_sweep("lr", memory_budget=1000, quiet=True)  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        flaxmnist.errors.OutOfMemoryError: lr (...): one lane of 784-300-10 needs about ...
    """


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of ``err``'s message, at most ``limit`` characters, or its type's name
    when it has no message (``KeyboardInterrupt()``, a bare ``TimeoutError()``).

    Example::

        >>> first_line(OSError("disk full\\nmore detail"))
        'disk full'
        >>> first_line(TimeoutError())
        'TimeoutError'
    """
    lines = str(err).splitlines()
    return lines[0][:limit] if lines and lines[0] else type(err).__name__


class FlaxmnistWarning(UserWarning):
    """A run went on after something worth knowing: a record cut short left out (its lane is
    trained again), a call retried with fewer lanes after running out of memory."""


@contextlib.contextmanager
def one_line_warnings(prog: str) -> Iterator[None]:
    """Within it, warnings are one line on stderr, ``PROG: warning: ...``: flaxmnist's as
    they are, others with their category and origin. The usual display comes back after."""

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = (str(message).splitlines() or [""])[0]
        if not issubclass(category, FlaxmnistWarning):
            text = f"{category.__name__}: {text} ({filename}:{lineno})"
        print(f"{prog}: warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield
