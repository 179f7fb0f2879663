"""Successive halving (Jamieson & Talwalkar 2016), synchronous, over the configurations a
study drew (quasi-randomly) or listed.

Rungs at ``min_epochs * eta**k`` epochs, and the last at ``epochs``; at each rung but the
last the best ``max(1, n // eta)`` of the ``n`` configurations still training go on (their
seeds' mean holdout accuracy, ``records.selection_key``); the others stop, and their
records hold the epochs they trained.
"""

from __future__ import annotations

from dataclasses import replace

from flaxmnist.run.steps import Standing, Step
from flaxmnist.search.base import Strategy, rank


def rung_epochs(min_epochs: int, eta: int, epochs: int) -> list[int]:
    """The epochs at which successive halving ranks: ``min_epochs * eta**k``, then ``epochs``.

    Example::

        >>> rung_epochs(1, 3, 9), rung_epochs(1, 3, 10), rung_epochs(2, 2, 2)
        ([1, 3, 9], [1, 3, 9, 10], [2])
    """
    rungs, epoch = [], min_epochs
    while epoch < epochs:
        rungs.append(epoch)
        epoch *= eta
    return [*rungs, epochs]


def next_stop(stops: list[int], epoch: int) -> int:
    """The first of ``stops`` after ``epoch`` (the last of them if none is)."""
    return next((stop for stop in stops if stop > epoch), stops[-1])


class Halving(Strategy):
    """Successive halving (see the module)."""

    name = "halving"
    tables = ("halving",)
    halves = True
    lockstep = True
    figure = "halving"

    def stop_after(self, epoch: int) -> int:
        return next_stop(self.rungs, epoch)

    @property
    def rungs(self) -> list[int]:
        return rung_epochs(self.search.min_epochs, self.search.eta, self.epochs)

    def first(self, standing: Standing) -> Step:
        step = super().first(standing)
        return replace(step, label=self._label(step.until)) if step.add else step

    def next(self, standing: Standing) -> Step:
        if standing.epoch >= self.epochs:
            return Step()
        step = halve(standing, self.search.eta, self.stop_after(standing.epoch))
        return replace(step, label=self._label(step.until))

    def _label(self, until: int) -> str:
        return f"rung {self.rungs.index(until) + 1} of {len(self.rungs)}"


def halve(standing: Standing, eta: int, until: int) -> Step:
    """Stop all but the best ``max(1, n // eta)`` of the ``n`` configurations going, and
    train those to ``until``."""
    going = standing.going
    keep = set(rank(standing, going)[: max(1, len(going) // eta)])
    return Step(stop=tuple(c for c in going if c not in keep), until=until)
