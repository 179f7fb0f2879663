"""Every strategy, by name: the one place that names them.

``STRATEGIES`` maps a spec's ``strategy = "..."`` to its class (``search.base.Strategy``).
Everything else asks a strategy what it is (its class attributes) or what to do (its
decisions), never compares its name: ``tests/test_registry.py`` checks it.

Adding a strategy: its class, and one entry here.
"""

from __future__ import annotations

from flaxmnist.errors import SpecError
from flaxmnist.search.base import Strategy
from flaxmnist.search.halving import Halving
from flaxmnist.search.hyperband import BOHB, Hyperband
from flaxmnist.search.learned import GP, NSGA2, TPE, CmaEs
from flaxmnist.search.listed import Grid, QuasiRandom, Random
from flaxmnist.search.pbt import PBT

STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (Grid, Random, QuasiRandom, Halving, Hyperband, PBT, TPE, GP, CmaEs, NSGA2, BOHB)
}


def strategy_class(name: str, source: str = "<spec>") -> type[Strategy]:
    """The class of strategy ``name``.

    Raises:
      SpecError: no strategy has that name (the message lists them).
    """
    if name not in STRATEGIES:
        raise SpecError(f"{source}: strategy = {name!r}: expected one of {', '.join(STRATEGIES)}")
    return STRATEGIES[name]
