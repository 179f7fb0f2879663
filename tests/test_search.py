"""Search strategies on tiny data: halving's rungs, PBT's copies, the budget counted exactly,
and resume after a SIGKILL giving the results of an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from flaxmnist import RunStats, SettingsError, run_sweep
from flaxmnist.run.plan import train_spec_of, within_budget
from flaxmnist.search.halving import rung_epochs
from flaxmnist.search.pbt import explore, pbt_epochs
from flaxmnist.specs.config import Config, parse_spec
from flaxmnist.studies import parse_study

TRAIN = 600


def search_study(strategy, samples=4, epochs=3, **tables):
    document = {
        "strategy": strategy,
        "samples": samples,
        "seed": 0,
        "base": {"hidden": [8], "epochs": epochs},
        "search": {
            "learning_rate": {"log_uniform": [1e-3, 3e-2]},
            "dropout": {"uniform": [0.0, 0.3]},
        },
        **tables,
    }
    return parse_study(document, "s", "s.toml")


def mean_val(records, config, epoch):
    return np.mean(
        [r["history"]["val_accuracy"][epoch - 1] for r in records if r["config_index"] == config]
    )


def flops_by_hand(hidden, train_size):
    sizes = [784, *hidden, 10]
    return 6 * train_size * sum(a * b for a, b in zip(sizes, sizes[1:], strict=False))


def test_rungs_and_pbt_steps():
    assert rung_epochs(1, 3, 27) == [1, 3, 9, 27]
    assert rung_epochs(2, 3, 20) == [2, 6, 18, 20]
    assert pbt_epochs(2, 7) == [2, 4, 6]


def test_halving_keeps_the_best_half_at_each_rung_and_counts_compute(tmp_path):
    study = search_study("halving", halving={"eta": 2, "min_epochs": 1})
    records = run_sweep(study, seeds=2, limit_train=TRAIN, out=tmp_path, quiet=True)
    epochs = {r["config_index"]: len(r["history"]["val_accuracy"]) for r in records}
    assert sorted(epochs.values()) == [1, 1, 2, 3]  # 4 -> 2 after epoch 1 -> 1 after epoch 2
    for rung in (1, 2):
        survivors = [c for c in epochs if epochs[c] > rung]
        stopped = [c for c in epochs if epochs[c] == rung]
        assert min(mean_val(records, c, rung) for c in survivors) >= max(
            mean_val(records, c, rung) for c in stopped
        )
    for record in records:
        trained = len(record["history"]["val_accuracy"])
        assert record["compute"] == trained * flops_by_hand([8], TRAIN)
        assert record["search"] == {"strategy": "halving"}
    winner = max(epochs, key=epochs.get)
    model = json.loads((tmp_path / "models" / "s" / "model.json").read_text())
    assert model["config_index"] == winner
    assert not (tmp_path / "search").exists()  # the checkpoint goes when done


def test_halving_continues_each_lane_where_it_stopped():
    """The survivor's three epochs equal a plain run of its configuration (up to the rounding
    of grids of other shapes): a rung gathers the lanes' state, it does not restart them."""
    study = search_study("halving", halving={"eta": 2, "min_epochs": 1})
    records = run_sweep(study, seeds=2, limit_train=TRAIN, quiet=True)
    winner = max(records, key=lambda r: len(r["history"]["val_accuracy"]))["config_index"]
    plain = run_sweep(
        parse_spec({"configs": [study.configs[winner].to_dict()]}, name="s", source="alone"),
        seeds=2,
        limit_train=TRAIN,
        quiet=True,
    )
    mine = [r for r in records if r["config_index"] == winner]
    for searched, straight in zip(mine, plain, strict=True):
        np.testing.assert_allclose(
            searched["history"]["val_loss"], straight["history"]["val_loss"], rtol=1e-4
        )


def test_a_budget_stops_a_search_before_the_epoch_that_would_pass_it(tmp_path):
    per_epoch = flops_by_hand([8], TRAIN)
    study = search_study("pbt", pbt={"interval": 1, "fraction": 0.5})
    budget = 4 * 2 * per_epoch * 2 + per_epoch  # two epochs of 4 configs x 2 seeds, and a bit
    with pytest.warns(match=r"budget of .* is spent: the search stops after epoch 2"):
        records = run_sweep(
            study, seeds=2, limit_train=TRAIN, budget=budget, out=tmp_path, quiet=True
        )
    spent = sum(r["compute"] for r in records)
    assert spent == 4 * 2 * 2 * per_epoch <= budget
    assert {len(r["history"]["val_accuracy"]) for r in records} == {2}
    assert json.loads((tmp_path / "manifest.json").read_text())["settings"]["budget"] == budget


def test_a_budget_below_one_epoch_of_a_search_trains_nothing_and_says_so(tmp_path):
    """The first epoch of every lane would pass it: no record (it crashed on the empty
    history before this was mended)."""
    lane = 2 * flops_by_hand([8], TRAIN)
    study = search_study("halving", samples=4, halving={"eta": 2})
    with pytest.warns(match=r"the search stops after epoch 0"):
        records = run_sweep(study, seeds=2, limit_train=TRAIN, quiet=True, budget=3 * lane)
    assert records == []


def test_a_budget_keeps_the_grid_configurations_that_fit():
    configs = tuple(Config(hidden=(8,), epochs=2, learning_rate=lr) for lr in (0.1, 0.01, 0.001))
    grid = parse_spec({"configs": [c.to_dict() for c in configs]}, name="g", source="g")
    specs = [train_spec_of(c) for c in grid.configs]
    one = 2 * 2 * flops_by_hand([8], 1000)  # 2 seeds x 2 epochs
    with pytest.warns(match=r"holds 2 of its 3 configurations"):
        kept, left = within_budget(grid, specs, 2, 2 * one + one // 2, 2 * one + one // 2, 1000)
    assert (kept, left) == (2, one // 2)
    with pytest.raises(SettingsError, match=r"first configuration needs"):
        within_budget(grid, specs, 2, one - 1, one - 1, 1000)


def test_pbt_copies_the_top_onto_the_bottom_and_perturbs(tmp_path):
    study = search_study("pbt", pbt={"interval": 1, "fraction": 0.5, "resample_probability": 0})
    records = run_sweep(study, seeds=2, limit_train=TRAIN, out=tmp_path, quiet=True)
    by_config = {r["config_index"]: r for r in records if r["seed"] == 0}
    steps = {}
    for config, record in by_config.items():
        for event in record["search"]["lineage"]:
            steps.setdefault(event["epoch"], []).append((config, event))
    assert sorted(steps) == [1, 2]
    for epoch, events in steps.items():
        assert len(events) == 2  # the bottom half of 4
        losers = {config for config, _ in events}
        winners = {event["copied_from"] for _, event in events}
        assert not losers & winners
        # The losers ranked below every winner at that epoch.
        assert max(mean_val(records, c, epoch) for c in losers) <= min(
            mean_val(records, c, epoch) for c in winners
        )
    for record in by_config.values():
        assert len(record["history"]["val_accuracy"]) == 3
        assert record["search"]["initial"]["learning_rate"] == (
            study.configs[record["config_index"]].learning_rate
        )


def test_explore_multiplies_by_0_8_or_1_25_within_the_prior_or_resamples():
    search = replace_probability(search_study("pbt").search, 0.0)
    config = Config(hidden=(8,), learning_rate=0.01, dropout=(0.1,))
    rng = np.random.default_rng(0)
    factors = set()
    for _ in range(20):
        new = explore(config, search, rng)
        factors.add(round(new.learning_rate / 0.01, 6))
        assert new.dropout[0] in (0.08, 0.125)
    assert factors == {0.8, 1.25}
    top = Config(hidden=(8,), learning_rate=0.03, dropout=(0.3,))
    assert explore(top, search, np.random.default_rng(1)).learning_rate <= 0.03
    resampled = replace_probability(search, 1.0)
    drawn = {explore(config, resampled, rng).learning_rate for _ in range(10)}
    assert len(drawn) == 10 and all(1e-3 <= x <= 3e-2 for x in drawn)


def replace_probability(search, probability):
    from dataclasses import replace

    return replace(search, resample_probability=probability)


def cli(spec_path, out, cache, *extra):
    return [
        sys.executable, "-m", "flaxmnist.sweep", str(spec_path), "--seeds", "2",
        "--limit-train", str(TRAIN), "--quiet", "--out", str(out), "--compile-cache", str(cache),
        *extra,
    ]  # fmt: skip


SPACE = """samples = 4
[base]
hidden = [8]
epochs = 4
[search]
learning_rate = { log_uniform = [1e-3, 3e-2] }
"""
#: The halving search also augments and averages: its checkpoints hold EMA states, and
#: its static augmentation goes through the checkpoint's TrainSpec.
AUGMENTED = SPACE.replace("epochs = 4\n", "epochs = 4\naugment_shift = 1\nema_decay = 0.9\n")
SPECS = {
    "halving": f'strategy = "halving"\n{AUGMENTED}[halving]\neta = 2\n',
    "pbt": f'strategy = "pbt"\n{SPACE}dropout = {{ uniform = [0.0, 0.3] }}\n'
    "[pbt]\ninterval = 1\nfraction = 0.5\n",
    # Rounds of 3 configurations (--max-lanes 6, 2 seeds): lanes are refilled as rungs stop
    # configurations, and BOHB's model is built again from the records on resume.
    "bohb": f'strategy = "bohb"\n{SPACE.replace("samples = 4", "samples = 9")}'
    "dropout = { uniform = [0.0, 0.3] }\n[halving]\neta = 2\n",
    "hyperband": f'strategy = "hyperband"\n{SPACE.replace("samples = 4", "samples = 9")}'
    "[halving]\neta = 2\n",
}
#: Where the killed run is killed: once its checkpoint is at this epoch or later.
KILL_AT = {"halving": 0, "pbt": 0, "bohb": 2, "hyperband": 0}
EXTRA = {"bohb": ("--max-lanes", "6"), "hyperband": ("--max-lanes", "6")}


def checkpoint_epoch(state):
    try:
        return json.loads(state.read_text())["epoch"]
    except (OSError, ValueError):
        return -1


@pytest.mark.parametrize(
    "strategy",
    [
        "halving",
        pytest.param("bohb", marks=pytest.mark.heavy),  # refill and a model rebuilt: 40 s
        pytest.param("pbt", marks=pytest.mark.heavy),
        pytest.param("hyperband", marks=pytest.mark.heavy),
    ],
)
def test_a_search_killed_after_a_checkpoint_resumes_to_the_same_results(strategy, tmp_path):
    spec = tmp_path / f"{strategy}.toml"
    spec.write_text(SPECS[strategy])
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    cache, extra = tmp_path / "cache", EXTRA.get(strategy, ())
    whole = subprocess.run(cli(spec, tmp_path / "whole", cache, *extra), env=env, timeout=600)
    assert whole.returncode == 0
    out = tmp_path / "killed"
    state = out / "search" / strategy / "state.json"
    process = subprocess.Popen(cli(spec, out, cache, *extra), env=env)
    deadline = time.monotonic() + 300
    while (
        checkpoint_epoch(state) < KILL_AT[strategy]
        and process.poll() is None
        and time.monotonic() < deadline
    ):
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before its checkpoint"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    epoch = json.loads(state.read_text())["epoch"]
    assert epoch >= KILL_AT[strategy]  # and it was still running: killed mid-search
    again = subprocess.run(cli(spec, out, cache, *extra), env=env, timeout=600)
    assert again.returncode == 0
    assert (out / "results.jsonl").read_text() == (tmp_path / "whole" / "results.jsonl").read_text()
    assert (out / "models" / strategy / "params.msgpack").read_bytes() == (
        tmp_path / "whole" / "models" / strategy / "params.msgpack"
    ).read_bytes()


def test_a_checkpoint_left_after_the_search_finished_is_removed_not_resumed(tmp_path, monkeypatch):
    """A run killed after its last records and before it removed the checkpoint: the rerun
    skips the study (it trained it again, from the last rung, before this was mended)."""
    from flaxmnist.run.search_state import SearchState

    study = search_study("halving", halving={"eta": 2})
    keep = SearchState.remove
    monkeypatch.setattr(SearchState, "remove", staticmethod(lambda out, name: None))
    whole = run_sweep(study, seeds=2, limit_train=TRAIN, out=tmp_path, quiet=True)
    assert (tmp_path / "search" / "s" / "state.json").exists()
    written = (tmp_path / "results.jsonl").read_bytes()
    monkeypatch.setattr(SearchState, "remove", keep)
    stats = RunStats()
    again = run_sweep(study, seeds=2, limit_train=TRAIN, out=tmp_path, quiet=True, stats=stats)
    assert again == whole and (tmp_path / "results.jsonl").read_bytes() == written
    assert stats.lane_epochs == 0  # nothing trained again
    assert not (tmp_path / "search").exists()
