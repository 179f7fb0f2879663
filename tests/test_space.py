import math

import numpy as np
import pytest

from flaxmnist.errors import SpecError
from flaxmnist.search.registry import STRATEGIES
from flaxmnist.specs.space import Prior, draw
from flaxmnist.studies import load_study, parse_study

#: The form the issue asks for, verbatim.
ISSUE_SPEC = """
description = "..."
strategy = "halving"   # grid (default) | random | quasi-random | halving | pbt
samples = 27           # configurations drawn
seed = 0               # the sampler's seed (training seeds stay --seeds)
[base]
hidden = [300]
epochs = 9             # the most any configuration trains
[search]
learning_rate = { log_uniform = [1e-4, 1e-1] }
dropout = { uniform = [0.0, 0.5] }
hidden = { choice = [[300], [1024, 1024]] }
[halving]
eta = 3
min_epochs = 1
"""


def search_doc(**top):
    document = {
        "strategy": "random",
        "samples": 8,
        "base": {"epochs": 2},
        "search": {"learning_rate": {"log_uniform": [1e-4, 1e-1]}},
    }
    document.update(top)
    return document


def test_the_issue_spec_draws_27_configurations_within_their_priors(tmp_path):
    path = tmp_path / "search.toml"
    path.write_text(ISSUE_SPEC)
    study = load_study(path)
    assert (study.strategy, len(study.configs)) == ("halving", 27)
    assert study.varied == ("learning_rate", "dropout", "hidden")
    assert (study.search.eta, study.search.min_epochs) == (3, 1)
    for config in study.configs:
        assert 1e-4 <= config.learning_rate <= 1e-1
        assert config.hidden in ((300,), (1024, 1024))
        assert len(set(config.dropout)) == 1 and 0 <= config.dropout[0] <= 0.5
        assert len(config.dropout) == len(config.hidden)
        assert config.epochs == 9
    assert {c.hidden for c in study.configs} == {(300,), (1024, 1024)}


def test_draws_depend_on_the_seed_and_the_sampler_only():
    first = parse_study(search_doc(), "s", "s.toml").configs
    assert parse_study(search_doc(), "s", "s.toml").configs == first
    assert parse_study(search_doc(seed=1), "s", "s.toml").configs != first
    quasi = parse_study(search_doc(strategy="quasi-random"), "s", "s.toml").configs
    assert quasi != first


def test_quasi_random_points_fill_the_space_evenly_and_random_ones_do_not():
    prior = (Prior("dropout", "uniform", (0.0, 1.0)),)
    for seed in range(5):
        quasi = [d["dropout"] for d in draw(prior, 16, seed, quasi=True)]
        # A scrambled Halton sequence in base 2: 16 points, one in each sixteenth.
        assert sorted(int(x * 16) for x in quasi) == list(range(16))
    uneven = 0
    for seed in range(5):
        plain = [d["dropout"] for d in draw(prior, 16, seed, quasi=False)]
        uneven += sorted(int(x * 16) for x in plain) != list(range(16))
    assert uneven == 5


def test_priors_map_quantiles_by_hand():
    assert Prior("learning_rate", "log_uniform", (1e-4, 1e-2)).value(0.5) == 1e-3
    assert Prior("dropout", "uniform", (0.0, 0.5)).value(0.25) == 0.125
    assert Prior("hidden", "choice", ((8,), (4, 4))).value(0.99) == [4, 4]
    # 4 significant digits, so tables show what trained
    value = Prior("learning_rate", "log_uniform", (1e-4, 1e-1)).value(0.3)
    assert value == float(f"{math.exp(math.log(1e-4) + 0.3 * math.log(1e3)):.4g}")
    assert Prior("dropout", "uniform", (0.0, 0.5)).clip(0.7) == 0.5


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"strategy": "bayes"}, r"s\.toml: strategy = 'bayes': expected one of grid, random"),
        ({"search": {"learning_rate": {"normal": [0, 1]}}}, r"search\.learning_rate = .*"),
        ({"search": {"learning_rate": {"uniform": [0.1, 0.01]}}}, r"expected low < high"),
        ({"search": {"learning_rate": {"log_uniform": [0.0, 0.1]}}}, r"needs low > 0"),
        ({"search": {"learning_rate": {"uniform": [0.1]}}}, r"expected \[low, high\]"),
        ({"search": {"dropout": {"uniform": [0.0, 1.5]}}}, r"search\.dropout = 1\.5"),
        ({"search": {"hidden": {"choice": [[0]]}}}, r"search\.hidden = \[0\]"),
        ({"search": {"momentum": {"uniform": [0, 1]}}}, r"unknown key search\.momentum"),
        ({"search": {"epochs": {"choice": [1, 2]}}}, r"search\.epochs .* is set in \[base\]"),
        ({"search": {}}, r"strategy = 'random' needs a \[search\] table"),
        ({"grid": {"learning_rate": [0.1]}}, r"\[search\] draws the configurations"),
        ({"samples": 0}, r"samples = 0: expected an integer >= 1"),
        ({"seed": -1}, r"seed = -1: expected an integer >= 0"),
        ({"halving": {"eta": 3}}, r"\[halving\] is set but strategy = 'random'"),
        ({"strategy": "halving", "halving": {"eta": 1}}, r"halving\.eta = 1: expected an int"),
        ({"strategy": "halving", "halving": {"rate": 1}}, r"unknown key halving\.rate"),
        ({"strategy": "halving", "halving": {"min_epochs": 3}}, r"more than base\.epochs = 2"),
        ({"strategy": "pbt", "pbt": {"fraction": 0.7}}, r"pbt\.fraction = 0\.7: expected a"),
        ({"strategy": "pbt", "pbt": {"interval": 0}}, r"pbt\.interval = 0"),
        ({"strategy": "pbt", "pbt": {"resample_probability": 2}}, r"resample_probability"),
        ({"base": {"epochs": 0}}, r"base\.epochs = 0"),
    ],
)
def test_invalid_search_specs_name_file_key_and_value(change, message):
    with pytest.raises(SpecError, match=message):
        parse_study(search_doc(**change), "s", "s.toml")


def test_a_search_needs_samples():
    document = search_doc()
    del document["samples"]
    with pytest.raises(SpecError, match=r"needs samples = N"):
        parse_study(document, "s", "s.toml")


def test_halving_and_pbt_may_search_a_grid_instead_of_drawing():
    document = {"strategy": "halving", "base": {"epochs": 3}, "grid": {"dropout": [0, 0.1]}}
    study = parse_study(document, "s", "s.toml")
    assert (study.strategy, [c.dropout for c in study.configs]) == ("halving", [(0.0,), (0.1,)])


def test_new_hyperparameters_are_spec_keys_with_checked_values():
    study = parse_study(
        search_doc(
            base={"epochs": 2, "lr_schedule": "cosine", "warmup_epochs": 1},
            search={
                "input_dropout": {"uniform": [0.0, 0.3]},
                "max_norm": {"choice": [0.0, 3.0, 4.0]},
            },
        ),
        "s",
        "s.toml",
    )
    assert {c.lr_schedule for c in study.configs} == {"cosine"}
    assert all(0 <= c.input_dropout <= 0.3 for c in study.configs)
    assert {c.max_norm for c in study.configs} <= {0.0, 3.0, 4.0}
    with pytest.raises(SpecError, match=r"base\.lr_schedule = 'step'"):
        parse_study(search_doc(base={"lr_schedule": "step"}), "s", "s.toml")
    with pytest.raises(SpecError, match=r"search\.input_dropout = 1\.0: expected a rate"):
        parse_study(search_doc(search={"input_dropout": {"uniform": [0.0, 1.0]}}), "s", "s.toml")
    assert np.isclose(study.configs[0].lr_decay, 1.0)


def learned_doc(**top):
    document = {
        "strategy": "tpe",
        "samples": 6,
        "base": {"epochs": 2, "hidden": [8]},
        "search": {
            "learning_rate": {"log_uniform": [1e-4, 1e-1]},
            "hidden": {"choice": [[8], [16, 16]]},
            "dropout": {"choice": [0.1, 0.2]},
        },
    }
    document.update(top)
    return document


def test_a_learned_strategy_draws_nothing_and_keeps_its_objectives_and_options():
    study = parse_study(
        learned_doc(objectives=["val_accuracy", "params"], sampler={"n_startup_trials": 3}),
        "s",
        "s.toml",
    )
    assert (study.strategy, study.configs) == ("tpe", ())
    assert study.varied == ("learning_rate", "hidden", "dropout")
    assert study.search.objectives == ("val_accuracy", "params")
    assert study.search.sampler == {"n_startup_trials": 3}
    assert not study.search.halving
    halved = parse_study(learned_doc(halving={"eta": 2}), "s", "s.toml")
    assert halved.search.halving and halved.search.eta == 2


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"strategy": "bohb-v2"},
            r"strategy = 'bohb-v2': expected one of .*tpe, gp, cmaes, nsga2, bohb",
        ),
        ({"sampler": {"n_startup": 3}}, r"unknown sampler option sampler.n_startup for tpe"),
        ({"sampler": {"seed": 3}}, r"unknown sampler option sampler.seed"),
        ({"strategy": "nsga2", "sampler": {"population_size": "x"}}, r"NSGAIISampler refused"),
        ({"objectives": ["val_accuracy", "loss"]}, r"'loss' is not a metric .*params, compute"),
        ({"objectives": ["params"]}, r"expected \[\"val_accuracy\"\]"),
        ({"objectives": "val_accuracy"}, r"expected a list of metric names"),
        (
            {"strategy": "cmaes", "objectives": ["val_accuracy", "params"]},
            r"'cmaes' optimises one objective",
        ),
        (
            {"objectives": ["val_accuracy", "compute"], "halving": {"eta": 2}},
            r"\[halving\] ranks by holdout accuracy alone",
        ),
        ({"strategy": "random", "objectives": ["val_accuracy"]}, r"objectives is set but"),
        ({"strategy": "quasi-random", "sampler": {}}, r"sampler is set but"),
        ({"pbt": {"interval": 1}}, r"\[pbt\] is set but strategy = 'tpe'"),
        ({"search": {}}, r"needs a \[search\] table of priors"),
        (
            {"search": {"learning_rate": {"uniform": [0.1, math.inf]}}},
            r"search.learning_rate = .*the bounds must be finite",
        ),
        (
            {"search": {"batch_size": {"uniform": [32.5, 64]}}},
            r"batch_size takes integers",
        ),
        (
            {"search": {"l2": {"choice": [[0.1, 0.2, 0.3]]}}},
            r"l2 = \[0.1, 0.2, 0.3\]: expected 2 values",
        ),
    ],
)
def test_a_learned_spec_that_optuna_or_flaxmnist_would_refuse_is_refused_up_front(change, message):
    with pytest.raises(SpecError, match=message):
        refused(learned_doc(**change))


def refused(document):
    """Read a spec, then check it as ``run_sweep`` does before anything runs."""
    study = parse_study(document, "s", "s.toml")
    STRATEGIES[study.strategy].check(study)


def test_a_sampler_whose_package_is_missing_names_the_extra(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "torch" else real(name, *a)
    )
    with pytest.raises(SpecError, match=r"'gp' needs PyTorch .*pip install 'flaxmnist\[gp\]'"):
        refused(learned_doc(strategy="gp"))


def test_a_continuous_prior_over_an_integer_key_draws_integers_within_its_bounds():
    prior = Prior("batch_size", "uniform", (32, 256))
    assert [prior.value(u) for u in (0.0, 0.5, 0.999)] == [32, 144, 256]
    assert Prior("learning_rate", "uniform", (0.1, 0.10006)).clip(0.10005) == 0.10006  # not 0.1001
