import gzip
import json
import os
import struct
import subprocess
import sys

import numpy as np
import pytest

from flaxmnist import runner
from flaxmnist.runner import (
    SettingsError,
    group_configs,
    lane_bytes,
    plan_chunks,
    run_sweep,
    write_jsonl_atomic,
)
from flaxmnist.specs import Config, load_study, parse_spec
from flaxmnist.train import TrainSpec


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
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json", "results.jsonl"]
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
        "dropout_semantics": "flaxmnist",
        "loss": "cross_entropy",
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


def test_diverged_lane_is_marked_and_reported(tmp_path):
    records = run_sweep(
        study({"learning_rate": [1e30, 0.01]}, hidden=[16]), limit_train=1000, seeds=1
    )
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
    blank = run_sweep(study({"learning_rate": [0.01]}, hidden=[8]), data_dir=tmp_path, seeds=1)
    assert blank[0]["at_chance"] and not blank[0]["diverged"]
    assert blank[0]["config"]["dataset"] == str(tmp_path)
    # On MNIST, a barely trained network (loss still about ln 10) is already above chance.
    slow = run_sweep(
        study({"learning_rate": [0.0001]}, hidden=[32], epochs=2), limit_train=2000, seeds=1
    )
    assert slow[0]["val_accuracy"] > 0.13 and not slow[0]["at_chance"]


def test_bad_settings_raise_before_training():
    with pytest.raises(SettingsError, match=r"t.toml: batch_size = 500: larger than the training"):
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


def test_chunks_respect_max_lanes_and_the_memory_budget():
    configs = load_study("lr").configs
    chunks = plan_chunks([configs], seeds=3, max_lanes=10, budget=0)
    assert [len(c.lanes) for c in chunks] == [9] * 8  # whole configurations x 3 seeds
    assert all(c.seeds == (0, 1, 2) for c in chunks)
    assert [lane for c in chunks for lane in c.lanes] == [
        (i, s) for i in range(24) for s in range(3)
    ]
    # Fewer lanes than seeds: a configuration's seeds are split over calls.
    chunks = plan_chunks([configs[:2]], seeds=3, max_lanes=2, budget=0)
    assert [(c.config_indices, c.seeds) for c in chunks] == [
        ((0,), (0, 1)),
        ((0,), (2,)),
        ((1,), (0, 1)),
        ((1,), (2,)),
    ]
    spec = TrainSpec(hidden=(300,))
    per_lane = lane_bytes(spec)
    assert 5e6 < per_lane < 50e6  # 238,510 parameters: megabytes, not bytes or gigabytes
    chunks = plan_chunks([configs], seeds=3, max_lanes=None, budget=int(20.5 * per_lane))
    assert {len(c.lanes) for c in chunks} == {18}  # 20 lanes fit: 6 configurations x 3 seeds
    chunks = plan_chunks([configs], seeds=3, max_lanes=None, budget=2**40)
    assert {len(c.lanes) for c in chunks} == {runner.DEFAULT_MAX_LANES}
    assert lane_bytes(TrainSpec(hidden=(2000,))) > 4 * per_lane  # grows with the width


def test_named_studies_group_by_shape():
    assert len(group_configs(load_study("hidden").configs)) == 6  # one compile per width
    l2 = group_configs(load_study("l2").configs)
    assert [g.config_indices for g in l2] == [(0, 1), (2,)]  # 10 and 30 epochs
    # 4 shapes; the configurations without any dropout compile without dropout masks.
    three_layer = group_configs(load_study("three-layer").configs)
    assert len(three_layer) == 8
    assert sum(not g.spec.use_dropout for g in three_layer) == 4
    assert all(len(g.config_indices) == 1 for g in three_layer if not g.spec.use_dropout)
    # Accelerators: one program per shape, with dropout for all (rate 0 is exact).
    merged = group_configs(load_study("three-layer").configs, split_regularisers=False)
    assert len(merged) == 4 and all(g.spec.use_dropout for g in merged)
    assert sorted(i for g in merged for i in g.config_indices) == list(range(36))
    l2_merged = group_configs(load_study("l2").configs, split_regularisers=False)
    assert [g.spec.use_l2 for g in l2_merged] == [False, True]  # 10 and 30 epochs still apart


def test_paired_seeds_and_keras1_dropout_and_epoch_prefixes():
    # Config 1 asks for dropout 1.0 under Keras 1 semantics, which trains without dropout:
    # with paired seeds it is the same run as config 0, seed by seed. Config 2 is config 0
    # with one more epoch: its first epoch is config 0's only epoch.
    spec = parse_spec(
        {
            "base": {"hidden": [16], "epochs": 1},
            "configs": [
                {},
                {"dropout": 1.0, "dropout_semantics": "keras1"},
                {"epochs": 2},
                {"dropout": 1.0},
            ],
        },
        name="t",
        source="t.toml",
    )
    records = run_sweep(spec, seeds=2, limit_train=400)
    by = {(r["config_index"], r["seed"]): r for r in records}
    for seed in range(2):
        assert by[(1, seed)]["history"] == by[(0, seed)]["history"]
        # Another call (2 lanes instead of 6) rounds differently in the last bits; see the
        # README on vmapped lanes vs standalone runs.
        for key, values in by[(0, seed)]["history"].items():
            assert by[(2, seed)]["history"][key][:1] == pytest.approx(values, rel=1e-5)
    assert by[(0, 0)]["history"] != by[(0, 1)]["history"]
    assert by[(3, 0)]["history"] != by[(0, 0)]["history"]  # flaxmnist's 1.0 drops everything
    assert by[(1, 0)]["config"]["dropout"] == [1.0]  # the record keeps what the spec said


def test_resume_after_a_kill_trains_only_what_is_missing(tmp_path, monkeypatch):
    two_groups = study({"hidden": [[8], [12]], "learning_rate": [0.01, 0.001]})
    settings = {"seeds": 2, "limit_train": 300}
    reference = tmp_path / "reference"
    run_sweep(two_groups, out=reference, **settings)

    calls = []
    real_run_grid = runner.run_grid

    def killed_after_first_call(*args, **kwargs):
        if calls:
            raise KeyboardInterrupt  # as Ctrl-C during the second group
        calls.append(args[2])
        return real_run_grid(*args, **kwargs)

    resumed = tmp_path / "resumed"
    monkeypatch.setattr(runner, "run_grid", killed_after_first_call)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(two_groups, out=resumed, **settings)
    partial = (resumed / "results.jsonl").read_text().splitlines()
    assert len(partial) == 4  # the first group: 2 configs x 2 seeds

    trained = []

    def counting(*args, **kwargs):
        trained.append((list(args[2]), tuple(args[3])))
        return real_run_grid(*args, **kwargs)

    monkeypatch.setattr(runner, "run_grid", counting)
    records = run_sweep(two_groups, out=resumed, **settings)
    assert trained == [([2, 3], (0, 1))]  # only the second group: 2 configs x 2 seeds
    assert len(records) == 8
    assert (resumed / "results.jsonl").read_bytes() == (reference / "results.jsonl").read_bytes()
    assert (resumed / "manifest.json").read_bytes() == (reference / "manifest.json").read_bytes()

    # A finished run reruns nothing.
    trained.clear()
    run_sweep(two_groups, out=resumed, **settings)
    assert trained == []


def test_changed_settings_are_refused_not_mixed(tmp_path):
    run_sweep(study({"learning_rate": [0.01]}, hidden=[8]), out=tmp_path, seeds=1, limit_train=300)
    before = (tmp_path / "results.jsonl").read_bytes()
    with pytest.raises(SettingsError, match=r"other settings \(changed: seeds\)"):
        run_sweep(
            study({"learning_rate": [0.01]}, hidden=[8]), out=tmp_path, seeds=2, limit_train=300
        )
    with pytest.raises(SettingsError, match="changed: studies"):
        run_sweep(
            study({"learning_rate": [0.02]}, hidden=[8]), out=tmp_path, seeds=1, limit_train=300
        )
    assert (tmp_path / "results.jsonl").read_bytes() == before
    stranger = tmp_path / "other"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(SettingsError, match="holds no flaxmnist manifest"):
        run_sweep(study({"learning_rate": [0.01]}), out=stranger, seeds=1, limit_train=300)


def test_a_run_from_before_a_new_config_field_still_resumes(tmp_path):
    spec = study({"learning_rate": [0.01]}, hidden=[8])
    run_sweep(spec, out=tmp_path, seeds=1, limit_train=300)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    for config in manifest["settings"]["studies"][0]["configs"]:
        del config["loss"]  # as written by a flaxmnist without the loss option
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    records = run_sweep(spec, out=tmp_path, seeds=1, limit_train=300)  # resumes, trains nothing
    assert len(records) == 1
    with pytest.raises(SettingsError, match="changed: studies"):
        run_sweep(
            study({"learning_rate": [0.01]}, hidden=[8], loss="keras1"),
            out=tmp_path,
            seeds=1,
            limit_train=300,
        )


def test_sharded_over_two_cpu_devices_equals_one_device(tmp_path):
    """On 2 devices: 3 configurations x 3 seeds shard the configurations (padded to 4); a
    lone configuration shards its 3 seeds (padded to 4). The padding is discarded and the
    numbers equal one device's."""
    spec = tmp_path / "t.toml"
    spec.write_text(
        'description = "sharding"\n[base]\nhidden = [16]\nepochs = 2\n'
        "[[configs]]\nlearning_rate = 0.01\n[[configs]]\nlearning_rate = 0.003\n"
        "[[configs]]\nlearning_rate = 0.001\n[[configs]]\nhidden = [8]\n"
    )
    results = {}
    for devices in (1, 2):
        out = tmp_path / f"devices-{devices}"
        command = [sys.executable, "-m", "flaxmnist.sweep", str(spec), "--seeds", "3"]
        command += ["--limit-train", "600", "--out", str(out), "--quiet", "--no-compile-cache"]
        command += ["--cpu-devices", str(devices)]
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        subprocess.run(command, check=True, env=env, capture_output=True, timeout=300)
        results[devices] = [json.loads(line) for line in (out / "results.jsonl").open()]
    one, two = results[1], results[2]
    lanes = [(r["config_index"], r["seed"]) for r in two]
    assert lanes == [(i, s) for i in range(4) for s in range(3)]
    # Per-device matrix products block differently: equal up to float32 rounding, which may
    # flip the argmax of one near-tied image: accuracies may differ by one image at most.
    one_image = {"train_accuracy": 1 / 600, "val_accuracy": 1e-4, "test_accuracy": 1e-4}
    for a, b in zip(one, two, strict=True):
        for key, values in a["history"].items():
            tolerance = one_image.get(key, 0) + 1e-6
            assert b["history"][key] == pytest.approx(values, rel=1e-4, abs=tolerance), key


def test_a_rerun_compiles_nothing_new(tmp_path):
    spec = study({"learning_rate": [0.01, 0.001]}, hidden=[8])
    cache = tmp_path / "cache"
    command = [sys.executable, "-m", "flaxmnist.sweep", "SPEC", "--seeds", "1"]
    command += ["--limit-train", "300", "--quiet", "--compile-cache", str(cache)]
    spec_file = tmp_path / "t.toml"
    spec_file.write_text(
        "[base]\nhidden = [8]\nepochs = 1\n[grid]\nlearning_rate = [0.01, 0.001]\n"
    )
    command[3] = str(spec_file)
    del spec
    subprocess.run([*command, "--out", str(tmp_path / "a")], check=True, capture_output=True)
    first = sorted(p.name for p in cache.iterdir())
    assert any(name.startswith("jit_run_epoch") for name in first)
    subprocess.run([*command, "--out", str(tmp_path / "b")], check=True, capture_output=True)
    assert sorted(p.name for p in cache.iterdir()) == first


def test_groups_that_differ_only_in_epochs_share_one_compile():
    spec = parse_spec(
        {"base": {"hidden": [7], "epochs": 1}, "configs": [{}, {"epochs": 2}]},
        name="t",
        source="t.toml",
    )
    runner._COMPILED.clear()
    records = run_sweep(spec, seeds=1, limit_train=300)
    assert [len(r["history"]["val_accuracy"]) for r in records] == [1, 2]  # two calls
    assert len(runner._COMPILED) == 1  # one program pair
