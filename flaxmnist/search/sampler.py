"""Optuna's samplers proposing whole rounds of configurations.

A learned strategy (``flaxmnist.search.learned``) keeps an Optuna study in memory whose
sampler is one of Optuna's own, seeded with the spec's ``seed``; the strategy's class names
it and its defaults:

=========  ====================  ==========================================================
strategy   Optuna sampler        notes
=========  ====================  ==========================================================
``tpe``    ``TPESampler``        one or two objectives; a round's trials are running while
                                 it asks (``constant_liar``), so they spread out
``gp``     ``GPSampler``         one or two objectives; needs PyTorch (``flaxmnist[gp]``);
                                 a round is a q-batch of its acquisition function
``cmaes``  ``CmaEsSampler``      one objective; needs ``cmaes`` (``flaxmnist[cmaes]``); a
                                 generation is a round (``popsize``); ``choice`` priors
                                 are drawn at random
``nsga2``  ``NSGAIISampler``     one or two objectives; a generation is a round
                                 (``population_size``)
=========  ====================  ==========================================================

A ``[sampler]`` table passes keyword arguments to the sampler (``n_startup_trials = 8``).
Unless it sets them, TPE's and GP's random start-up trials are the first round: its trials
are asked together, before any is told, so none of them can learn; a search whose every
proposal is in the first round is refused (``Learned.check_plan``).

``Proposer.ask(count)`` asks ``count`` trials of the study (Optuna's ask-and-tell
interface) and turns their parameters into spec settings; ``Proposer.tell`` tells each its
``trials.Outcome``. Priors map to Optuna's distributions (``distribution``): ``uniform`` and
``log_uniform`` to ``FloatDistribution`` (``IntDistribution`` for an integer key), ``choice``
to ``CategoricalDistribution`` over the values as Optuna parameters
(``trials.param_value``: layer widths as JSON text). Proposed numbers are rounded to 4
significant digits, as drawn ones are (``space.Prior.clip``): a configuration trains, and a
table shows, the rounded value; the trial keeps the one the sampler proposed.

Sampling is deterministic: the same seed, asked and told the same outcomes in the same
order, proposes the same configurations. That is how a killed search resumes: a new
``Proposer`` replays the rounds its records hold (``replay``), asking and telling as the
first run did, and checks that it proposes what they trained.
"""

from __future__ import annotations

import importlib.util
import inspect
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from optuna.trial import TrialState

from flaxmnist.errors import SpecError
from flaxmnist.search.trials import COMPLETE, FAILED, PRUNED, Outcome, param_value
from flaxmnist.specs.space import INTEGER_KEYS, Prior, Search, settings_at

#: Options the spec sets elsewhere, or that take Python objects a TOML file cannot hold.
NOT_OPTIONS = (
    "seed",
    "independent_sampler",
    "constraints_func",
    "gamma",
    "weights",
    "mutation",
    "crossover",
    "elite_population_selection_strategy",
    "child_generation_strategy",
    "after_trial_strategy",
    "source_trials",
)
_STATES = {COMPLETE: TrialState.COMPLETE, PRUNED: TrialState.PRUNED, FAILED: TrialState.FAIL}


def quiet_optuna() -> None:
    """Optuna's INFO lines (a trial finished, a study created) off: flaxmnist has its own."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)


def distribution(prior: Prior) -> BaseDistribution:
    """The Optuna distribution of a prior (see the module).

    Raises:
      ValueError: Optuna cannot represent it.
    """
    if prior.kind == "choice":
        return CategoricalDistribution([param_value(prior.key, v) for v in prior.values])
    low, high = prior.values
    log = prior.kind == "log_uniform"
    if prior.key in INTEGER_KEYS:
        return IntDistribution(int(low), int(high), log=log)
    return FloatDistribution(low, high, log=log)


def flat_distributions(priors: Sequence[Prior]) -> dict[str, BaseDistribution]:
    """Optuna parameter name → distribution, every prior's: one each, or for a ``layers``
    prior ``hidden.depth`` and ``hidden.width_1`` … (a trial asks them all; a configuration
    uses the widths of its depth)."""
    result = {}
    for prior in priors:
        if prior.kind == "layers":
            low, high, _, width_low, width_high = prior.values
            result["hidden.depth"] = IntDistribution(low, high)
            log = prior.values[2] == "log_uniform"
            for layer in range(1, high + 1):
                result[f"hidden.width_{layer}"] = IntDistribution(width_low, width_high, log=log)
        else:
            result[prior.key] = distribution(prior)
    return result


def settings_of(priors: Sequence[Prior], params: dict[str, Any]) -> dict[str, Any]:
    """The spec settings of a trial's parameters (``flat_distributions``' names)."""
    settings = {}
    for prior in priors:
        if prior.kind == "layers":
            depth = params["hidden.depth"]
            widths = [params[f"hidden.width_{i}"] for i in range(1, depth + 1)]
            settings["hidden"] = [prior.width_prior.clip(w) for w in widths]
        else:
            settings[prior.key] = setting(prior, params[prior.key])
    return settings


def params_of(priors: Sequence[Prior], config: dict[str, Any]) -> dict[str, Any]:
    """A configuration's values (``Config.to_dict()``) as the parameters of a trial: the
    names of ``flat_distributions`` it has (a ``layers`` prior: the widths of its depth)."""
    params: dict[str, Any] = {}
    for prior in priors:
        if prior.kind == "layers":
            params["hidden.depth"] = len(config["hidden"])
            for layer, width in enumerate(config["hidden"], 1):
                params[f"hidden.width_{layer}"] = width
        else:
            params[prior.key] = param_value(prior.key, config[prior.key])
    return params


def random_settings(priors: Sequence[Prior], rng: np.random.Generator) -> dict[str, Any]:
    """Settings drawn uniformly from the unit cube of the priors with ``rng``."""
    return settings_at(tuple(priors), rng.random(sum(p.dims for p in priors)))


def tell_observed(
    study: optuna.Study, priors: Sequence[Prior], observed: Sequence[tuple[Any, Sequence[float]]]
) -> None:
    """Add ``observed`` (a configuration and its values) to ``study`` as complete trials."""
    distributions = flat_distributions(priors)
    for config, values in observed:
        params = params_of(priors, config.to_dict())
        trial = optuna.trial.create_trial(
            params=params,
            distributions={name: distributions[name] for name in params},
            values=list(values),
        )
        study.add_trial(trial)


def ask_settings(study: optuna.Study, priors: Sequence[Prior], count: int) -> list[dict]:
    """``count`` proposals of ``study``'s sampler, as spec settings (each left running, so
    a ``constant_liar`` sampler spreads them out)."""
    distributions, proposals = flat_distributions(priors), []
    for _ in range(count):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            trial = study.ask(distributions)
        proposals.append(settings_of(priors, trial.params))
    return proposals


def setting(prior: Prior, parameter: Any) -> Any:
    """The spec value of a proposed Optuna parameter (rounded as drawn values are)."""
    if prior.kind == "choice":
        encoded = [param_value(prior.key, v) for v in prior.values]
        chosen = prior.values[encoded.index(parameter)]
        return list(chosen) if isinstance(chosen, tuple) else chosen
    return prior.clip(parameter)


def directions(objectives: Sequence[str]) -> list[str]:
    """Holdout accuracy is maximised, a second objective (a cost) minimised."""
    return ["maximize", *["minimize"] * (len(objectives) - 1)]


def make_sampler(
    strategy: Any, search: Search, round_size: int | None = None, seed: int | None = None
):
    """The Optuna sampler of ``strategy`` (a learned strategy's class), seeded with
    ``search.seed``, with its defaults and the spec's ``[sampler]`` options; a generation of
    CMA-ES or NSGA-II is a round (``round_size``), and TPE's and GP's random start-up trials
    are the first round (Optuna's default, 10, is unrelated to how a run proposes)."""
    check_installed(strategy, "<spec>")
    options = {**strategy.sampler_defaults, **search.sampler}
    if strategy.generation and round_size is not None:
        options.setdefault(strategy.generation, max(2, round_size))
    if strategy.startup_option and round_size is not None:
        options.setdefault(strategy.startup_option, min(round_size, search.samples))
    seed = search.seed if seed is None else seed
    return getattr(optuna.samplers, strategy.sampler_class)(seed=seed, **options)


def check(strategy: Any, search: Search, source: str) -> None:
    """Refuse, before anything runs, what Optuna would refuse later: a missing package, a
    prior without an Optuna distribution, a sampler option the sampler does not take
    (``strategy``: a learned strategy's class).

    Raises:
      SpecError: naming ``source`` and the prior, objective or sampler option at fault.
    """
    check_installed(strategy, source)
    for prior in search.priors:
        try:
            flat_distributions([prior])
        except ValueError as err:
            raise SpecError(
                f"{source}: search.{prior.key}: Optuna cannot represent this prior ({err})"
            ) from None
    name = strategy.sampler_class
    known = [n for n in inspect.signature(getattr(optuna.samplers, name)).parameters]
    known = [n for n in known if n not in NOT_OPTIONS]
    for option in search.sampler:
        if option not in known:
            raise SpecError(
                f"{source}: unknown sampler option sampler.{option} for {strategy.name} "
                f"({name}; known: {', '.join(known)})"
            )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            make_sampler(strategy, search)
    except (TypeError, ValueError) as err:
        raise SpecError(f"{source}: [sampler]: {name} refused it: {err}") from None


def check_installed(strategy: Any, source: str) -> None:
    """Refuse a sampler whose package is missing, naming the flaxmnist extra."""
    if strategy.needs and importlib.util.find_spec(strategy.needs[0]) is None:
        module, name, extra = strategy.needs
        raise SpecError(
            f"{source}: strategy = {strategy.name!r} needs {name} ({strategy.sampler_class} "
            f"imports {module}): pip install 'flaxmnist[{extra}]'"
        )


class Proposer:
    """An Optuna study in memory whose sampler proposes configurations, round by round.

    Args:
      strategy: the learned strategy's class (its Optuna sampler and the sampler's defaults).
      search: the study's ``space.Search`` (priors, seed, options).
      round_size: the configurations of a round (a CMA-ES or NSGA-II generation).
    """

    def __init__(self, strategy: Any, search: Search, round_size: int):
        quiet_optuna()
        self.priors = search.priors
        self.distributions = flat_distributions(search.priors)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            self.study = optuna.create_study(
                sampler=make_sampler(strategy, search, round_size),
                directions=directions(search.objectives),
            )
        self._asked: dict[int, optuna.Trial] = {}
        self._next = 0  # the number of the next trial asked (warm trials not counted)

    def warm(self, trials: Sequence[tuple[Any, Outcome]]) -> None:
        """Add an earlier run's finished configurations as complete trials, before any is
        asked (each a configuration and its ``trials.Outcome``)."""
        tell_observed(self.study, self.priors, [(c, result.values) for c, result in trials])

    def ask(self, count: int) -> list[dict[str, Any]]:
        """``count`` proposals, as the spec settings of the searched keys (trial numbers
        follow on from the last round's)."""
        proposals = []
        for _ in range(count):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                trial = self.study.ask(self.distributions)
            self._asked[self._next] = trial
            self._next += 1
            proposals.append(settings_of(self.priors, trial.params))
        return proposals

    def tell(self, outcomes: dict[int, Outcome]) -> None:
        """Tell each asked trial (by number, in order) its outcome; a pruned trial's
        intermediate values are reported first, its last being its value."""
        multi = len(self.study.directions) > 1
        for number in sorted(outcomes):
            trial, result = self._asked.pop(number), outcomes[number]
            if not multi:  # Optuna keeps no intermediate values with several objectives
                for epoch, value in result.intermediate.items():
                    trial.report(value, epoch)
            values = list(result.values) if result.state == COMPLETE else None
            self.study.tell(trial, values, state=_STATES[result.state])

    def replay(
        self,
        rounds: Sequence[Sequence[tuple[Any, Outcome]]],
        resolve: Callable[[dict[str, Any]], Any],
    ) -> None:
        """Ask and tell the rounds a run recorded, as that run did: each round a list of
        its trials' configurations and outcomes, in trial order; ``resolve`` makes a
        proposal's configuration.

        Raises:
          ValueError: the sampler proposes configurations other than those recorded
            (another version of Optuna, or another spec); the message names the first.
        """
        for number, trials in enumerate(rounds):
            start = self._next
            proposed = [resolve(settings) for settings in self.ask(len(trials))]
            for offset, (mine, (recorded, _)) in enumerate(zip(proposed, trials, strict=True)):
                if mine != recorded:
                    raise ValueError(
                        f"round {number}, trial {start + offset}: the sampler proposes "
                        f"{mine}, the run directory recorded {recorded}"
                    )
            self.tell({start + i: result for i, (_, result) in enumerate(trials)})
