"""What a sweep tells while it runs: a line per call, then a tqdm bar over its epochs.

``run_sweep`` calls the hooks of a ``Progress``; ``TqdmProgress`` writes them to stderr
(``tqdm.auto``, so a notebook gets its widget), and ``disable=True`` silences it. What the
training cost is added up in a ``RunStats``.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TextIO


def counted(count: int, unit: str) -> str:
    """``1 seed``, ``2 seeds``: ``count`` and ``unit``, plural but for one."""
    return f"{count} {unit}{'' if count == 1 else 's'}"


class Progress:
    """The hooks ``run_sweep`` calls, silent here: subclass to show or log them."""

    def study_started(self, label: str, text: str) -> None:
        """A study whose strategy decides as it trains starts; ``text`` says how it will
        search (a learned search: its rounds and the sampler's start-up)."""

    def call_started(self, label: str, epochs: int) -> None:
        """A call of ``epochs`` epochs starts (before its programs are compiled)."""

    def compiled(self, seconds: float, how: str) -> None:
        """Its programs are ready: ``how`` is ``"compiled"`` (now), ``"loaded"`` (from the
        persistent compilation cache) or ``"reused"`` (from an earlier call)."""

    def epoch(self, best_val_accuracy: float, seeds: int) -> None:
        """An epoch ended; ``best_val_accuracy``: the call's best configuration's validation
        accuracy at this epoch, the mean over its ``seeds`` (at the last epoch, what the
        table shows)."""

    def call_done(self) -> None:
        """The call ended (or failed)."""

    def skipped(self, label: str) -> None:
        """A call that an earlier run finished is not trained again."""

    def finished(self, summary: str) -> None:
        """The sweep ended; ``summary`` says what it trained and how long it took."""


class TqdmProgress(Progress):
    """Progress on ``file`` (stderr): a line per call and a tqdm bar over its epochs."""

    def __init__(self, disable: bool = False, file: TextIO | None = None):
        self.disable, self.file = disable, file or sys.stderr
        self.label, self.epochs, self.bar = "", 0, None

    def _say(self, text: str) -> None:
        if not self.disable:
            print(text, file=self.file, flush=True)

    def study_started(self, label: str, text: str) -> None:
        self._say(f"{label}: {text}")

    def call_started(self, label: str, epochs: int) -> None:
        self.label, self.epochs = label, epochs
        self._say(f"{label}: getting its programs ready...")

    def compiled(self, seconds: float, how: str) -> None:
        if self.disable:
            return
        from tqdm.auto import tqdm  # only for progress: the GPU benchmark runs without it

        said = {
            "compiled": f"compiled in {seconds:.1f}s",
            "loaded": f"loaded from the compilation cache in {seconds:.1f}s, nothing compiled",
            "reused": "reuses the programs of an earlier call, nothing compiled",
        }
        self._say(f"{self.label}: {said[how]}")
        self.bar = tqdm(
            total=self.epochs,
            desc=self.label,
            unit="epoch",
            file=self.file,
            leave=True,
        )

    def epoch(self, best_val_accuracy: float, seeds: int) -> None:
        if self.bar is not None:
            mean = f"mean of {seeds} seeds" if seeds > 1 else "1 seed"
            self.bar.set_postfix_str(
                f"best val {100 * best_val_accuracy:.2f}% ({mean})", refresh=False
            )
            self.bar.update(1)

    def call_done(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def skipped(self, label: str) -> None:
        self._say(f"{label}: done in an earlier run, skipped")

    def finished(self, summary: str) -> None:
        self._say(summary)


@dataclass
class RunStats:
    """What training cost, added up over every grid that was given it.

    Example::

        >>> import flaxmnist
        >>> stats = flaxmnist.RunStats()
        >>> _ = flaxmnist.run_sweep("lr", epochs=1, seeds=1, limit_train=400, stats=stats)
        >>> stats.calls, stats.programs_compiled + stats.programs_reused, stats.lane_epochs
        (1, 1, 24)
    """

    compile_seconds: float = 0.0
    train_seconds: float = 0.0
    #: Program pairs (``init``, ``run_epoch``) compiled (of which ``programs_loaded`` came
    #: from JAX's persistent compilation cache), and found compiled in this process.
    programs_compiled: int = 0
    programs_reused: int = 0
    programs_loaded: int = 0
    #: Grids initialised, and epochs trained summed over their lanes (padding excluded).
    calls: int = 0
    lane_epochs: int = 0
    #: The most device memory one epoch program used per device, by XLA's own count
    #: (``LaneGrid.program_bytes``; 0 where the backend does not say).
    program_bytes: int = 0
    #: Seconds a learned search's sampler took to propose and be told (asks, tells and the
    #: replay of a resumed search; process 0).
    sampler_seconds: float = 0.0
