"""The kept model: load_model, evaluate_test equal to the record bit for bit, the command line."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import flaxmnist
from flaxmnist import evaluate
from flaxmnist.core.data import make_splits
from flaxmnist.core.train import TrainSpec, make_hyperparams, make_train
from flaxmnist.errors import RunDirError
from flaxmnist.evaluate import data_source, evaluate_test, load_model, main
from flaxmnist.run.checkpoint import INFO_FILE, MODELS, PARAMS_FILE, save_model
from flaxmnist.run.records import json_float
from flaxmnist.specs.config import Config, parse_spec

SEEDS = [0, 1]
LIMIT_TRAIN = 300


def tiny_config(**data):
    config = Config(
        hidden=(8,), dropout=(0.0,), l2=(0.0, 0.0), learning_rate=0.01, epochs=1, batch_size=100
    )
    settings = {"dataset": "mnist", "validate_on": "holdout", "train_size": LIMIT_TRAIN}
    return {**config.to_dict(), **settings, "dtype": "float32", **data}


@pytest.fixture(scope="module")
def trained(mnist):
    """A tiny model trained as the sweep trains it: params ``[seed, ...]`` and the records'
    accuracies, from training's own evaluation."""
    spec = TrainSpec(hidden=(8,), epochs=1, batch_size=100)
    train = jax.jit(jax.vmap(make_train(spec), in_axes=(None, 0, None)))
    keys = jnp.stack([jax.random.key(seed) for seed in SEEDS])
    data = make_splits(mnist, limit_train=LIMIT_TRAIN)
    params, history = train(make_hyperparams(spec, 0.01), keys, data)
    info = {
        "study": "tiny",
        "config_index": 2,
        "config": tiny_config(),
        "seeds": SEEDS,
        "val_accuracy": [json_float(v) for v in history["val_accuracy"][:, -1]],
        "test_accuracy": [json_float(v) for v in history["test_accuracy"][:, -1]],
        "selected_by": "holdout",
    }
    return jax.tree.map(np.asarray, params), info


@pytest.fixture
def run_dir(tmp_path, trained):
    save_model(tmp_path, "tiny", *trained)
    return tmp_path


def test_load_model_reproduces_the_records_test_accuracy_exactly(run_dir, trained, mnist):
    model = load_model(run_dir)
    assert model.info == trained[1] and model.seeds == SEEDS
    assert model.config["hidden"] == [8] and model.module.hidden == (8,)
    accuracies = evaluate_test(model)  # the data the config names: the shipped MNIST
    assert accuracies == trained[1]["test_accuracy"]
    assert all(isinstance(a, float) for a in accuracies)
    assert evaluate_test(model, mnist) == accuracies
    assert 0.2 < accuracies[0] < 1  # 3 steps: better than chance


def test_the_model_is_called_on_images(run_dir, mnist):
    model = flaxmnist.load_model(run_dir, "tiny")
    images = mnist.test_images[:50]
    logits = model(images)
    assert logits.shape == (2, 50, 10) and logits.dtype == np.float32
    np.testing.assert_array_equal(model(images.reshape(50, 784)), logits)
    np.testing.assert_array_equal(model.predict(images), logits.argmax(-1))
    one_seed = jax.tree.map(lambda x: x[1], model.params)
    np.testing.assert_allclose(model.module.apply(one_seed, images), logits[1], atol=1e-5)
    # The predictions score what evaluate_test says, up to a near-tie rounded otherwise
    # (one call of 10,000 images is another program than training's chunks of 1,000).
    accuracy = (model.predict(mnist.test_images) == mnist.test_labels).mean(axis=1)
    np.testing.assert_allclose(accuracy, evaluate_test(model, mnist), atol=2e-4)


def test_the_command_line_checks_the_record(run_dir, trained, capsys):
    assert main([str(run_dir), "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    test = trained[1]["test_accuracy"]
    assert out[0].startswith("study tiny, configuration 3 (784-8-10), selected by its holdout")
    assert out[1].startswith("config: hidden=[8] dropout=[0.0] learning_rate=0.01 ")
    assert out[2] == (
        f"seed 0: test accuracy {100 * test[0]:.2f} % (the record: {100 * test[0]:.2f} %, equal)"
    )
    assert out[3].startswith("seed 1: test accuracy ") and out[3].endswith(", equal)")
    mean, std = 100 * np.mean(test), 100 * np.std(test, ddof=1)
    assert out[4] == f"mean over 2 seed(s): test accuracy {mean:.2f} ± {std:.2f} %"
    assert out[5] == "every seed's test accuracy equals its record exactly (float32)"


def test_a_model_that_is_not_its_record_exits_1(tmp_path, trained, capsys):
    params, info = trained
    wrong = [info["test_accuracy"][0], json_float(info["test_accuracy"][1] + 1e-4)]
    save_model(tmp_path, "tiny", params, {**info, "test_accuracy": wrong})
    assert main([str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "seed 0: " in out and out.count(", equal)") == 1
    assert f"DIFFERENT: {info['test_accuracy'][1]!r} != {wrong[1]!r}" in out
    assert "NOT the record's test accuracy" in out


def test_errors_are_one_line_with_exit_codes(tmp_path, trained, capsys):
    assert main([str(tmp_path / "none")]) == 3
    assert capsys.readouterr().err == (
        f"python -m flaxmnist.evaluate: error: {tmp_path / 'none'}: not a directory\n"
    )
    (tmp_path / "manifest.json").write_text("{}")
    assert main([str(tmp_path)]) == 3
    err = capsys.readouterr().err
    assert err.endswith(
        f"error: {tmp_path}: holds no saved model: it was written by an older flaxmnist, or "
        "the run did not finish a call\n"
    )
    save_model(tmp_path, "tiny", *trained)
    assert main([str(tmp_path), "--study", "other"]) == 3
    assert "error: --study other: no saved model of this study in " in capsys.readouterr().err
    (tmp_path / MODELS / "tiny" / PARAMS_FILE).write_bytes(b"garbage")
    assert main([str(tmp_path)]) == 3
    assert "params.msgpack: does not match model.json" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path), "--no-such-flag"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_parameters_that_do_not_fit_the_config_are_refused(tmp_path, trained):
    params, info = trained
    save_model(tmp_path, "tiny", params, {**info, "config": tiny_config(hidden=[16])})
    with pytest.raises(
        RunDirError, match=r"params.msgpack: parameter shapes .* \(hidden \[16\], 2 seeds"
    ):
        load_model(tmp_path)
    three = {"seeds": [0, 1, 2], "val_accuracy": [0.5] * 3, "test_accuracy": [0.5] * 3}
    save_model(tmp_path, "tiny", params, {**info, **three})
    with pytest.raises(RunDirError, match="do not fit model.json's config and seeds"):
        load_model(tmp_path)
    save_model(tmp_path, "tiny", params, {**info, "config": tiny_config(dtype="float8")})
    with pytest.raises(RunDirError, match="config.dtype = 'float8'"):
        load_model(tmp_path)


def test_the_dataset_a_record_names_maps_back_to_its_source():
    assert data_source("mnist") == ("mnist", None)
    assert data_source("tfds:fashion_mnist") == ("tfds:fashion_mnist", None)
    assert data_source("/data/fashion") == ("mnist", "/data/fashion")


def test_a_sweep_keeps_its_best_model_and_evaluate_reproduces_it(tmp_path, capsys):
    study = parse_spec(
        {"base": {"hidden": [8], "epochs": 1}, "grid": {"learning_rate": [0.01, 1e-4]}},
        name="t",
        source="t.toml",
    )
    records = flaxmnist.run_sweep(study, seeds=2, limit_train=LIMIT_TRAIN, out=tmp_path, quiet=True)
    info = json.loads((tmp_path / MODELS / "t" / INFO_FILE).read_text())
    best = info["config_index"]
    mine = [r for r in records if r["config_index"] == best]
    assert info["test_accuracy"] == [r["test_accuracy"] for r in mine]
    assert evaluate_test(load_model(tmp_path)) == info["test_accuracy"]
    assert main([str(tmp_path)]) == 0
    assert "equals its record exactly" in capsys.readouterr().out


def test_refit_trains_the_configuration_on_every_training_image(run_dir, capsys):
    assert main([str(run_dir), "--refit", "--quiet"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[-2].startswith(
        "refit on all 60,000 training images (2 seed(s), no selection): test accuracy "
    )
    assert out[-1].startswith("refit's ensemble of 2 seeds (apart from single models)")
    records = [json.loads(line) for line in (run_dir / "refit-tiny" / "results.jsonl").open()]
    assert [r["seed"] for r in records] == SEEDS
    config = records[0]["config"]
    assert config["validate_on"] == "test" and config["train_size"] == 60_000
    assert {k: config[k] for k in ("hidden", "learning_rate", "epochs", "batch_size")} == {
        "hidden": [8], "learning_rate": 0.01, "epochs": 1, "batch_size": 100,
    }  # fmt: skip
    assert f"{100 * records[0]['test_accuracy']:.2f} %" in out[-2]
    assert f"{100 * records[0]['ensemble']['test_accuracy']:.2f} %" in out[-1]
    # Again: the refit's run directory resumes, nothing is trained.
    model = load_model(run_dir)
    again = evaluate.refit(run_dir, model, quiet=True)
    assert [r["test_accuracy"] for r in again] == [r["test_accuracy"] for r in records]


def test_refit_asks_run_sweep_for_the_configuration_its_seeds_and_data(
    tmp_path, trained, monkeypatch
):
    params, info = trained
    config = tiny_config(dataset="/data/fashion", dtype="bfloat16")
    save_model(tmp_path, "tiny", params, {**info, "config": config, "seeds": [3, 4]})
    calls = []
    monkeypatch.setattr(evaluate, "run_sweep", lambda study, **kw: calls.append((study, kw)))
    evaluate.refit(tmp_path, load_model(tmp_path), quiet=True)
    ((study, options),) = calls
    assert study.name == "tiny" and study.varied == ()
    assert study.configs == (
        Config(hidden=(8,), dropout=(0.0,), l2=(0.0, 0.0), learning_rate=0.01, epochs=1,
               batch_size=100),
    )  # fmt: skip
    assert options == {
        "seeds": 2, "first_seed": 3, "validate_on": "test", "dataset": "mnist",
        "data_dir": "/data/fashion", "dtype": "bfloat16", "out": tmp_path / "refit-tiny",
        "quiet": True,
    }  # fmt: skip
    # Fresh seeds, ones the search never used, train into a directory of their own.
    evaluate.refit(tmp_path, load_model(tmp_path), quiet=True, seeds=3, first_seed=10)
    options = calls[-1][1]
    assert (options["seeds"], options["first_seed"]) == (3, 10)
    assert options["out"] == tmp_path / "refit-tiny-seeds-10-12"


def test_a_refit_of_a_configuration_the_test_set_selected_says_so():
    records = [{"test_accuracy": 0.5, "config": {"train_size": 60_000}}]
    assert evaluate.refit_line(records) == (
        "refit on all 60,000 training images (1 seed(s), no selection): test accuracy "
        "50.00 % (per seed: 50.00 %)"
    )
    assert evaluate.refit_line(records, "test").endswith(
        "; but the test set selected this configuration"
    )


def test_a_model_loads_without_its_parameters_and_says_it_has_none(run_dir, trained, mnist):
    (run_dir / MODELS / "tiny" / PARAMS_FILE).unlink()  # as a committed run directory has it
    with pytest.raises(RunDirError, match="params.msgpack: no such file"):
        load_model(run_dir)
    model = load_model(run_dir, params=False)
    assert model.params is None and model.info == trained[1] and model.module.hidden == (8,)
    with pytest.raises(ValueError, match="loaded without its parameters"):
        model(mnist.test_images[:5])
    with pytest.raises(ValueError, match="loaded without its parameters"):
        evaluate_test(model, mnist)


def test_a_refit_needs_only_the_configuration(run_dir, capsys):
    params = run_dir / MODELS / "tiny" / PARAMS_FILE
    params.unlink()
    assert main([str(run_dir)]) == 3  # nothing to check: an error, which names --refit
    assert capsys.readouterr().err == (
        f"python -m flaxmnist.evaluate: error: {params}: no such file: --refit retrains from "
        "the configuration alone\n"
    )
    assert main([str(run_dir), "--refit", "--seeds", "1", "--ensemble"]) == 2
    err = capsys.readouterr().err
    assert "only the refit's ensemble can be reported" in err and err.count("\n") == 1
    assert not (run_dir / "refit-tiny").exists()  # refused before anything trained
    assert main([str(run_dir), "--refit", "--quiet", "--ensemble"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("study tiny, configuration 3 (784-8-10), selected by its holdout")
    assert out[2] == (
        f"saved parameters: not in {params.parent}/ (params.msgpack), so they were not "
        "checked; the refit trains from the configuration"
    )
    assert out[3].startswith("refit on all 60,000 training images (2 seed(s), no selection)")
    assert out[4].startswith("refit's ensemble of 2 seeds") and len(out) == 5
    records = [json.loads(line) for line in (run_dir / "refit-tiny" / "results.jsonl").open()]
    assert [r["seed"] for r in records] == SEEDS
    assert records[0]["config"]["hidden"] == [8] and records[0]["config"]["train_size"] == 60_000
