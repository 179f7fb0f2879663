"""A configuration's seeds as one trial: its state, values and intermediate values, its
parameters, and the Pareto front, checked against numbers worked out by hand."""

import itertools

import numpy as np
import pytest

from flaxmnist.core.models import param_count
from flaxmnist.search.trials import (
    COMPLETE,
    FAILED,
    PRUNED,
    cost,
    intermediate_values,
    outcome,
    param_value,
    pareto_front,
)

TWO = {"objectives": ["val_accuracy", "params"]}


def record(index, seed, curve, epochs=None, hidden=(8,), diverged=False, compute=100, **search):
    return {
        "study": "s",
        "config_index": index,
        "seed": seed,
        "config": {"hidden": list(hidden), "epochs": epochs or len(curve)},
        "history": {"val_accuracy": list(curve)},
        "val_accuracy": curve[-1],
        "test_accuracy": 0.5,
        "diverged": diverged,
        "compute": compute,
        **({"search": search} if search else {}),
    }


def test_a_complete_configuration_is_told_its_seed_mean_holdout_accuracy_never_the_test():
    seeds = [record(0, 0, [0.5, 0.75]), record(0, 1, [0.25, 0.5])]
    result = outcome(seeds)
    assert result.state == COMPLETE
    assert result.values == (0.625,)  # (0.75 + 0.5) / 2; the test accuracy 0.5 is not it
    assert result.intermediate == {1: 0.375, 2: 0.625}


def test_a_configuration_stopped_before_its_epochs_is_pruned_with_its_last_value():
    seeds = [record(0, 0, [0.5, 0.6], epochs=9), record(0, 1, [0.3, 0.4], epochs=9)]
    assert outcome(seeds).state == PRUNED
    assert outcome(seeds).values == (0.5,)


def test_a_diverged_seed_fails_the_configuration():
    seeds = [record(0, 0, [0.5, 0.6]), record(0, 1, [0.3, None], diverged=True)]
    seeds[1]["val_accuracy"] = None
    result = outcome(seeds)
    assert (result.state, result.values) == (FAILED, None)
    assert result.intermediate == {1: 0.4}  # the epoch every seed has a value for
    assert intermediate_values(seeds) == {1: 0.4}


def test_the_second_objective_is_the_parameter_count_or_one_seeds_compute():
    seeds = [record(0, 0, [0.5], hidden=(300,), compute=10), record(0, 1, [0.7], compute=30)]
    assert cost(seeds, "params") == 784 * 300 + 300 + 300 * 10 + 10 == param_count(784, (300,))
    assert cost(seeds, "compute") == 20
    assert outcome(seeds, ("val_accuracy", "compute")).values == (0.6, 20)
    with pytest.raises(ValueError, match="no such objective"):
        cost(seeds, "loss")


def test_parameters_are_numbers_and_text_optuna_can_store():
    assert param_value("learning_rate", 0.01) == 0.01
    assert param_value("hidden", [1024, 1024]) == "[1024, 1024]"
    assert param_value("hidden", [300]) == "[300]"
    assert param_value("dropout", [0.2, 0.2]) == 0.2
    assert param_value("dropout", [0.2, 0.1]) == "[0.2, 0.1]"
    assert param_value("lr_schedule", "cosine") == "cosine"


def test_the_pareto_front_is_every_undominated_configuration_as_found_by_brute_force():
    rng = np.random.default_rng(0)
    widths = [8, 16, 32, 64]
    records = []
    for index in range(30):
        accuracy = float(np.round(rng.uniform(0.5, 1.0), 2))  # ties happen
        hidden = (int(rng.choice(widths)),)
        records += [record(index, s, [accuracy], hidden=hidden, **TWO) for s in (0, 1)]
    records.append(record(30, 0, [0.99], hidden=(8,), diverged=True, **TWO))
    records.append(record(30, 1, [0.99], hidden=(8,), diverged=True, **TWO))
    accuracy = {r["config_index"]: r["val_accuracy"] for r in records if not r["diverged"]}
    params = {i: 784 * r["config"]["hidden"][0] + r["config"]["hidden"][0] * 11 + 10
              for r in records if not r["diverged"] for i in [r["config_index"]]}  # fmt: skip
    dominated = {
        i
        for i, j in itertools.permutations(accuracy, 2)
        if accuracy[j] >= accuracy[i]
        and params[j] <= params[i]
        and (accuracy[j] > accuracy[i] or params[j] < params[i])
    }
    front = pareto_front(records)
    assert set(front) == set(accuracy) - dominated and 30 not in front
    assert [accuracy[i] for i in front] == sorted((accuracy[i] for i in front), reverse=True)
    assert accuracy[front[0]] == max(accuracy.values())
    assert pareto_front([record(0, 0, [0.5])]) == []  # one objective: no front
