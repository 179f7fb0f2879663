import gzip
import json
import struct

import numpy as np
import pytest

from flaxmnist.runner import group_configs, run_sweep, write_jsonl_atomic
from flaxmnist.specs import Config, parse_spec


def study(grid, **base):
    return parse_spec({"base": {"epochs": 1, **base}, "grid": grid}, name="t", source="t.toml")


def test_groups_follow_shapes_in_first_seen_order():
    configs = [
        Config(hidden=(300,)),
        Config(hidden=(500,)),
        Config(hidden=(300,), epochs=3),
        Config(hidden=(300,), learning_rate=0.1),
    ]
    groups = group_configs(configs)
    assert [g.config_indices for g in groups] == [(0, 3), (1,), (2,)]
    assert groups[1].spec.hidden == (500,)


def test_run_sweep_records_and_results_file(tmp_path):
    records = run_sweep(
        study({"hidden": [[16], [8, 8]], "learning_rate": [0.01, 0.001]}),
        seeds=2,
        limit_train=300,
        out=tmp_path,
    )
    assert len(records) == 8
    assert [(r["config_index"], r["seed"]) for r in records] == [
        (i, s) for i in range(4) for s in range(2)
    ]
    first = records[0]
    assert first["study"] == "t"
    assert first["config"] == {
        "hidden": [16],
        "dropout": [0.0],
        "learning_rate": 0.01,
        "l2": [0.0, 0.0],
        "weight_decay": 0.0,
        "epochs": 1,
        "batch_size": 200,
        "dataset": "mnist",
        "validate_on": "holdout",
        "train_size": 300,
    }
    assert records[4]["config"]["hidden"] == [8, 8] and records[4]["config"]["l2"] == [0, 0, 0]
    assert set(first["history"]) == {
        "train_loss",
        "train_accuracy",
        "val_loss",
        "val_accuracy",
        "test_loss",
        "test_accuracy",
    }
    assert first["val_accuracy"] == first["history"]["val_accuracy"][-1]
    assert records[0]["val_accuracy"] != records[1]["val_accuracy"]  # seeds differ
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == records
    assert [p.name for p in tmp_path.iterdir()] == ["results.jsonl"]  # no temp files left


def test_diverged_lane_is_marked_and_reported(tmp_path):
    records = run_sweep(study({"learning_rate": [1e30, 0.01]}, hidden=[16]), limit_train=1000)
    assert records[0]["diverged"] and not records[1]["diverged"]
    assert records[0]["history"]["val_loss"][-1] is None  # NaN is written as JSON null
    assert 0 <= records[0]["val_accuracy"] <= 0.2
    assert records[1]["val_accuracy"] > 0.3  # 5 steps of a 16-unit net: learning, far above 0.1


def write_idx(path, array):
    magic = 2051 if array.ndim == 3 else 2049
    header = struct.pack(f">{1 + array.ndim}I", magic, *array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes()))


def test_a_network_that_cannot_beat_the_majority_class_is_at_chance(tmp_path):
    # Blank images carry no information: every input gets the same prediction, so the
    # accuracy is at most the most common class's share, whatever the training did.
    rng = np.random.default_rng(0)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((10_400, 28, 28)))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", rng.integers(0, 10, 10_400))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((100, 28, 28)))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", rng.integers(0, 10, 100))
    blank = run_sweep(study({"learning_rate": [0.01]}, hidden=[8]), data_dir=tmp_path)
    assert blank[0]["at_chance"] and not blank[0]["diverged"]
    assert blank[0]["config"]["dataset"] == str(tmp_path)
    # On MNIST, a barely trained network (loss still about ln 10) is already above chance.
    slow = run_sweep(study({"learning_rate": [0.0001]}, hidden=[32], epochs=2), limit_train=2000)
    assert slow[0]["val_accuracy"] > 0.13 and not slow[0]["at_chance"]


def test_bad_settings_raise_before_training():
    with pytest.raises(ValueError, match="batch_size 500 is larger than the training set"):
        run_sweep(study({"learning_rate": [0.001]}, batch_size=500), limit_train=100)
    with pytest.raises(ValueError, match="seeds"):
        run_sweep(study({"learning_rate": [0.001]}), seeds=0)


def test_write_jsonl_atomic_refuses_nan_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "results.jsonl"
    write_jsonl_atomic(path, [{"a": 1}])
    with pytest.raises(ValueError):
        write_jsonl_atomic(path, [{"a": float("nan")}])
    assert path.read_text() == '{"a": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["results.jsonl"]
