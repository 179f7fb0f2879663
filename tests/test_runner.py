import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest
from jax.errors import JaxRuntimeError

from flaxmnist import RunStats, SettingsError, run_sweep
from flaxmnist.core.data import load_mnist, make_splits
from flaxmnist.core.train import TrainSpec, make_hyperparams, make_train
from flaxmnist.errors import OutOfMemoryError
from flaxmnist.run.grid import LaneGrid
from flaxmnist.run.progress import Progress
from flaxmnist.specs.config import Config, parse_spec


def study(grid, **base):
    return parse_spec({"base": {"epochs": 1, **base}, "grid": grid}, name="t", source="t.toml")


def test_run_sweep_records_and_results_file(tmp_path):
    records = run_sweep(
        study({"hidden": [[16], [8, 8]], "learning_rate": [0.01, 0.001]}),
        seeds=2,
        limit_train=300,
        out=tmp_path,
    )
    listed = sorted(p.name for p in tmp_path.iterdir())
    kept = ["manifest.json", "models", "optuna.db", "predictions", "results.jsonl"]
    assert listed == [*kept, "timing.json"]  # no .lock once the run has ended
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
        "input_dropout": 0.0,
        "max_norm": 0.0,
        "lr_schedule": "constant",
        "lr_decay": 1.0,
        "warmup_epochs": 0.0,
        "augment_shift": 0,
        "augment_rotate": 0.0,
        "augment_scale": 0.0,
        "augment_elastic_alpha": 0.0,
        "augment_elastic_sigma": 4.0,
        "ema_decay": 0.0,
        "label_smoothing": 0.0,
        "parameterization": "standard",
        "mup_base_width": 300,
        "dataset": "mnist",
        "validate_on": "holdout",
        "train_size": 300,
        "dtype": "float32",
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
    too_few = r"^limit_train=100: 100 training images, fewer than one batch of study t \(batch_s"
    with pytest.raises(SettingsError, match=too_few):
        run_sweep(study({"learning_rate": [0.001]}, batch_size=500), limit_train=100)
    with pytest.raises(SettingsError, match="^seeds=0: must be >= 1$"):
        run_sweep(study({"learning_rate": [0.001]}), seeds=0)
    with pytest.raises(SettingsError, match="^dtype='float16': expected one of"):
        run_sweep(study({"learning_rate": [0.001]}), dtype="float16")
    with pytest.raises(SettingsError, match="^limit_train=50001: must be between 1 and 50000"):
        run_sweep(study({"learning_rate": [0.001]}), limit_train=50001)


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
        # docs/design.md on vmapped lanes vs standalone runs.
        for key, values in by[(0, seed)]["history"].items():
            assert by[(2, seed)]["history"][key][:1] == pytest.approx(values, rel=1e-5)
    assert by[(0, 0)]["history"] != by[(0, 1)]["history"]
    assert by[(3, 0)]["history"] != by[(0, 0)]["history"]  # flaxmnist's 1.0 drops everything
    assert by[(1, 0)]["config"]["dropout"] == [1.0]  # the record keeps what the spec said


class KilledAfterCalls(Progress):
    """Progress hooks that record each call and raise KeyboardInterrupt (as Ctrl-C would)
    when the call after the first ``calls`` starts."""

    def __init__(self, calls=None):
        self.calls, self.started = calls, []

    def call_started(self, label, epochs):
        if self.calls is not None and len(self.started) == self.calls:
            raise KeyboardInterrupt
        self.started.append(label)


def test_resume_after_a_kill_trains_only_what_is_missing(tmp_path):
    two_groups = study({"hidden": [[8], [12]], "learning_rate": [0.01, 0.001]})
    settings = {"seeds": 2, "limit_train": 300}
    reference = tmp_path / "reference"
    run_sweep(two_groups, out=reference, **settings)

    resumed = tmp_path / "resumed"
    with pytest.raises(KeyboardInterrupt):
        run_sweep(two_groups, out=resumed, progress=KilledAfterCalls(1), **settings)
    partial = (resumed / "results.jsonl").read_text().splitlines()
    assert len(partial) == 4  # the first group: 2 configs x 2 seeds

    stats, progress = RunStats(), KilledAfterCalls()
    records = run_sweep(two_groups, out=resumed, stats=stats, progress=progress, **settings)
    assert progress.started == ["t 2/2 [784-12-10, 4 lanes]"]  # only the second group
    assert (stats.calls, stats.lane_epochs) == (1, 4)
    assert len(records) == 8
    assert (resumed / "results.jsonl").read_bytes() == (reference / "results.jsonl").read_bytes()
    manifest = json.loads((resumed / "manifest.json").read_text())
    reference_manifest = json.loads((reference / "manifest.json").read_text())
    for key in ("fingerprint", "settings"):
        assert manifest[key] == reference_manifest[key]
    assert [a["status"] for a in manifest["attempts"]] == ["interrupted", "finished"]
    assert [a["lane_epochs"] for a in manifest["attempts"]] == [4, 4]

    # A finished run reruns nothing.
    stats = RunStats()
    run_sweep(two_groups, out=resumed, stats=stats, **settings)
    assert stats.calls == 0


REPRODUCTION = Path(__file__).resolve().parent.parent / "reproduction"


@pytest.mark.parametrize(
    ("run_dir", "spec", "protocol"),
    [
        ("all-holdout", "all", "holdout"),
        ("all-test", "all", "test"),  # written before the loss key existed
        ("keras1-loss-test", "reproduction/keras1-loss.toml", "test"),
        ("hidden10-seeds-test", "reproduction/hidden10-seeds.toml", "test"),
    ],
)
def test_the_committed_reproduction_runs_still_resume(run_dir, spec, protocol, tmp_path):
    """Their manifests predate ``dtype`` (and some ``loss``): the same command finds them
    complete, trains nothing, and returns their records, the new fields at their defaults."""
    out = tmp_path / run_dir
    shutil.copytree(REPRODUCTION / run_dir, out)
    seeds = json.loads((out / "manifest.json").read_text())["settings"]["seeds"]
    spec = spec if "/" not in spec else REPRODUCTION.parent / spec
    stats = RunStats()
    records = run_sweep(spec, seeds=seeds, validate_on=protocol, out=out, stats=stats)
    assert stats.calls == 0
    lines = (REPRODUCTION / run_dir / "results.jsonl").read_text().splitlines()
    assert len(records) == len(lines)
    for record, line in zip(records, lines, strict=True):
        old = json.loads(line)
        assert record["history"] == old["history"]
        assert record["config"] == {**Config().to_dict(), "dtype": "float32", **old["config"]}


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
    stats = RunStats()
    records = run_sweep(spec, out=tmp_path, seeds=1, limit_train=300, stats=stats)
    assert len(records) == 1 and stats.calls == 0  # resumed: nothing trained
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
        command += ["--limit-train", "600", "--out", str(out), "--no-compile-cache"]
        command += ["--cpu-devices", str(devices)]
        env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
        run = subprocess.run(command, check=True, env=env, capture_output=True, timeout=300)
        assert f"{devices} device(s))" in run.stderr.decode()  # the closing summary line
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
    stats = RunStats()
    records = run_sweep(spec, seeds=1, limit_train=300, stats=stats)
    assert [len(r["history"]["val_accuracy"]) for r in records] == [1, 2]  # two calls
    assert stats.calls == 2 and stats.programs_compiled + stats.programs_reused == 2
    assert stats.programs_reused >= 1  # the second call reuses the first one's programs


def test_a_record_equals_a_standalone_run_with_l2_weight_decay_and_dropout():
    """Against ``make_train`` called by hand: the runner must pass every hyperparameter
    (a weight decay dropped to 0, or one layer's L2 for both, would show)."""
    spec = parse_spec(
        {
            "base": {"hidden": [16], "epochs": 2, "learning_rate": 0.003},
            "configs": [{"l2": [0.001, 0.004], "weight_decay": 1.0, "dropout": 0.2}],
        },
        name="t",
        source="t.toml",
    )
    (record,) = run_sweep(spec, seeds=1, limit_train=600)
    train_spec = TrainSpec(hidden=(16,), epochs=2)
    hparams = make_hyperparams(train_spec, 0.003, l2=[0.001, 0.004], weight_decay=1.0, dropout=0.2)
    data = make_splits(load_mnist(), limit_train=600)
    _, history = jax.jit(make_train(train_spec))(hparams, jax.random.key(0), data)
    for key, values in record["history"].items():
        assert values == pytest.approx(history[key].tolist(), rel=2e-5), key


def test_a_lane_that_cannot_fit_is_refused_before_anything_runs(tmp_path):
    huge = study({"learning_rate": [0.01]}, hidden=[2_000_000])
    with pytest.raises(
        OutOfMemoryError, match=r"one lane of 784-2000000-10 needs about \d+\.\d GiB"
    ):
        run_sweep(huge, out=tmp_path / "run", seeds=1, limit_train=300, memory_budget=2**33)
    assert not (tmp_path / "run").exists()


def out_of_memory_above(monkeypatch, lanes=None, hidden=None):
    """Make ``LaneGrid.init`` fail as XLA does when a grid has more than ``lanes`` lanes (or
    always, for a grid of width ``hidden``)."""
    real_init = LaneGrid.init

    def init(grid):
        too_many = lanes is not None and grid.num_configs * len(grid.seeds) > lanes
        if too_many or grid.spec.hidden == hidden:
            raise JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 6272000000 bytes.")
        real_init(grid)

    monkeypatch.setattr(LaneGrid, "init", init)


def test_a_call_that_runs_out_of_memory_is_retried_with_half_its_lanes(tmp_path, monkeypatch):
    spec = study({"learning_rate": [0.01, 0.02, 0.03, 0.04, 0.05]}, hidden=[8])
    reference = run_sweep(spec, seeds=2, limit_train=300, max_lanes=2)
    out_of_memory_above(monkeypatch, lanes=3)
    stats, progress = RunStats(), KilledAfterCalls()
    with pytest.warns(UserWarning) as caught:
        records = run_sweep(
            spec, seeds=2, limit_train=300, out=tmp_path, stats=stats, progress=progress
        )
    assert [str(w.message) for w in caught if issubclass(w.category, UserWarning)] == [
        "t: out of memory with 10 lanes of 784-8-10 per call; trying 5",
        "t: out of memory with 4 lanes of 784-8-10 per call; trying 2",
    ]
    assert progress.started == [  # the calls tried, numbered as the plan was known then
        "t 1/1 [784-8-10, 10 lanes]", "t 1/3 [784-8-10, 4 lanes]",
        "t 1/4 [784-8-10, 2 lanes]", "t 2/4 [784-8-10, 2 lanes]",
        "t 3/5 [784-8-10, 2 lanes]", "t 4/5 [784-8-10, 2 lanes]", "t 5/5 [784-8-10, 2 lanes]",
    ]  # fmt: skip
    assert records == reference  # the same lanes, the same numbers
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 10


def test_out_of_memory_at_one_lane_stops_and_keeps_what_finished(tmp_path, monkeypatch):
    two_groups = study({"hidden": [[8], [12]], "learning_rate": [0.01]})
    out_of_memory_above(monkeypatch, hidden=(12,))
    with pytest.warns(UserWarning), pytest.raises(OutOfMemoryError, match=r"one lane of 784-12-10"):
        run_sweep(two_groups, seeds=2, limit_train=300, out=tmp_path)
    kept = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [(r["config"]["hidden"], r["seed"]) for r in kept] == [([8], 0), ([8], 1)]
    (attempt,) = json.loads((tmp_path / "manifest.json").read_text())["attempts"]
    assert attempt["status"].startswith("failed: t: out of memory training one lane")


def test_first_seed_trains_fresh_seeds_and_is_part_of_the_settings(tmp_path):
    spec = study({"learning_rate": [0.01]}, hidden=[8])
    fresh = run_sweep(spec, seeds=2, first_seed=5, limit_train=300, out=tmp_path, quiet=True)
    assert [r["seed"] for r in fresh] == [5, 6]
    assert json.loads((tmp_path / "manifest.json").read_text())["settings"]["first_seed"] == 5
    # Seed 5 is the key jax.random.key(5) whichever seeds run beside it.
    alone = run_sweep(spec, seeds=1, first_seed=5, limit_train=300, quiet=True)
    assert alone[0]["history"] == fresh[0]["history"]
    first = run_sweep(spec, seeds=1, limit_train=300, quiet=True)
    assert first[0]["history"] != fresh[0]["history"]
    with pytest.raises(SettingsError, match="first_seed=-1: must be >= 0"):
        run_sweep(spec, first_seed=-1, limit_train=300)


def test_padded_widths_train_in_one_program_count_their_own_compute_and_keep_a_true_model(
    tmp_path,
):
    from flaxmnist import load_model
    from flaxmnist.evaluate import evaluate_test
    from flaxmnist.run.plan import train_flops

    grid = {"hidden": [[8], [24], [16]], "learning_rate": [0.01]}
    stats = RunStats()
    records = run_sweep(
        study(grid), seeds=1, limit_train=300, out=tmp_path, pad_widths=True, stats=stats
    )
    assert stats.programs_compiled + stats.programs_reused == 1  # one program for 3 widths
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["attempts"][-1]["pad_widths"] is True
    for record in records:  # the compute of its own widths, not of the padded 24
        own = TrainSpec(hidden=tuple(record["config"]["hidden"]))
        assert record["compute"] == train_flops(own, 300)
    model = load_model(tmp_path)  # saved at its true widths
    best = [r for r in records if r["config_index"] == model.info["config_index"]]
    assert model.module.hidden == tuple(best[0]["config"]["hidden"])
    (accuracy,) = evaluate_test(model)
    assert abs(accuracy - best[0]["test_accuracy"]) <= 1 / 10_000  # rounding: one image


def test_settings_and_keywords_run_the_same_and_a_misspelt_keyword_is_refused():
    from flaxmnist import SweepSettings

    quick = SweepSettings(epochs=1, seeds=1, limit_train=400, quiet=True)
    with pytest.raises(TypeError, match="'limit_trian'.*limit_train"):
        run_sweep("l2", quick, limit_trian=400)
    by_settings = run_sweep("l2", quick, seeds=2)  # a keyword overrides one field
    by_keywords = run_sweep("l2", epochs=1, seeds=2, limit_train=400, quiet=True)
    assert len(by_settings) == 6
    assert json.dumps(by_settings) == json.dumps(by_keywords)
