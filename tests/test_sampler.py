"""Optuna's samplers as flaxmnist uses them: priors as Optuna's distributions, proposals as
spec settings, the same proposals from the same seed, and a replay that notices a change."""

import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from flaxmnist.search.registry import STRATEGIES
from flaxmnist.search.sampler import Proposer, check, distribution, make_sampler, setting
from flaxmnist.search.trials import COMPLETE, FAILED, PRUNED, Outcome
from flaxmnist.specs.space import Prior
from flaxmnist.studies import parse_study


def proposer_for(space, round_size):
    """A ``Proposer`` of the strategy the spec of ``space`` names."""
    return Proposer(STRATEGIES[space.settings["strategy"]], space, round_size)


def study(strategy="tpe", **top):
    document = {
        "strategy": strategy,
        "samples": 12,
        "seed": 3,
        "base": {"epochs": 2, "hidden": [8]},
        "search": {
            "learning_rate": {"log_uniform": [1e-4, 1e-1]},
            "dropout": {"uniform": [0.0, 0.5]},
            "hidden": {"choice": [[8], [16, 16]]},
        },
        **top,
    }
    return parse_study(document, "s", "s.toml")


def search(strategy="tpe", **top):
    return study(strategy, **top).search


def test_priors_map_to_optuna_distributions_and_proposals_back_to_spec_values():
    lr = Prior("learning_rate", "log_uniform", (1e-4, 1e-1))
    assert distribution(lr) == FloatDistribution(1e-4, 1e-1, log=True)
    batch = Prior("batch_size", "uniform", (32, 256))
    assert distribution(batch) == IntDistribution(32, 256)
    hidden = Prior("hidden", "choice", ((8,), (16, 16)))
    assert distribution(hidden) == CategoricalDistribution(["[8]", "[16, 16]"])
    assert setting(hidden, "[16, 16]") == [16, 16]
    assert setting(lr, 0.0123456789) == 0.01235  # 4 significant digits, as drawn values


def test_the_same_seed_proposes_the_same_rounds_and_another_seed_others():
    def rounds(seed):
        proposer = proposer_for(search(seed=seed), 4)
        proposed = []
        for _ in range(3):
            batch = proposer.ask(4)
            proposed.append(batch)
            start = len(proposer.study.trials) - 4
            values = [Outcome(COMPLETE, (p["learning_rate"],), {}) for p in batch]
            proposer.tell({start + i: value for i, value in enumerate(values)})
        return proposed

    first = rounds(3)
    assert rounds(3) == first
    assert rounds(4) != first
    assert len({str(p) for batch in first for p in batch}) == 12  # a round's trials differ


def test_told_outcomes_reach_the_study_as_complete_pruned_and_failed_trials():
    proposer = proposer_for(search(), 3)
    proposer.ask(3)
    proposer.tell(
        {
            0: Outcome(COMPLETE, (0.9,), {1: 0.8, 2: 0.9}),
            1: Outcome(PRUNED, (0.4,), {1: 0.4}),
            2: Outcome(FAILED, None, {1: 0.1}),
        }
    )
    trials = proposer.study.trials
    assert [t.state.name for t in trials] == ["COMPLETE", "PRUNED", "FAIL"]
    assert trials[0].value == 0.9 and trials[0].intermediate_values == {1: 0.8, 2: 0.9}
    assert trials[1].value == 0.4  # a pruned trial's value is its last intermediate value


def test_a_replay_asks_and_tells_as_the_first_run_did_and_refuses_other_proposals():
    def resolve(settings):
        return tuple(sorted((k, str(v)) for k, v in settings.items()))

    first = proposer_for(search(), 2)
    history = []
    for _ in range(2):
        batch = first.ask(2)
        outcomes = [Outcome(COMPLETE, (0.5 + 0.1 * len(history),), {}) for _ in batch]
        history.append(list(zip(map(resolve, batch), outcomes, strict=True)))
        start = len(first.study.trials) - 2
        first.tell({start + i: o for i, o in enumerate(outcomes)})
    following = first.ask(2)
    again = proposer_for(search(), 2)
    again.replay(history, resolve)
    assert again.ask(2) == following
    other = proposer_for(search(seed=9), 2)
    with pytest.raises(ValueError, match=r"round 0, trial 0: the sampler proposes"):
        other.replay(history, resolve)


def test_a_generation_of_cma_es_or_nsga_ii_is_a_round_unless_the_spec_says_otherwise():
    cmaes = study("cmaes")
    with pytest.warns(match=r"CMA-ES searches numbers only: the choice priors \(hidden\)"):
        STRATEGIES["cmaes"].check(cmaes)
    assert make_sampler(STRATEGIES["cmaes"], cmaes.search, round_size=24)._popsize == 24
    given = search("nsga2", sampler={"population_size": 10})
    assert make_sampler(STRATEGIES["nsga2"], given, round_size=24)._population_size == 10


def _needs_torch_for(strategy: str) -> None:
    """Skip where ``strategy`` is gp and PyTorch (the gp extra) is not installed: nox's
    environments install ``.[dev]`` only."""
    if strategy == "gp":
        pytest.importorskip("torch", reason="GPSampler needs PyTorch (the gp extra)")


@pytest.mark.parametrize("name", ["tpe", "gp"])
def test_tpe_and_gp_start_up_with_the_first_round_unless_the_spec_says_otherwise(name):
    _needs_torch_for(name)
    assert make_sampler(STRATEGIES[name], search(name), round_size=5)._n_startup_trials == 5
    # samples = 12: a first round of 24 holds them all, so it is 12 (then refused)
    assert make_sampler(STRATEGIES[name], search(name), round_size=24)._n_startup_trials == 12
    given = search(name, sampler={"n_startup_trials": 2})
    assert make_sampler(STRATEGIES[name], given, round_size=5)._n_startup_trials == 2


@pytest.mark.parametrize("strategy", ["tpe", "gp", "cmaes", "nsga2", "bohb"])
def test_no_sampler_is_made_with_an_option_optuna_deprecates(strategy):
    """Optuna 5 deprecates constraints_func and TPE's gamma, weights and
    warn_independent_sampling: flaxmnist passes none of them (a FutureWarning would fail)."""
    import warnings

    import optuna

    _needs_torch_for(strategy)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        make_sampler(STRATEGIES[strategy], search(strategy), round_size=4)


@pytest.mark.parametrize("strategy", ["gp", "cmaes", "nsga2"])
def test_every_sampler_proposes_whole_rounds_the_same_from_the_same_seed(strategy):
    _needs_torch_for(strategy)
    space = {
        "learning_rate": {"log_uniform": [1e-4, 1e-1]},
        "dropout": {"uniform": [0.0, 0.5]},
    }
    options = {"n_startup_trials": 4} if strategy == "gp" else {}

    def rounds():
        proposer = proposer_for(search(strategy, search=space, sampler=options), 4)
        proposed = []
        for _ in range(3):
            batch = proposer.ask(4)
            proposed.append(batch)
            start = len(proposer.study.trials) - 4
            values = [Outcome(COMPLETE, (-abs(p["dropout"] - 0.2),), {}) for p in batch]
            proposer.tell({start + i: value for i, value in enumerate(values)})
        return proposed

    first = rounds()
    assert rounds() == first
    assert len({str(p) for batch in first for p in batch}) == 12


def test_a_prior_optuna_cannot_represent_is_refused_naming_it():
    from dataclasses import replace

    from flaxmnist.errors import SpecError

    bad = Prior("learning_rate", "log_uniform", (0.0, 1.0))  # space.py refuses it first
    with pytest.raises(SpecError, match=r"search.learning_rate: Optuna cannot represent"):
        check(STRATEGIES["tpe"], replace(search(), priors=(bad,)), "s.toml")
