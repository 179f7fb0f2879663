"""Ensembles against NumPy: the mean softmax's accuracy, the seeds' ensemble a sweep records
(from the saved parameters, by a forward pass written in NumPy), greedy selection."""

import csv
import json

import numpy as np
import pytest

import flaxmnist
from flaxmnist.evaluate import main as evaluate_main
from flaxmnist.report.__main__ import main as report_main
from flaxmnist.report.summary_csv import write_summary_csv
from flaxmnist.run.checkpoint import load_model
from flaxmnist.run.ensemble import (
    ensemble_accuracy,
    greedy_ensemble,
    predictions_path,
    read_predictions,
    save_predictions,
)
from flaxmnist.specs.config import parse_spec
from flaxmnist.studies import parse_study


def numpy_forward(layers, images):
    """An MLP's softmax by hand: ReLU hidden layers, kernels ``(out, in)``."""
    x = images.reshape(len(images), -1).astype(np.float64) / 255
    names = sorted(k for k in layers if k.startswith("hidden_")) + ["output"]
    for name in names:
        x = x @ np.asarray(layers[name]["kernel"], np.float64).T + layers[name]["bias"]
        if name != "output":
            x = np.maximum(x, 0)
    x = np.exp(x - x.max(-1, keepdims=True))
    return x / x.sum(-1, keepdims=True)


def test_ensemble_accuracy_is_the_mean_softmax_argmax_by_hand():
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(10), size=(3, 200))
    labels = rng.integers(0, 10, 200)
    correct = 0
    for i in range(200):
        mean = [sum(probs[m, i, k] for m in range(3)) / 3 for k in range(10)]
        correct += int(np.argmax(mean) == labels[i])
    assert ensemble_accuracy(probs, labels) == correct / 200
    # it is not the mean of the members' accuracies, nor their vote, in general
    assert ensemble_accuracy(probs[:1], labels) == np.mean(probs[0].argmax(-1) == labels)


def test_greedy_selection_finds_the_pair_no_single_member_matches():
    labels = np.array([0, 0, 1, 1])
    probs = {
        3: np.array([[0.9, 0.1], [0.45, 0.55], [0.3, 0.7], [0.55, 0.45]]),  # 2 of 4
        5: np.array([[0.45, 0.55], [0.9, 0.1], [0.55, 0.45], [0.3, 0.7]]),  # 2 of 4
        7: np.array([[0.45, 0.55], [0.45, 0.55], [0.45, 0.55], [0.45, 0.55]]),  # 2 of 4
    }
    chosen = greedy_ensemble(probs, labels, rounds=5)
    assert sorted(set(chosen)) == [3, 5]
    mean = np.mean([probs[m] for m in chosen], axis=0)
    assert np.mean(mean.argmax(-1) == labels) == 1.0
    assert greedy_ensemble({4: probs[3]}, labels) == [4]
    with pytest.raises(ValueError):
        greedy_ensemble({}, labels)


def test_predictions_round_trip(tmp_path):
    val, test = np.full((5, 10), 0.1, np.float32), np.eye(10, dtype=np.float32)[:4]
    path = save_predictions(tmp_path, "s", 3, val, test, seeds=2)
    assert path == predictions_path(tmp_path, "s", 3)
    found = read_predictions(tmp_path, "s")
    assert list(found) == [3]
    np.testing.assert_allclose(found[3]["val"], val, atol=1e-4)
    np.testing.assert_array_equal(found[3]["test"], test)


@pytest.fixture(scope="module")
def two_seed_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ensemble") / "run"
    study = parse_spec(
        {"base": {"hidden": [16], "epochs": 2, "batch_size": 100, "ema_decay": 0.9},
         "grid": {"learning_rate": [3e-3, 1e-2]}},
        name="pair", source="pair.toml",
    )  # fmt: skip
    records = flaxmnist.run_sweep(study, seeds=3, limit_train=600, out=out, quiet=True)
    return out, records


def test_the_recorded_seed_ensemble_is_numpys(two_seed_run, mnist):
    out, records = two_seed_run
    model = load_model(out)
    mine = [r for r in records if r["config_index"] == model.info["config_index"]]
    ensemble = mine[0]["ensemble"]
    assert ensemble["seeds"] == 3 and all(r["ensemble"] == ensemble for r in mine)
    assert model.info["ensemble"] == ensemble
    layers = [
        {name: {k: np.asarray(v[s]) for k, v in layer.items()} for name, layer in
         model.params["params"].items()}
        for s in range(3)
    ]  # fmt: skip
    probs = np.stack([numpy_forward(layer, mnist.test_images) for layer in layers])
    expected = np.mean(probs.mean(0).argmax(-1) == mnist.test_labels)
    assert abs(ensemble["test_accuracy"] - expected) <= 1 / len(mnist.test_labels)  # a tie at most
    singles = [np.mean(p.argmax(-1) == mnist.test_labels) for p in probs]
    assert [r["test_accuracy"] for r in mine] == pytest.approx(singles, abs=1e-4)
    # the API's ensemble is the same one, and its labels those of the NumPy mean
    labels = model.predict(mnist.test_images, ensemble=True)
    assert np.mean(labels != probs.mean(0).argmax(-1)) <= 1e-3
    kept = read_predictions(out, "pair")[model.info["config_index"]]
    assert np.abs(kept["test"] - probs.mean(0)).max() < 2e-3  # float16


def test_every_configuration_has_its_ensemble_in_the_table_and_csv(two_seed_run):
    out, records = two_seed_run
    assert {r["config_index"] for r in records if "ensemble" in r} == {0, 1}
    table = flaxmnist.format_table(records)
    assert "ensemble of 3 seeds" in table
    rows = list(csv.DictReader(write_summary_csv(records, out / "summary.csv").open()))
    for row in rows:
        mine = next(r for r in records if r["config_index"] == int(row["config"]) - 1)
        assert row["ensemble_seeds"] == "3"
        assert float(row["ensemble_test_accuracy_pct"]) == pytest.approx(
            100 * mine["ensemble"]["test_accuracy"]
        )


def test_evaluate_ensemble_prints_the_ensembles_test_accuracy(two_seed_run, capsys):
    out, records = two_seed_run
    assert evaluate_main([str(out), "--ensemble"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    recorded = json.loads((out / "models" / "pair" / "model.json").read_text())["ensemble"]
    assert (
        line.startswith("ensemble of 3 seeds")
        and f"test accuracy {100 * recorded['test_accuracy']:.2f} %" in line
    )


def test_evaluate_ensemble_of_one_seed_is_refused(tmp_path, capsys):
    study = parse_spec({"base": {"hidden": [8], "epochs": 1}, "grid": {"learning_rate": [1e-3]}},
                       name="one", source="one.toml")  # fmt: skip
    flaxmnist.run_sweep(study, seeds=1, limit_train=400, out=tmp_path / "run", quiet=True)
    before = sorted(p.name for p in (tmp_path / "run").rglob("*"))
    assert evaluate_main([str(tmp_path / "run"), "--ensemble"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "an ensemble needs 2 or more" in err
    assert sorted(p.name for p in (tmp_path / "run").rglob("*")) == before
    with pytest.raises(ValueError, match="2 or more seeds"):
        load_model(tmp_path / "run").predict(np.zeros((1, 28, 28), np.uint8), ensemble=True)


def test_after_a_search_a_greedy_ensemble_is_chosen_on_the_holdout(tmp_path, mnist, capsys):
    study = parse_study(
        {"strategy": "random", "samples": 4, "seed": 0,
         "base": {"hidden": [16], "epochs": 2, "batch_size": 100},
         "search": {"learning_rate": {"log_uniform": [1e-3, 3e-2]}}},
        name="few", source="few.toml",
    )  # fmt: skip
    records = flaxmnist.run_sweep(study, seeds=2, limit_train=600, out=tmp_path, quiet=True)
    chosen = json.loads((tmp_path / "ensemble-few.json").read_text())
    assert chosen["candidates"] == 4 and sum(chosen["members"].values()) >= 1
    # the holdout's accuracy of what was chosen, recomputed from the kept predictions
    kept = read_predictions(tmp_path, "few")
    members = [int(k) - 1 for k, n in chosen["members"].items() for _ in range(n)]
    val_labels = mnist.train_labels[-10_000:]
    recomputed = ensemble_accuracy([kept[m]["val"] for m in members], val_labels)
    assert chosen["val_accuracy"] == pytest.approx(recomputed)
    best_single = max(r["ensemble"]["val_accuracy"] for r in records)
    assert chosen["val_accuracy"] >= best_single - 1e-4  # it starts from the best one
    test = ensemble_accuracy([kept[m]["test"] for m in members], mnist.test_labels)
    assert chosen["test_accuracy"] == pytest.approx(test)
    assert report_main([str(tmp_path)]) == 0
    assert any(
        line.startswith("few: greedy ensemble of configurations") and "not a single model" in line
        for line in capsys.readouterr().out.splitlines()
    )
