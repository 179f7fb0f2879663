"""The strategies whose configurations are all known when the spec is read: the grid (the
spec's ``[grid]`` and ``[[configs]]``), and ``random`` and ``quasi-random`` draws from a
``[search]`` space (``flaxmnist.specs.space.draw``). Each configuration trains to its last
epoch; the run plans them as calls (``run.plan``), so they decide nothing as they train.
"""

from __future__ import annotations

from typing import Any

from flaxmnist.search.base import Strategy


class Grid(Strategy):
    """The spec's own configurations, every one trained: no search."""

    name = "grid"
    searches = False
    up_front = True

    def fields(self, index: int) -> dict[str, Any]:
        return {}


class Random(Strategy):
    """``samples`` configurations drawn at random from the priors (NumPy, ``seed``)."""

    name = "random"
    up_front = True
    needs_space = True
    draw = "random"


class QuasiRandom(Strategy):
    """``samples`` configurations from a scrambled Halton sequence over the priors, which
    covers the space more evenly than random draws."""

    name = "quasi-random"
    up_front = True
    needs_space = True
    draw = "quasi"
