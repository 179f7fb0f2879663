"""Hyperband (Li et al. 2018), packed into lanes with lane refill, and BOHB (Falkner et al.
2018), which proposes each bracket's configurations from what has trained.

Successive halving bets on how early a curve tells: every configuration trains to the first
rung, and only the best ``1/eta`` go on. Hyperband hedges that bet with brackets that start
at later rungs: with rungs ``r_0 < … < r_K`` (``halving.rung_epochs``: ``min_epochs *
eta**k``, then ``epochs``), bracket ``s`` (``s = K … 0``) draws ``n_s = ceil((K + 1) / (s +
1) * eta**s)`` configurations, trains them to rung ``r_{K-s}`` and halves from there on, so
each bracket costs about the same.

**Packed, with lane refill.** The brackets are lanes of the same calls: the study keeps up
to ``Standing.lanes`` configurations training (a call's lanes ÷ seeds). Brackets start in
Hyperband's order (``K``, …, ``0``, then again) while samples are left, each as many of its
``n_s`` as there are free lanes; when a rung stops configurations, the lanes they free take
the next bracket's at once, so calls do not narrow as rungs do. Each bracket halves on its
own clock (its members started together), at ``start + r``; the study decides at the
earliest such epoch. With ``--budget`` a bracket starts only with the configurations whose
training fits what is left after the brackets already going (each counted as if its
costliest configurations survived every rung), so no bracket is cut off half-way.

``hyperband`` trains the configurations a study drew (quasi-randomly, ``samples`` of them),
in order. ``bohb`` proposes them as it goes: a third at random (BOHB's ``rho``), the others
from a TPE model (Optuna's ``TPESampler``, multivariate, 64 candidates a proposal: BOHB's
settings) told the holdout accuracy at the largest rung that at least ``dims + 1``
configurations reached; before any has, all at random. The model is built afresh for each
bracket from the results so far, so it carries nothing over a resume.

A decision reads nothing but the ``Standing`` and the strategy's state (``state``: its
brackets), so a resumed study makes the decisions an uninterrupted one would, byte for
byte.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any, ClassVar

import numpy as np
import optuna

from flaxmnist.errors import FlaxmnistWarning
from flaxmnist.run.steps import Standing, Step
from flaxmnist.search import sampler
from flaxmnist.search.base import Strategy, rank
from flaxmnist.search.halving import rung_epochs
from flaxmnist.search.learned import Learned, resolve
from flaxmnist.search.trials import by_config, intermediate_values
from flaxmnist.specs.config import Config, Study, config_from_dict
from flaxmnist.specs.space import candidate_settings


@dataclass
class Bracket:
    """One bracket of successive halving: ``size`` is Hyperband's ``s``; ``members`` the
    configurations still training; ``rung`` the index (in the study's rungs) of the next rung;
    ``start`` the study's epoch when it started."""

    number: int
    size: int
    start: int
    rung: int
    members: list[int] = field(default_factory=list)


def bracket_sizes(rungs: int, eta: int) -> list[int]:
    """Hyperband's ``n_s`` for ``s = rungs - 1 … 0``.

    Example::

        >>> bracket_sizes(3, 3), bracket_sizes(1, 3)
        ([9, 5, 3], [1])
    """
    top = rungs - 1
    return [math.ceil((top + 1) / (s + 1) * eta**s) for s in range(top, -1, -1)]


class Hyperband(Strategy):
    """Hyperband, packed into lanes with lane refill (see the module)."""

    name = "hyperband"
    figure = "brackets"
    tables = ("halving",)
    halves = True
    lockstep = True
    refills = True

    def __init__(self, study: Study):
        super().__init__(study)
        self.brackets: list[Bracket] = []
        self.started = 0  # configurations started, in all
        self.warned = False  # it said that the budget cuts brackets
        self.bracket_of: dict[int, int] = {}
        #: How each configuration was proposed, where the strategy says (BOHB's model).
        self.proposed: dict[int, dict[str, Any]] = {}

    @property
    def samples(self) -> int:
        """The configurations the search trains at most."""
        return len(self.study.configs)

    @cached_property
    def rungs(self) -> list[int]:
        return rung_epochs(self.search.min_epochs, self.search.eta, self.epochs)

    @classmethod
    def announce(cls, study: Study, round_size: int, warm: int = 0) -> str:
        strategy = cls(study)
        sizes = bracket_sizes(len(strategy.rungs), study.search.eta)
        return (
            f"{strategy.samples} samples in brackets of {', '.join(map(str, sizes))} "
            f"configurations (then again), rungs at {strategy.rungs} epochs; up to "
            f"{round_size} train at once, a rung's freed lanes refilled at once"
            f"{cls.model_note}"
            + (f"; its model told {warm} finished configurations of an earlier run" * bool(warm))
        )

    model_note: ClassVar[str] = ""

    @classmethod
    def planned(cls, study: Study, round_size: int, warm: int = 0) -> dict[str, Any]:
        strategy = cls(study)
        sizes = bracket_sizes(len(strategy.rungs), study.search.eta)
        return {"round_size": round_size, "brackets": sizes, "rungs": strategy.rungs}

    def stop_after(self, epoch: int) -> int:
        going = [b for b in self.brackets if b.members]
        return min((b.start + self.rungs[b.rung] for b in going), default=epoch)

    def fields(self, index: int) -> dict[str, Any]:
        """Its bracket, the study's epoch when it started (a report places its curve) and
        the epochs of its first rung (Hyperband's kind of bracket)."""
        number = self.bracket_of.get(index, 0)
        bracket = self.brackets[number] if number < len(self.brackets) else None
        start, size = (bracket.start, bracket.size) if bracket else (0, len(self.rungs) - 1)
        first_rung = self.rungs[len(self.rungs) - 1 - size]
        return {
            "strategy": self.name,
            "bracket": number,
            "start": start,
            "first_rung": first_rung,
            **self.proposed.get(index, {}),
        }

    def first(self, standing: Standing) -> Step:
        """The first brackets; nothing where the study has records: with no checkpoint
        left, an earlier attempt finished it (records are written with a checkpoint)."""
        if standing.records:
            return Step()
        return self.next(standing)

    def next(self, standing: Standing) -> Step:
        """Halve every bracket at its rung; fill the lanes freed; train to the next rung."""
        stop = self._halve(standing)
        add = self._fill(standing, stop)
        if not any(b.members for b in self.brackets):
            return Step(stop=tuple(stop))
        return Step(
            add=add,
            stop=tuple(stop),
            until=self.stop_after(standing.epoch),
            fields={c: self.fields(c) for c in add},
            label=self._label(),
        )

    def _halve(self, standing: Standing) -> list[int]:
        """The configurations that stop at the brackets' rungs reached now."""
        going, stop = set(standing.going), []
        for bracket in self.brackets:
            bracket.members = [c for c in bracket.members if c in going]
            if not bracket.members or standing.epoch < bracket.start + self.rungs[bracket.rung]:
                continue
            keep = rank(standing, bracket.members)[
                : max(1, len(bracket.members) // self.search.eta)
            ]
            stop += [c for c in bracket.members if c not in keep]
            bracket.members = [c for c in bracket.members if c in keep]
            bracket.rung += 1
        return stop

    def _fill(self, standing: Standing, stopping: list[int]) -> dict[int, Config]:
        """New brackets in the lanes free after ``stopping``, while samples and budget last."""
        add: dict[int, Config] = {}
        sizes = bracket_sizes(len(self.rungs), self.search.eta)
        free = standing.lanes - sum(len(b.members) for b in self.brackets)
        while free > 0 and self.started < self.samples:
            number = len(self.brackets)
            size = len(sizes) - 1 - number % len(sizes)  # s = K, …, 0, then again
            count = min(sizes[-1 - size], free, self.samples - self.started)
            rung = len(self.rungs) - 1 - size
            proposals = self._propose(count, standing, add)
            configs = self._within_budget([c for c, _ in proposals], rung, standing, add)
            if len(configs) < count:
                self._warn_budget(standing, number, len(configs), count)
            if not configs:
                break  # tried again when lanes free: brackets going may leave more
            indices = range(self.started, self.started + len(configs))
            self.brackets.append(Bracket(number, size, standing.epoch, rung, list(indices)))
            add.update(zip(indices, configs, strict=True))
            self.bracket_of.update(dict.fromkeys(indices, number))
            kept = zip(indices, proposals[: len(configs)], strict=True)
            self.proposed.update((i, how) for i, (_, how) in kept if how)
            self.started += len(configs)
            free -= len(configs)
        return add

    def _warn_budget(self, standing: Standing, number: int, fits: int, count: int) -> None:
        """Say, once, that the budget now cuts brackets (a search that stops early says why)."""
        if self.warned:
            return
        self.warned = True
        warnings.warn(
            f"{self.study.name}: the budget of {standing.budget:.4g} training FLOPs holds "
            f"{fits} of bracket {number + 1}'s {count} configurations to its last rung: "
            f"brackets start as the budget allows from here ({self.started} of "
            f"{self.samples} configurations started)",
            FlaxmnistWarning,
            stacklevel=2,
        )

    def _propose(
        self, count: int, standing: Standing, adding: dict[int, Config]
    ) -> list[tuple[Config, dict[str, Any]]]:
        """The next ``count`` configurations, each with how it was proposed (fields its
        records keep; none here): the study's drawn ones, in order."""
        return [(c, {}) for c in self.study.configs[self.started : self.started + count]]

    def _within_budget(
        self, configs: list[Config], rung: int, standing: Standing, adding: dict[int, Config]
    ) -> list[Config]:
        """The longest first part of ``configs`` whose bracket, from rung ``rung``, fits the
        budget left after the brackets going (all of ``configs`` without a budget)."""
        if standing.budget_left is None:
            return configs
        # Lanes going (stopping now included) trained epochs not yet in the records.
        trained = sum(
            len(seeds[0]["history"]["val_accuracy"]) * standing.cost(standing.configs[c])
            for c, seeds in standing.curves.items()
        )
        going = sum(self._cost(b, standing, adding) for b in self.brackets if b.members)
        left = standing.budget_left - trained - going
        count = len(configs)
        while count and self._bracket_cost(configs[:count], rung, 0, standing) > left:
            count -= 1
        return configs[:count]

    def _cost(self, bracket: Bracket, standing: Standing, adding: dict[int, Config]) -> float:
        """What a bracket going may still spend (its costliest surviving every rung)."""
        configs = [standing.configs.get(c) or adding[c] for c in bracket.members]
        age = standing.epoch - bracket.start
        return self._bracket_cost(configs, bracket.rung, age, standing)

    def _bracket_cost(self, configs: list[Config], rung: int, age: int, standing) -> float:
        per_epoch = sorted((standing.cost(c) for c in configs), reverse=True)
        alive, cost, last = len(per_epoch), 0.0, age
        for epoch in self.rungs[rung:]:
            cost += (epoch - last) * sum(per_epoch[:alive])
            alive, last = max(1, alive // self.search.eta), epoch
        return cost

    def _label(self) -> str:
        going = [b for b in self.brackets if b.members]
        lanes = sum(len(b.members) for b in going)
        return f"brackets {going[0].number + 1}-{going[-1].number + 1}, {lanes} lanes"

    def exhausted(self) -> bool:
        return self.started >= self.samples

    def state(self) -> dict[str, Any]:
        return {
            "brackets": [asdict(b) for b in self.brackets],
            "started": self.started,
            "warned": self.warned,
            "bracket_of": [[c, b] for c, b in self.bracket_of.items()],
            "proposed": [[c, how] for c, how in self.proposed.items()],
        }

    def restore(self, saved: dict[str, Any]) -> None:
        self.brackets = [Bracket(**b) for b in saved["brackets"]]
        self.started, self.warned = saved["started"], saved["warned"]
        self.bracket_of = {c: b for c, b in saved["bracket_of"]}
        # A checkpoint from before flaxmnist kept it: its configurations say nothing.
        self.proposed = {c: how for c, how in saved.get("proposed", [])}


#: How BOHB's random draws are recorded.
_RANDOM: dict[str, Any] = {"proposed_by": "random"}


class BOHB(Hyperband):
    """Hyperband whose brackets a TPE model fills (see the module)."""

    name = "bohb"
    tables = ("halving", "sampler")
    warm_starts = True
    needs_space = True
    draw = ""
    proposes = True
    learns = True
    #: What ``sampler.make_sampler`` and ``sampler.check`` read of a learned strategy.
    sampler_class: ClassVar[str] = "TPESampler"
    #: BOHB's own: a multivariate density (grouped, for a space whose keys depend on the
    #: depth), 64 candidates for each proposal, and no start-up trials of the model's own
    #: (the study decides when it has enough results).
    sampler_defaults: ClassVar[dict[str, Any]] = {
        "n_startup_trials": 0,
        "multivariate": True,
        "group": True,
        "n_ei_candidates": 64,
    }
    needs: ClassVar[tuple[str, ...]] = ()
    generation: ClassVar[str] = ""
    startup_option: ClassVar[str] = ""
    #: BOHB's fraction of configurations drawn at random, whatever the model says.
    random_fraction: ClassVar[float] = 1 / 3
    model_note = (
        "; a third drawn at random, the others proposed by TPE from the holdout accuracy at "
        "the largest rung enough configurations reached"
    )

    @classmethod
    def check(cls, study: Study) -> None:
        sampler.check(cls, study.search, study.source)

    planned_configs = Learned.planned_configs
    with_epochs = Learned.with_epochs

    @cached_property
    def epochs(self) -> int:
        return resolve(self.study, candidate_settings(self.search)[0]).epochs

    @property
    def samples(self) -> int:
        return self.search.samples

    def _propose(
        self, count: int, standing: Standing, adding: dict[int, Config]
    ) -> list[tuple[Config, dict[str, Any]]]:
        """``count`` configurations, a third (about) at random and the others from the
        model, each with ``proposed_by`` (``"model"`` or ``"random"``) and, for the model's,
        the rung it learned from (``model_rung``, epochs) and how many results it was told
        (``model_told``)."""
        rng = np.random.default_rng([self.search.seed, self.started])
        modelled = rng.random(count) >= self.random_fraction
        observed = self._observations(standing)
        if observed is None:
            modelled[:] = False
        rung, points = observed or (None, [])
        asked = iter(self._ask(points, int(modelled.sum())) if modelled.any() else [])
        by_model = {"proposed_by": "model", "model_rung": rung, "model_told": len(points)}
        return [
            (resolve(self.study, next(asked)), by_model)
            if from_model
            else (resolve(self.study, sampler.random_settings(self.search.priors, rng)), _RANDOM)
            for from_model in modelled
        ]

    def _observations(self, standing: Standing) -> tuple[int, list[tuple[Config, float]]] | None:
        """The largest rung (epochs) that enough configurations reached, and their holdout
        accuracy there (``None``: no rung has enough yet)."""
        curves: dict[int, tuple[Config, dict[int, float]]] = {}
        for index, group in by_config(self.warm_records).items():  # negative: apart
            curves[-1 - index] = (config_from_dict(group[0]["config"]), intermediate_values(group))
        for index, group in by_config(standing.records).items():
            config = standing.configs.get(index) or config_from_dict(group[0]["config"])
            curves[index] = (config, intermediate_values(group))
        for index, seeds in standing.curves.items():
            curves[index] = (standing.configs[index], intermediate_values(seeds))
        enough = len(sampler.flat_distributions(self.search.priors)) + 1
        for rung in reversed(self.rungs):
            points = [(c, values[rung]) for c, values in curves.values() if rung in values]
            if len(points) >= enough:
                return rung, points
        return None

    def _ask(self, observed: list[tuple[Config, float]], count: int) -> list[dict[str, Any]]:
        """``count`` proposals of a TPE model told ``observed`` (seeded by the search's seed and
        the configurations started, so a resumed search asks the same)."""
        search = self.search
        sampler.quiet_optuna()
        seed = (search.seed * 1_000_003 + self.started) % 2**32
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            model = sampler.make_sampler(type(self), search, None, seed=seed)
            study = optuna.create_study(sampler=model, direction="maximize")
        sampler.tell_observed(study, search.priors, [(c, [v]) for c, v in observed])
        return sampler.ask_settings(study, search.priors, count)
