"""Learned search: Optuna's samplers propose, a round of proposals trains as lane grids.

A study with a learned strategy (``specs.LEARNED``: ``tpe``, ``gp``, ``cmaes``, ``nsga2``)
runs in rounds until it has trained ``samples`` configurations:

1. the sampler (``sampler.Proposer``) is asked as many configurations as one call holds
   (``round_size``: its lanes ÷ seeds, within the memory and lane caps);
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
With many processes, process 0 asks and tells; the others get its proposals.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from flaxmnist.core.train import TrainSpec
from flaxmnist.devices import cluster
from flaxmnist.errors import FlaxmnistWarning, RunDirError
from flaxmnist.run.plan import GRIDDED, lane_bytes, lanes_per_call, train_flops, train_spec_of
from flaxmnist.search.sampler import Proposer
from flaxmnist.search.state import SearchState, config_from_dict
from flaxmnist.search.strategies import SearchDriver, rung_epochs
from flaxmnist.search.trials import Outcome, by_config, outcome
from flaxmnist.specs.config import LEARNED, Config, Study, parse_spec
from flaxmnist.specs.space import candidate_settings


class LearnedDriver(SearchDriver):
    """Runs one learned-search study for a ``SweepLoop`` (see the module)."""

    def __init__(self, study_index: int, lanes_per_call, pad_widths: bool, round_size: int):
        super().__init__(study_index, lanes_per_call, pad_widths)
        self.round_size = round_size
        self.round = 0

    def __call__(self, loop) -> None:
        self.loop = loop
        self.study = loop.studies[self.study_index]
        search = self.study.search
        self.epochs = self.resolve(candidate_settings(search)[0]).epochs
        self.proposer = None
        recorded = self._recorded_rounds()
        asked = sum(len(r) for r in recorded)
        if asked >= search.samples:
            loop.add_configs(self.study_index, [c for r in recorded for c, _ in r])
            loop.progress.skipped(f"{self.study.name} [{self.study.strategy}]")
            return
        cluster.share(lambda: self._timed(self._start, recorded))
        loop.add_configs(self.study_index, [c for r in recorded for c, _ in r])
        self.round = len(recorded)
        while asked < search.samples:
            count = min(self.round_size, search.samples - asked)
            settings = cluster.share(lambda c=count: self._timed(self.proposer.ask, c))
            configs = self._within_budget([self.resolve(s) for s in settings], asked)
            if configs:
                self._train_round(configs, asked)
            asked += len(configs)
            self.round += 1
            if len(configs) < count:
                break  # the budget is spent

    def resolve(self, settings: dict[str, Any]) -> Config:
        """The configuration of a proposal: ``[base]`` with the proposed settings."""
        return resolve(self.study, settings)

    def _start(self, recorded: list[list[tuple[Config, Outcome]]]) -> None:
        """The sampler (process 0 only), its history rebuilt from the recorded rounds."""
        self.proposer = Proposer(self.study.search, self.round_size)
        try:
            self.proposer.replay(recorded, self.resolve)
        except ValueError as err:
            raise RunDirError(
                f"{self.study.name}: cannot resume the search: {err}. The sampler must be the "
                "one that started it (the Optuna version in manifest.json); or start again in "
                "another directory"
            ) from None

    def _recorded_rounds(self) -> list[list[tuple[Config, Outcome]]]:
        """The rounds ``results.jsonl`` holds for this study: per round, each trial's
        configuration and outcome, in trial order. A last round short of a record (a torn
        last line, left out when it was read) is dropped, to be trained again whole."""
        mine = [r for (s, _, _), r in sorted(self.loop.done.items()) if s == self.study_index]
        groups = by_config(mine)
        numbers = [group[0].get("search", {}).get("round") for group in groups.values()]
        whole = [len(group) == len(self.loop.seeds) for group in groups.values()]
        if whole and not whole[-1]:  # drop the last round: its records are incomplete
            last = numbers[-1]
            for key in [k for k, r in self.loop.done.items()
                        if k[0] == self.study_index and r["search"]["round"] == last]:  # fmt: skip
                del self.loop.done[key]
            return self._recorded_rounds()
        rounds: list[list[tuple[Config, Outcome]]] = []
        for (index, group), number, complete in zip(groups.items(), numbers, whole, strict=True):
            if (
                not complete
                or index != sum(map(len, rounds))
                or number not in (len(rounds) - 1, len(rounds))
            ):
                raise RunDirError(
                    f"{self.study.name}: results.jsonl holds configuration #{index + 1} out of "
                    "the order of its rounds, or without all its seeds; flaxmnist writes rounds "
                    "whole: restore the file, or start again in another directory"
                )
            if number == len(rounds):
                rounds.append([])
            config = config_from_dict(group[0]["config"])
            rounds[-1].append((config, outcome(group, self.study.search.objectives)))
        return rounds

    def _within_budget(self, configs: list[Config], asked: int) -> list[Config]:
        """The longest first part of ``configs`` whose round fits what is left of the
        budget (all of them without one); warns when it cuts."""
        loop = self.loop
        if loop.budget is None:
            return configs
        left = loop.budget - self._recorded_compute()
        count = len(configs)
        while count and self._round_cost(configs[:count]) > left:
            count -= 1
        if count < len(configs):
            warnings.warn(
                f"{self.study.name}: the budget of {loop.budget:.4g} training FLOPs is spent: "
                f"the search stops after {asked + count} of its {self.study.search.samples} "
                "configurations",
                FlaxmnistWarning,
                stacklevel=3,
            )
        return configs[:count]

    def _round_cost(self, configs: list[Config]) -> int:
        """Training FLOPs of a round, every seed; with rungs, the costliest survive each."""
        size = self.loop.data_settings["train_size"]
        per_epoch = sorted(
            (len(self.loop.seeds) * train_flops(train_spec_of(c), size) for c in configs),
            reverse=True,
        )
        if not self.study.search.halving:
            return self.epochs * sum(per_epoch)
        search, alive, cost, last = self.study.search, len(per_epoch), 0, 0
        for rung in rung_epochs(search.min_epochs, search.eta, self.epochs):
            cost += (rung - last) * sum(per_epoch[:alive])
            alive, last = max(1, alive // search.eta), rung
        return cost

    def _train_round(self, configs: list[Config], first: int) -> None:
        """Train one round (trials ``first`` on), write it, and tell the sampler."""
        numbers = range(first, first + len(configs))
        self.loop.add_configs(self.study_index, configs)
        self.study = self.loop.studies[self.study_index]
        state = SearchState(epoch=0, configs=dict(zip(numbers, configs, strict=True)))
        self._run(state, self._new_grids(state))  # records written, best model kept
        if cluster.is_main():
            records = [self.loop.done[(self.study_index, n, s)] for n in numbers
                       for s in self.loop.seeds]  # fmt: skip
            groups = by_config(records)
            objectives = self.study.search.objectives
            self._timed(self.proposer.tell, {n: outcome(groups[n], objectives) for n in numbers})

    def _timed(self, work, *args):
        """``work(*args)``, its seconds added to the run's ``sampler_seconds``."""
        start = time.perf_counter()
        try:
            return work(*args)
        finally:
            self.loop.stats.sampler_seconds += time.perf_counter() - start

    def _checkpoint(self, state: SearchState, grids) -> None:
        """Nothing mid-round: a round's records are written whole when it ends."""

    def _label(self) -> str:
        return f"{self.study.strategy}, round {self.round + 1}"

    def _search_fields(self, state: SearchState, config: int) -> dict[str, Any]:
        fields = {"strategy": self.study.strategy, "round": self.round}
        if len(self.study.search.objectives) > 1:
            fields["objectives"] = list(self.study.search.objectives)
        return fields


def round_size(lanes: int, seeds: int) -> int:
    """Configurations per round: as many as one call of ``lanes`` holds with every seed."""
    return max(1, lanes // seeds)


def resolve(study: Study, settings: dict[str, Any]) -> Config:
    """The configuration of a proposal of ``study``: its ``[base]`` with ``settings``."""
    document = {"base": study.search.base, "configs": [settings]}
    return parse_spec(document, study.name, study.source).configs[0]


def candidate_configs(study: Study) -> list[Config]:
    """A configuration per program shape the space can propose (``candidate_settings``):
    what the memory, the batch sizes and a round are checked and planned for."""
    return [resolve(study, settings) for settings in candidate_settings(study.search)]


def study_with_epochs(study: Study, epochs: int) -> Study:
    """A learned study whose proposals train ``epochs`` (the ``--epochs`` override)."""
    search = replace(study.search, base={**study.search.base, "epochs": epochs})
    return replace(study, search=search)


def largest_config(study: Study) -> Config:
    """The configuration of the space that needs the most memory per lane (widest layers,
    largest batch): what a round is planned for."""
    return max(candidate_configs(study), key=lambda c: lane_bytes(train_spec_of(c)))


def search_drivers(
    studies: Sequence[Study],
    seeds: int,
    max_lanes: int | None,
    memory: int,
    cap: int | None,
    pad_widths: bool,
    spec_of: Callable[[Config], TrainSpec],
) -> list[SearchDriver]:
    """A driver per study that does not train as planned calls: halving and PBT
    (``SearchDriver``), the learned strategies (``LearnedDriver``, a round being what one
    call of the space's largest configuration holds within ``cap`` lanes, as a grid's)."""

    def lanes(spec: TrainSpec) -> int:
        return lanes_per_call(spec, max_lanes, memory, None)

    drivers = []
    for index, study in enumerate(studies):
        if study.strategy in LEARNED:
            widest = spec_of(largest_config(study))
            size = round_size(lanes_per_call(widest, max_lanes, memory, cap), seeds)
            drivers.append(LearnedDriver(index, lanes, pad_widths, size))
        elif study.strategy not in GRIDDED:
            drivers.append(SearchDriver(index, lanes, pad_widths))
    return drivers
