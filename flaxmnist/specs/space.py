"""Search spaces: priors over spec keys, drawn at random, quasi-randomly, or proposed by a
sampler that learns from what has trained.

A spec searches a space when it names a ``strategy`` other than ``"grid"``::

    description = "a search"
    strategy = "halving"   # random | quasi-random | halving | pbt | tpe | gp | cmaes | nsga2
    samples = 27           # configurations drawn (or proposed) in all
    seed = 0               # the sampler's seed (training seeds stay --seeds)
    [base]
    hidden = [300]
    epochs = 9             # the most any configuration trains
    [search]
    learning_rate = { log_uniform = [1e-4, 1e-1] }
    dropout = { uniform = [0.0, 0.5] }
    hidden = { choice = [[300], [1024, 1024]] }
    [halving]
    eta = 3                # keep the best 1/eta at every rung
    min_epochs = 1         # the first rung; then min_epochs * eta**k
    [pbt]
    interval = 2           # epochs between exploit/explore steps
    fraction = 0.25        # bottom fraction that copies the top fraction
    resample_probability = 0.25

Priors: ``uniform = [low, high]``, ``log_uniform = [low, high]`` (low > 0), ``choice =
[values...]`` (any key, ``hidden`` included; an integer key such as ``batch_size`` draws
integers); and for ``hidden`` alone, ``{ depth = [1, 3], log_uniform = [32, 2048] }``: a
depth, then each layer's width (an integer; ``uniform`` too). ``random`` draws ``samples``
points from NumPy's generator seeded with ``seed``; ``quasi-random`` takes them from a
scrambled Halton sequence (``scipy.stats.qmc``), which covers the space more evenly. Each
coordinate in [0, 1) maps through its prior; drawn numbers are rounded to 4 significant
digits, so a table shows what was trained. ``halving`` and ``pbt`` train the configurations
drawn (quasi-randomly) or, without ``[search]``, those of ``[grid]`` / ``[[configs]]``.
Every drawn value is checked as a spec value would be.

The learned strategies (``tpe``, ``gp``, ``cmaes``, ``nsga2``) are Optuna's samplers,
proposing round by round (``flaxmnist.search.learned``), so nothing is drawn here;
``[halving]`` adds rungs inside each round; ``objectives`` (``flaxmnist.specs.objectives``)
and a ``[sampler]`` table of the Optuna sampler's keyword arguments belong to them. What a
strategy's spec may and must hold is what its class says of itself (``parse_search_spec``).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.stats import qmc

from flaxmnist.errors import SpecError
from flaxmnist.specs.config import DEFAULTS, Study, check_value, parse_spec
from flaxmnist.specs.keys import CONFIG, SECTIONS, section
from flaxmnist.specs.objectives import parse_objectives

#: Top-level keys of a spec that searches (besides description, base, grid, configs).
#: The tables of a strategy's own settings: ``keys.toml``'s sections but a configuration's
#: keys and the spec's top level.
SETTINGS_TABLES = tuple(s for s in SECTIONS if s not in ("config", "spec"))
#: The table of successive halving's rungs (a learned strategy halves in rounds with it).
RUNGS_TABLE = "halving"
SEARCH_KEYS = (*section("spec"), *SETTINGS_TABLES)
PRIOR_KINDS = ("uniform", "log_uniform", "choice")
#: Keys whose values are integers: a continuous prior over them draws integers.
INTEGER_KEYS = tuple(key.name for key in CONFIG.values() if key.kind == "int")


@dataclass(frozen=True)
class Prior:
    """A distribution over one spec key: ``kind`` in ``PRIOR_KINDS`` and its arguments."""

    key: str
    kind: str
    values: tuple

    @property
    def dims(self) -> int:
        """Coordinates one draw takes: one, or for ``layers`` the depth and each width."""
        return 1 + self.values[1] if self.kind == "layers" else 1

    @property
    def width_prior(self) -> Prior:
        """A ``layers`` prior's prior of one layer's width."""
        return Prior("width", self.values[2], self.values[3:])

    def value(self, u: Any) -> Any:
        """The value at quantile ``u`` in [0, 1) (``layers``: ``dims`` of them)."""
        if self.kind == "layers":
            low, high = self.values[:2]
            depth = min(low + int(u[0] * (high - low + 1)), high)
            return [self.width_prior.value(x) for x in u[1 : 1 + depth]]
        if self.kind == "choice":
            chosen = self.values[min(int(u * len(self.values)), len(self.values) - 1)]
            return list(chosen) if isinstance(chosen, tuple) else chosen
        low, high = self.values
        if self.kind == "log_uniform":
            x = math.exp(math.log(low) + u * (math.log(high) - math.log(low)))
        else:
            x = low + u * (high - low)
        return self.clip(x)

    def clip(self, x: float) -> float | int:
        """``x`` within the prior's bounds (a continuous prior), as 4 significant digits (an
        integer for ``INTEGER_KEYS``); a bound stays exact."""
        low, high = self.values
        if self.key in INTEGER_KEYS or self.key == "width":
            return int(min(max(round(x), low), high))
        return min(max(float(f"{min(max(x, low), high):.4g}"), low), high)


@dataclass(frozen=True)
class Search:
    """How a study searches: the sampler and the strategy's settings (see the module)."""

    priors: tuple[Prior, ...] = ()
    samples: int = 0
    seed: int = 0
    eta: int = 3
    min_epochs: int = 1
    interval: int = 2
    fraction: float = 0.25
    resample_probability: float = 0.25
    objectives: tuple[str, ...] = ("val_accuracy",)
    sampler: dict = field(default_factory=dict, compare=False)  # the Optuna sampler's options
    halving: bool = False  # a learned strategy halves inside each round
    base: dict = field(default_factory=dict, compare=False)  # [base], what proposals complete
    settings: dict = field(default_factory=dict, compare=False)


def is_search_spec(document: dict[str, Any]) -> bool:
    """Whether a parsed spec names a strategy or a search space."""
    return any(key in document for key in SEARCH_KEYS)


def parse_search_spec(
    document: dict[str, Any], name: str, source: str, strategies: Mapping[str, Any]
) -> Study:
    """A spec with a ``strategy`` (and a ``[search]`` space) as a ``Study`` whose
    configurations are drawn (or, for a strategy that proposes them, left to it); the grid
    part goes through ``specs.parse_spec``.

    ``strategies``: every strategy by name (``flaxmnist.search.registry.STRATEGIES``); what
    each says of itself (``search.base.Strategy``'s attributes) decides what its spec may
    and must hold.

    Raises:
      SpecError: naming ``source``, the offending key and its value.
    """
    settings = section("spec")
    name_of = document.get("strategy", settings["strategy"].default)
    if not isinstance(name_of, str) or name_of not in strategies:
        raise SpecError(
            f"{source}: strategy = {name_of!r}: expected one of {', '.join(strategies)}"
        )
    for key in SEARCH_KEYS:
        if key in document and key in settings:
            check_value(source, "", key, document[key], settings)
    strategy = strategies[name_of]
    priors = parse_priors(_table(source, "search", document.get("search", {})), source)
    if strategy.needs_space and not priors:
        raise SpecError(f"{source}: strategy = {name_of!r} needs a [search] table of priors")
    search = _search(source, document, strategy, strategies, priors)
    rest = {k: v for k, v in document.items() if k not in SEARCH_KEYS}
    study = parse_spec(rest, name, source, allow_empty=bool(priors))
    if priors and (study.configs or document.get("grid") is not None):  # the [grid] table
        raise SpecError(f"{source}: [search] draws the configurations: drop [grid]/[[configs]]")
    if not priors:
        return replace(study, strategy=name_of, search=search)
    varied = tuple(p.key for p in priors)
    if strategy.proposes:  # the strategy proposes them as the study runs
        check_space(search, source)
        return Study(name, study.description, (), varied, source, name_of, search)
    draws = draw(priors, search.samples, search.seed, quasi=strategy.draw == "quasi")
    template = {"base": dict(document.get("base", {})), "configs": draws}
    configs = parse_spec(template, name, f"{source} (drawn)").configs
    return Study(name, study.description, configs, varied, source, name_of, search)


def parse_priors(space: dict[str, Any], source: str) -> tuple[Prior, ...]:
    """The priors of a ``[search]`` table (as a spec or a manifest holds it), checked.

    Raises:
      SpecError: naming ``source``, the key and its value.
    """
    return tuple(_prior(source, key, value) for key, value in space.items())


def draw(priors: tuple[Prior, ...], samples: int, seed: int, quasi: bool) -> list[dict]:
    """``samples`` settings, one value per prior: quasi-random (scrambled Halton) or random."""
    dims = sum(p.dims for p in priors)
    if quasi:
        points = qmc.Halton(d=dims, scramble=True, seed=seed).random(samples)
    else:
        points = np.random.default_rng(seed).random((samples, dims))
    return [settings_at(priors, row) for row in points]


def settings_at(priors: tuple[Prior, ...], point: Any) -> dict[str, Any]:
    """The settings at ``point`` in the unit cube of the priors (``Prior.dims`` coordinates
    each, in order)."""
    settings, start = {}, 0
    for prior in priors:
        u = point[start : start + prior.dims]
        settings[prior.key] = prior.value(u if prior.kind == "layers" else u[0])
        start += prior.dims
    return settings


def _table(source: str, name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError(f"{source}: [{name}] must be a table")
    return value


def _prior(source: str, key: str, value: Any) -> Prior:
    where = f"{source}: search.{key} = {value!r}"
    if key not in DEFAULTS:
        raise SpecError(f"{source}: unknown key search.{key} (known: {', '.join(DEFAULTS)})")
    if CONFIG[key].unsearchable:
        raise SpecError(f"{where}: {CONFIG[key].unsearchable}")
    if key == "hidden" and isinstance(value, dict) and "depth" in value:
        return _layers_prior(where, value)
    if not isinstance(value, dict) or len(value) != 1 or next(iter(value)) not in PRIOR_KINDS:
        raise SpecError(f"{where}: expected one of {{ {' | '.join(PRIOR_KINDS)} = [...] }}")
    ((kind, arguments),) = value.items()
    if not isinstance(arguments, list) or not arguments:
        raise SpecError(f"{where}: expected a non-empty list")
    if kind == "choice":
        for choice in arguments:
            check_value(source, "search", key, choice)
        return Prior(key, kind, tuple(tuple(v) if isinstance(v, list) else v for v in arguments))
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in arguments)
    if len(arguments) != 2 or not numbers:
        raise SpecError(f"{where}: expected [low, high], two numbers")
    low, high = arguments
    if not (math.isfinite(low) and math.isfinite(high)):
        raise SpecError(f"{where}: the bounds must be finite numbers")
    if not low < high:
        raise SpecError(f"{where}: expected low < high")
    if kind == "log_uniform" and low <= 0:
        raise SpecError(f"{where}: a log-uniform prior needs low > 0")
    if key in INTEGER_KEYS and not all(isinstance(v, int) for v in arguments):
        raise SpecError(f"{where}: {key} takes integers: expected [low, high], two integers")
    for bound in arguments:
        check_value(source, "search", key, bound)
    if key in INTEGER_KEYS:
        return Prior(key, kind, (low, high))
    return Prior(key, kind, (float(low), float(high)))


def _layers_prior(where: str, value: dict[str, Any]) -> Prior:
    """``hidden = { depth = [1, 3], log_uniform = [32, 2048] }``: a depth drawn uniformly
    from ``[low, high]``, then each layer's width from the width prior (integers)."""
    expected = (
        f"{where}: expected {{ depth = [low, high], log_uniform = [low, high] }} (or uniform)"
    )
    kinds = [k for k in value if k != "depth"]
    if len(kinds) != 1 or kinds[0] not in ("uniform", "log_uniform"):
        raise SpecError(expected)
    depth, widths = value["depth"], value[kinds[0]]
    for pair in (depth, widths):
        if not (isinstance(pair, list) and len(pair) == 2 and all(type(v) is int for v in pair)):
            raise SpecError(f"{expected}, each two integers")
    if not 1 <= depth[0] <= depth[1]:
        raise SpecError(f"{where}: depth: expected 1 <= low <= high")
    if not 1 <= widths[0] < widths[1]:
        raise SpecError(f"{where}: {kinds[0]}: expected 1 <= low < high")
    return Prior("hidden", "layers", (*depth, kinds[0], *widths))


def _settings(source: str, document: dict, table: str) -> dict[str, Any]:
    """The keys of ``[table]`` (``halving``, ``pbt``), checked, with their defaults."""
    given = _table(source, table, document.get(table, {}))
    keys = section(table)
    for key, value in given.items():
        check_value(source, table, key, value, keys)
    return {name: given.get(name, key.default) for name, key in keys.items()}


def _search(
    source: str,
    document: dict,
    strategy: Any,
    strategies: Mapping[str, Any],
    priors: tuple[Prior, ...],
) -> Search:
    """The sampler's and strategies' settings, checked."""
    tables = {table: _settings(source, document, table) for table in SETTINGS_TABLES}
    halving, pbt = tables[RUNGS_TABLE], tables["pbt"]
    rungs_given = RUNGS_TABLE in document
    for table in (*SETTINGS_TABLES, "objectives", "sampler"):
        # An empty settings table is no setting; objectives or a sampler always are.
        given = document.get(table) if table in SETTINGS_TABLES else table in document
        if given and table not in strategy.tables:
            readers = [name for name, other in strategies.items() if table in other.tables]
            what = f"[{table}]" if table in SETTINGS_TABLES else table
            raise SpecError(
                f"{source}: {what} is set but strategy = {strategy.name!r} does not read it "
                f"(the strategies that do: {', '.join(readers)})"
            )
    objectives = parse_objectives(source, document.get("objectives", ["val_accuracy"]))
    if len(objectives) > 1 and rungs_given:
        raise SpecError(
            f"{source}: [halving] ranks by holdout accuracy alone: with two objectives, "
            "drop [halving] (or the second objective)"
        )
    if priors and "samples" not in document:
        raise SpecError(f"{source}: [search] needs samples = N (configurations drawn)")
    epochs = document.get("base", {}).get("epochs", DEFAULTS["epochs"])
    if isinstance(epochs, int) and halving["min_epochs"] > epochs:
        raise SpecError(
            f"{source}: halving.min_epochs = {halving['min_epochs']}: more than base.epochs = "
            f"{epochs}"
        )
    return Search(
        priors=priors,
        samples=document.get("samples", 1),
        seed=document.get("seed", 0),
        **halving,
        interval=pbt["interval"],
        fraction=float(pbt["fraction"]),
        resample_probability=float(pbt["resample_probability"]),
        objectives=objectives,
        sampler=dict(document.get("sampler", {})),
        halving=strategy.halves or rungs_given,
        base=dict(document.get("base", {})),
        settings={k: document[k] for k in SEARCH_KEYS if k in document},
    )


def check_space(search: Search, source: str) -> None:
    """Check a learned strategy's space before anything runs: every ``choice`` resolves
    against ``[base]`` (per-layer lists against every depth). What Optuna itself would refuse
    is ``sampler.check``'s.

    Raises:
      SpecError: naming ``source``, the key and its value.
    """
    for settings in candidate_settings(search):
        parse_spec({"base": search.base, "configs": [settings]}, "check", f"{source} (search)")


def candidate_settings(search: Search) -> list[dict[str, Any]]:
    """The combinations of the ``choice`` priors (the first of each when they are many):
    every program shape and per-layer list a proposal can take, to check and plan for."""
    choices = [p for p in search.priors if p.kind == "choice"]
    combinations = math.prod(len(p.values) for p in choices)
    if combinations <= 4096:
        rows = itertools.product(*(range(len(p.values)) for p in choices))
    else:  # each choice alone, the others at their first value
        rows = [
            tuple(i if q is p else 0 for q in choices)
            for p in choices
            for i in range(len(p.values))
        ]
    settings = [
        {p.key: p.value((i + 0.5) / len(p.values)) for p, i in zip(choices, row, strict=True)}
        for row in rows
    ]
    for layers in (p for p in search.priors if p.kind == "layers"):  # every depth, widest
        low, high, _, _, widest = layers.values
        settings = [{**s, "hidden": [widest] * d} for s in settings for d in range(low, high + 1)]
    return settings
