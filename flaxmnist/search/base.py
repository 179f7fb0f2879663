"""``Strategy``: what every way of searching a study is, and says of itself.

A strategy is a class (``flaxmnist.search.registry`` lists them, and is the only place that
names them). What it says of itself, as class attributes, is all that reading a spec,
checking it before the run and planning it need to know; what it does is two methods
that decide, ``first`` and ``next``: given a ``run.steps.Standing`` they return a
``run.steps.Step``. A strategy reads nothing of the loop that trains its lanes, touches no
device, and runs in process 0 alone (the loop shares its steps with the others).

Adding a strategy: a subclass (its attributes and its two decisions), one line in the
registry, and its tests.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, ClassVar

from flaxmnist.run.records import selection_key
from flaxmnist.run.steps import Standing, Step
from flaxmnist.specs.config import Config, Study


class Strategy:
    """A way of searching a study (see the module). Subclasses set the attributes.

    Attributes:
      name: the spec's ``strategy = "..."``, and the records' ``search.strategy``.
      searches: ``False`` for the grid alone: the spec's listed configurations, no search
        (no ``search`` field in the records, no ensemble of configurations chosen after).
      up_front: every configuration is known when the spec is read and trains to its last
        epoch: the run trains them as planned calls, and ``first`` and ``next`` are not
        asked.
      needs_space: the spec must have a ``[search]`` table of priors.
      draw: ``"random"`` or ``"quasi"``: the configurations are drawn from the priors when
        the spec is read; ``""``: proposed as the study runs (``proposes``).
      proposes: the configurations are proposed round by round as the study runs.
      tables: the settings tables (and top-level keys) of a spec it reads: ``"halving"``,
        ``"pbt"``, ``"objectives"``, ``"sampler"``.
      halves: it always ranks at rungs (``[halving]``'s settings apply without the table).
      learns: told the accuracy that selects, so refused where the test set selects.
      shares_programs: its configurations' lanes change hyperparameters while they train,
        so a program holds every regulariser its searched keys may turn on.
      lockstep: its configurations train side by side, epoch by epoch (the report draws
        its progress per epoch, not per configuration).
      figure: the name of the report's figure of its own (``""``: none).
      refills: it adds configurations while others train (lane refill): they train beside
        them from their own epoch 0, and the study's epochs (``Standing.epoch``) run on.
      warm_starts: it can be told an earlier run's results before it proposes
        (``--warm-start``, ``warm``).
    """

    name: ClassVar[str]
    searches: ClassVar[bool] = True
    up_front: ClassVar[bool] = False
    needs_space: ClassVar[bool] = False
    draw: ClassVar[str] = "quasi"
    proposes: ClassVar[bool] = False
    tables: ClassVar[tuple[str, ...]] = ()
    halves: ClassVar[bool] = False
    learns: ClassVar[bool] = False
    shares_programs: ClassVar[bool] = False
    lockstep: ClassVar[bool] = False
    figure: ClassVar[str] = ""
    refills: ClassVar[bool] = False
    warm_starts: ClassVar[bool] = False

    def __init__(self, study: Study):
        self.study = study
        self.search = study.search
        self.warm_records: list[dict[str, Any]] = []

    def warm(self, records: list[dict[str, Any]]) -> None:
        """Take an earlier run's records of finished configurations of this space, to tell
        the sampler before it proposes (``search.warm``)."""
        self.warm_records = list(records)

    @classmethod
    def check(cls, study: Study) -> None:
        """Refuse, before anything runs, what would fail later (``SpecError``)."""

    @classmethod
    def check_plan(cls, study: Study, round_size: int, warm: int = 0) -> None:
        """Refuse, once the run is planned (``round_size``: configurations a round holds,
        for a strategy that proposes; ``warm``: earlier results it is told first), what the
        plan makes pointless (``SpecError``)."""

    @classmethod
    def planned(cls, study: Study, round_size: int, warm: int = 0) -> dict[str, Any]:
        """What the plan decided of the search that a reader of ``manifest.json`` needs (a
        learned search's rounds and start-up); ``{}``: nothing."""
        return {}

    @classmethod
    def announce(cls, study: Study, round_size: int, warm: int = 0) -> str:
        """The line said before the study trains (``""``: none)."""
        return ""

    @classmethod
    def with_epochs(cls, study: Study, epochs: int) -> Study:
        """``study`` with every configuration trained ``epochs`` (``--epochs``), its
        search's ``[base]`` too (what ``manifest.json`` keeps)."""
        configs = tuple(replace(c, epochs=epochs) for c in study.configs)
        if study.search is None:
            return replace(study, configs=configs)
        search = replace(study.search, base={**study.search.base, "epochs": epochs})
        return replace(study, configs=configs, search=search)

    @classmethod
    def planned_configs(cls, study: Study) -> tuple[Config, ...]:
        """The configurations the checks before the run and the plan see: the study's own,
        or, where they are proposed later, one per shape the space allows."""
        return study.configs

    def first(self, standing: Standing) -> Step:
        """The first step: every configuration from epoch 0, trained to the first stop;
        nothing (``Step()``) when an earlier attempt recorded them all."""
        if self.recorded_all(standing):
            return Step()
        configs = dict(enumerate(self.study.configs))
        fields = {i: self.fields(i) for i in configs}
        return Step(add=configs, until=self.stop_after(0), fields=fields)

    def next(self, standing: Standing) -> Step:
        """The step after the last one trained (``Step()``: the search is over)."""
        return Step()

    def state(self) -> dict[str, Any]:
        """What the strategy must carry over a resume, as JSON-ready data (saved with the
        grids after each step that says ``checkpoint``)."""
        return {}

    def restore(self, saved: dict[str, Any]) -> None:
        """Take back what ``state`` saved."""

    def exhausted(self) -> bool:
        """Whether, in the state it has (``restore``), it would add no configuration once
        its lanes going are done: a checkpoint whose lanes are all recorded is then a
        finished study's."""
        return True

    def compiled_in(self) -> set[str]:
        """``TrainSpec`` flags its programs keep on whatever the configurations (PBT: the
        features of the keys it changes as lanes train)."""
        return set()

    def fields(self, index: int) -> dict[str, Any]:
        """The ``search`` field of configuration ``index``'s records."""
        return {"strategy": self.name}

    def stop_after(self, epoch: int) -> int:
        """The next epoch after ``epoch`` at which this strategy decides (or the last)."""
        return self.epochs

    @property
    def epochs(self) -> int:
        """The most any configuration trains."""
        return max(c.epochs for c in self.study.configs)

    def recorded_all(self, standing: Standing) -> bool:
        """Whether every configuration of the study has a record of every seed."""
        have = {(r["config_index"], r["seed"]) for r in standing.records}
        count = len(self.study.configs)
        return all((c, seed) in have for c in range(count) for seed in standing.seeds)


def rank(standing: Standing, configs: list[int]) -> list[int]:
    """``configs`` best first, by ``records.selection_key`` of their seeds' curves (ties to
    the lower index)."""
    return sorted(configs, key=lambda c: selection_key(c, standing.curves[c]), reverse=True)
