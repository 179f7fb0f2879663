"""Learned search: Optuna's samplers propose, a round of proposals trains as lane grids.

A study with a learned strategy (``TPE``, ``GP``, ``CmaEs``, ``NSGA2``: each names its
Optuna sampler) runs in rounds until it has trained ``samples`` configurations:

1. the sampler (``sampler.Proposer``) is asked as many configurations as one call holds
   (``Standing.lanes``: its lanes ÷ seeds, within the memory and lane caps);
2. they train side by side, grouped by shape (one program each), for ``epochs`` or, with a
   ``[halving]`` table, through synchronous rungs inside the round (BOHB-style: the sampler
   proposes, halving prunes);
3. their records are written (``results.jsonl``, ``optuna.db``), then each configuration is
   told its ``trials.outcome``: its seed-mean holdout accuracy (never the test accuracy);
   pruned with its last value when a rung stopped it, failed when a seed diverged.

A configuration's ``config_index`` is its trial's number and its record says its round
(``search.round``). With ``--budget``, the round that would pass it is cut to the
proposals that fit (its cost with halving counted as if the costliest survived every rung),
and the search ends there.

A round is written whole when it ends. A killed search resumes at the round it was in: a
new sampler replays the recorded rounds (ask, then tell the recorded outcomes), which
rebuilds its state, and the next proposals are those an uninterrupted run would have made.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import replace
from functools import cached_property
from typing import Any, ClassVar

from flaxmnist.errors import FlaxmnistWarning, RunDirError, SpecError
from flaxmnist.run.steps import Standing, Step
from flaxmnist.search import sampler
from flaxmnist.search.base import Strategy
from flaxmnist.search.halving import halve, next_stop, rung_epochs
from flaxmnist.search.trials import Outcome, by_config, outcome
from flaxmnist.specs.config import Config, Study, config_from_dict, parse_spec
from flaxmnist.specs.space import candidate_settings


class Learned(Strategy):
    """Optuna's sampler proposing round by round (see the module). Subclasses name the
    sampler.

    Attributes:
      sampler_class: Optuna's sampler class (``optuna.samplers.<name>``).
      sampler_defaults: options flaxmnist gives it unless ``[sampler]`` does.
      needs: what it imports beyond Optuna: (module, its name, the flaxmnist extra).
      single_objective: it optimises one objective only.
      generation: its option that a round's size sets (a generation is a round).
      startup_option: its option of random start-up trials, which flaxmnist sets to the
        first round's size unless ``[sampler]`` does (``""``: it has none).
    """

    needs_space = True
    draw = ""
    proposes = True
    tables = ("halving", "objectives", "sampler")
    learns = True
    sampler_class: ClassVar[str]
    sampler_defaults: ClassVar[dict[str, Any]] = {}
    needs: ClassVar[tuple[str, ...]] = ()
    single_objective: ClassVar[bool] = False
    generation: ClassVar[str] = ""
    startup_option: ClassVar[str] = ""

    def __init__(self, study: Study):
        super().__init__(study)
        self.proposer: sampler.Proposer | None = None
        self.round = 0
        self.asked = 0
        self.numbers: range = range(0)  # the trials of the round in training
        self.last = False  # the budget cut this round: no other follows

    @classmethod
    def check(cls, study: Study) -> None:
        """Optuna's refusals (``sampler.check``), before anything runs; a sampler of one
        objective given two is told which learned strategies take two."""
        sampler.check_installed(cls, study.source)
        if len(study.search.objectives) > 1 and cls.single_objective:
            others = [c.name for c in Learned.__subclasses__() if not c.single_objective]
            raise SpecError(
                f"{study.source}: strategy = {cls.name!r} optimises one objective: with "
                f"objectives = {list(study.search.objectives)}, use {', '.join(others)}"
            )
        sampler.check(cls, study.search, study.source)

    @classmethod
    def uninformed(cls, study: Study, round_size: int, warm: int = 0) -> int:
        """The proposals made before the sampler has been told anything, or while it is in
        its random start-up: round by round, ``warm`` results told first, each round's
        results told when it ends. The start-up is ``[sampler]``'s (``n_startup_trials``)
        or the first round; a sampler that counts the trials running (TPE's
        ``constant_liar``) leaves it within a round. Always the first ones proposed."""
        search = study.search
        options = {**cls.sampler_defaults, **search.sampler}
        first = min(round_size, search.samples)
        startup = int(options.get(cls.startup_option, first)) if cls.startup_option else first
        running = bool(options.get("constant_liar", False))
        told, count = warm, 0
        for start in range(0, search.samples, round_size):
            size = min(round_size, search.samples - start)
            count += sum(told == 0 or told + k * running < startup for k in range(size))
            told += size
        return count

    @classmethod
    def check_plan(cls, study: Study, round_size: int, warm: int = 0) -> None:
        """Refuse a search whose every proposal would be made before anything is told: it
        would be a random search that says it learns."""
        samples, uninformed = study.search.samples, cls.uninformed(study, round_size, warm)
        if samples > uninformed:
            return
        if samples > round_size:
            asked = study.search.sampler.get(cls.startup_option)
            why = f"its [sampler] asks {asked} random start-up trials, in rounds of {round_size}"
        else:
            why = f"one round holds {round_size} configurations, asked before any is told"
        raise SpecError(
            f"{study.source}: strategy = {cls.name!r} would learn nothing: all its {samples} "
            f"samples are proposed before the sampler is told a result ({why}); raise samples "
            f"above {uninformed}, or make rounds smaller with --max-lanes (lanes per call)"
        )

    @classmethod
    def planned(cls, study: Study, round_size: int, warm: int = 0) -> dict[str, Any]:
        """Rounds and start-up of the search as planned (kept in ``manifest.json``)."""
        samples = study.search.samples
        return {
            "round_size": round_size,
            "rounds": -(-samples // round_size),
            "startup": cls.uninformed(study, round_size, warm),
        }

    @classmethod
    def announce(cls, study: Study, round_size: int, warm: int = 0) -> str:
        planned = cls.planned(study, round_size, warm)
        samples, startup = study.search.samples, planned["startup"]
        told = f"; told {warm} finished configurations of an earlier run first" if warm else ""
        return (
            f"{samples} samples in {planned['rounds']} rounds of up to {round_size}{told}: "
            f"the first {startup} are uninformed (proposed before any result is told, or in "
            f"the sampler's random start-up), the other {samples - startup} learn from what "
            "has trained"
        )

    @classmethod
    def with_epochs(cls, study: Study, epochs: int) -> Study:
        search = replace(study.search, base={**study.search.base, "epochs": epochs})
        return replace(study, search=search)

    @classmethod
    def planned_configs(cls, study: Study) -> tuple[Config, ...]:
        """A configuration per program shape the space can propose (``candidate_settings``):
        what the memory, the batch sizes and a round are checked and planned for."""
        return tuple(resolve(study, s) for s in candidate_settings(study.search))

    @cached_property
    def epochs(self) -> int:
        return resolve(self.study, candidate_settings(self.search)[0]).epochs

    def stop_after(self, epoch: int) -> int:
        if not self.search.halving:
            return self.epochs
        return next_stop(rung_epochs(self.search.min_epochs, self.search.eta, self.epochs), epoch)

    def fields(self, index: int) -> dict[str, Any]:
        fields = {"strategy": self.name, "round": self.round}
        if len(self.search.objectives) > 1:
            fields["objectives"] = list(self.search.objectives)
        return fields

    def first(self, standing: Standing) -> Step:
        """Replay the rounds an earlier attempt recorded, then propose the next."""
        start = time.perf_counter()
        rounds, forget = recorded_rounds(self.study, standing)
        standing = _forgotten(standing, forget)  # the loop drops them after this step
        self.asked, self.round = sum(len(r) for r in rounds), len(rounds)
        if self.asked >= self.search.samples:
            return Step(forget=forget)
        self.proposer = sampler.Proposer(type(self), self.search, standing.lanes)
        self.proposer.warm(
            [
                (config_from_dict(group[0]["config"]), outcome(group, self.search.objectives))
                for group in by_config(self.warm_records).values()
            ]
        )
        try:
            self.proposer.replay(rounds, lambda settings: resolve(self.study, settings))
        except ValueError as err:
            raise RunDirError(
                f"{self.study.name}: cannot resume the search: {err}. The sampler must be the "
                "one that started it: the Optuna version in manifest.json, rounds of the same "
                "size (its planned round_size), and flaxmnist's defaults then (since issue 31 "
                "TPE's and GP's start-up is the first round, unless [sampler] sets "
                "n_startup_trials); or start again in another directory"
            ) from None
        step = self._propose(standing)
        seconds = time.perf_counter() - start
        return replace(step, forget=forget, sampler_seconds=seconds)

    def next(self, standing: Standing) -> Step:
        """Halve at a rung inside the round; at its end, tell the sampler and propose."""
        if standing.going and standing.epoch < self.epochs:
            step = halve(standing, self.search.eta, self.stop_after(standing.epoch))
            return replace(step, label=self._label(standing), checkpoint=False)
        start = time.perf_counter()
        groups = by_config([r for r in standing.records if r["config_index"] in self.numbers])
        objectives = self.search.objectives
        self.proposer.tell({n: outcome(groups[n], objectives) for n in self.numbers})
        self.round += 1
        step = Step() if self.last else self._propose(standing)
        return replace(step, sampler_seconds=time.perf_counter() - start)

    def _propose(self, standing: Standing) -> Step:
        """The next round: as many proposals as a round holds, cut to the budget left."""
        count = min(standing.lanes, self.search.samples - self.asked)
        if count < 1:
            return Step()
        proposed = [resolve(self.study, s) for s in self.proposer.ask(count)]
        configs = self._within_budget(proposed, standing)
        self.last = len(configs) < count or self.asked + len(configs) >= self.search.samples
        if not configs:
            return Step()
        self.numbers = range(self.asked, self.asked + len(configs))
        self.asked += len(configs)
        return Step(
            add=dict(zip(self.numbers, configs, strict=True)),
            until=self.stop_after(0),
            fields={n: self.fields(n) for n in self.numbers},
            label=self._label(standing),
            checkpoint=False,  # a round is written whole when it ends
        )

    def _label(self, standing: Standing) -> str:
        """``round k of K``; under a budget, which may end the search sooner, ``of at most K``."""
        rounds = -(-self.search.samples // standing.lanes)
        return f"round {self.round + 1} of {'at most ' if standing.budget else ''}{rounds}"

    def _within_budget(self, configs: list[Config], standing: Standing) -> list[Config]:
        """The longest first part of ``configs`` whose round fits what is left of the
        budget (all of them without one); warns when it cuts."""
        if standing.budget_left is None:
            return configs
        count = len(configs)
        while count and self._round_cost(configs[:count], standing) > standing.budget_left:
            count -= 1
        if count < len(configs):
            uninformed = (
                ", all in its first round, proposed before anything was told: it learned "
                "nothing (smaller rounds, --max-lanes, let it learn within the budget)"
                if self.round == 0
                else ""
            )
            warnings.warn(
                f"{self.study.name}: the budget of {standing.budget:.4g} training FLOPs is "
                f"spent: the search stops after {self.asked + count} of its "
                f"{self.search.samples} configurations{uninformed}",
                FlaxmnistWarning,
                stacklevel=2,
            )
        return configs[:count]

    def _round_cost(self, configs: list[Config], standing: Standing) -> int:
        """Training FLOPs of a round, every seed; with rungs, the costliest survive each."""
        per_epoch = sorted((standing.cost(c) for c in configs), reverse=True)
        if not self.search.halving:
            return self.epochs * sum(per_epoch)
        alive, cost, last = len(per_epoch), 0, 0
        for rung in rung_epochs(self.search.min_epochs, self.search.eta, self.epochs):
            cost += (rung - last) * sum(per_epoch[:alive])
            alive, last = max(1, alive // self.search.eta), rung
        return cost


class TPE(Learned):
    """Optuna's ``TPESampler``: one or two objectives; a round's trials are running while it
    asks (``constant_liar``), so they spread out."""

    name = "tpe"
    sampler_class = "TPESampler"
    startup_option = "n_startup_trials"
    warm_starts = True
    sampler_defaults = {"constant_liar": True}


class GP(Learned):
    """Optuna's ``GPSampler`` (PyTorch): one or two objectives; a round is a q-batch."""

    name = "gp"
    sampler_class = "GPSampler"
    startup_option = "n_startup_trials"
    warm_starts = True
    sampler_defaults = {"warn_independent_sampling": False}  # flaxmnist says it, once
    needs = ("torch", "PyTorch", "gp")


class CmaEs(Learned):
    """Optuna's ``CmaEsSampler`` (the ``cmaes`` package): one objective; a generation is a
    round; ``choice`` priors are drawn at random."""

    name = "cmaes"
    sampler_class = "CmaEsSampler"
    sampler_defaults = {"warn_independent_sampling": False}  # flaxmnist says it, once
    needs = ("cmaes", "cmaes", "cmaes")
    single_objective = True
    generation = "popsize"

    @classmethod
    def check(cls, study: Study) -> None:
        super().check(study)
        choices = [p.key for p in study.search.priors if p.kind == "choice"]
        if choices:
            warnings.warn(
                f"{study.source}: CMA-ES searches numbers only: the choice priors "
                f"({', '.join(choices)}) are drawn at random",
                FlaxmnistWarning,
                stacklevel=2,
            )


class NSGA2(Learned):
    """Optuna's ``NSGAIISampler``: one or two objectives; a generation is a round."""

    name = "nsga2"
    sampler_class = "NSGAIISampler"
    generation = "population_size"


def _forgotten(standing: Standing, forget: tuple[int, ...]) -> Standing:
    """``standing`` without the records of ``forget``, their compute back in the budget."""
    if not forget:
        return standing
    dropped = [r for r in standing.records if r["config_index"] in forget]
    kept = [r for r in standing.records if r["config_index"] not in forget]
    left = standing.budget_left
    if left is not None:
        left += sum(r.get("compute", 0) for r in dropped)
    return replace(standing, records=kept, budget_left=left)


def resolve(study: Study, settings: dict[str, Any]) -> Config:
    """The configuration of a proposal of ``study``: its ``[base]`` with ``settings``."""
    document = {"base": study.search.base, "configs": [settings]}
    return parse_spec(document, study.name, study.source).configs[0]


def recorded_rounds(
    study: Study, standing: Standing
) -> tuple[list[list[tuple[Config, Outcome]]], tuple[int, ...]]:
    """The rounds the study's records hold (per round, each trial's configuration and
    outcome, in trial order), and the trials of a last round short of a record (a torn last
    line, left out when it was read): to be trained again whole.

    Raises:
      RunDirError: the records are out of the order of their rounds.
    """
    groups = by_config(sorted(standing.records, key=lambda r: (r["config_index"], r["seed"])))
    numbers = [group[0].get("search", {}).get("round") for group in groups.values()]
    whole = [len(group) == len(standing.seeds) for group in groups.values()]
    forget: tuple[int, ...] = ()
    while whole and not whole[-1]:  # drop the last round: its records are incomplete
        last = tuple(c for c, n in zip(groups, numbers, strict=True) if n == numbers[-1])
        kept = [i for i, c in enumerate(groups) if c not in last]
        groups = {c: groups[c] for c in groups if c not in last}
        numbers, whole = [numbers[i] for i in kept], [whole[i] for i in kept]
        forget += last
    rounds: list[list[tuple[Config, Outcome]]] = []
    for (index, group), number, complete in zip(groups.items(), numbers, whole, strict=True):
        if (
            not complete
            or index != sum(map(len, rounds))
            or number not in (len(rounds) - 1, len(rounds))
        ):
            raise RunDirError(
                f"{study.name}: results.jsonl holds configuration #{index + 1} out of "
                "the order of its rounds, or without all its seeds; flaxmnist writes rounds "
                "whole: restore the file, or start again in another directory"
            )
        if number == len(rounds):
            rounds.append([])
        config = config_from_dict(group[0]["config"])
        rounds[-1].append((config, outcome(group, study.search.objectives)))
    return rounds, forget
