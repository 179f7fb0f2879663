"""Learned search on tiny data: rounds of lanes proposed by Optuna's samplers, each
configuration told its seed-mean holdout accuracy, the same proposals from the same seed,
a resume after SIGKILL equal to an uninterrupted run, the budget, halving inside rounds,
and two objectives."""

import json
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from flaxmnist import SettingsError, run_sweep
from flaxmnist.report.__main__ import main as report_main
from flaxmnist.search.sampler import Proposer
from flaxmnist.search.trials import pareto_front
from flaxmnist.studies import parse_study

TRAIN = 600
LANES = ["--max-lanes", "6"]  # 2 seeds: rounds of 3 configurations


def learned(strategy="tpe", samples=7, **tables):
    document = {
        "strategy": strategy,
        "samples": samples,
        "seed": 0,
        "sampler": {"n_startup_trials": 3} if strategy != "nsga2" else {},
        "base": {"hidden": [8], "epochs": 2},
        "search": {
            "learning_rate": {"log_uniform": [1e-3, 3e-2]},
            "dropout": {"uniform": [0.0, 0.3]},
        },
        **tables,
    }
    return parse_study(document, "s", "s.toml")


def run(study, **kwargs):
    return run_sweep(study, seeds=2, limit_train=TRAIN, quiet=True, max_lanes=6, **kwargs)


def seed_mean(records, index, key="val_accuracy"):
    return float(np.mean([r[key] for r in records if r["config_index"] == index]))


@pytest.fixture
def told(monkeypatch):
    """Every outcome a ``Proposer`` is told, by trial number."""
    outcomes = {}
    tell = Proposer.tell

    def spy(self, given):
        outcomes.update(given)
        return tell(self, given)

    monkeypatch.setattr(Proposer, "tell", spy)
    return outcomes


def test_rounds_of_one_calls_lanes_each_told_its_seed_mean_holdout_accuracy(tmp_path, told):
    records = run(learned(), out=tmp_path)
    assert len(records) == 7 * 2
    rounds = [r["search"]["round"] for r in records if r["seed"] == 0]
    assert rounds == [0, 0, 0, 1, 1, 1, 2]  # 6 lanes / 2 seeds, the last round smaller
    assert sorted(told) == list(range(7))
    for index, result in told.items():
        assert result.state == "complete"
        assert result.values == (seed_mean(records, index),)
        assert result.values != (seed_mean(records, index, "test_accuracy"),)
    for record in records:  # proposals within the priors, trained as recorded
        assert 1e-3 <= record["config"]["learning_rate"] <= 3e-2
        assert record["search"] == {"strategy": "tpe", "round": record["search"]["round"]}


def test_the_same_spec_and_seed_give_the_same_results_byte_for_byte(tmp_path):
    for name in ("a", "b"):
        run(learned(samples=5), out=tmp_path / name)
    first, second = ((tmp_path / n / "results.jsonl").read_bytes() for n in ("a", "b"))
    assert first == second
    reseeded = learned(samples=5)
    other = run(parse_study({**reseeded.search.settings, "seed": 1,
                                   "base": reseeded.search.base}, "s", "s.toml"))  # fmt: skip
    mine = [json.loads(line) for line in first.splitlines()]
    assert [r["config"] for r in other] != [r["config"] for r in mine]


def flops_by_hand(hidden, train_size):
    sizes = [784, *hidden, 10]
    return 6 * train_size * sum(a * b for a, b in zip(sizes, sizes[1:], strict=False))


def test_the_budget_cuts_the_round_that_would_pass_it_and_ends_the_search(tmp_path):
    lane = 2 * flops_by_hand([8], TRAIN)  # two epochs of one lane
    budget = 3 * 2 * lane + 1 * 2 * lane + lane // 2  # round 1, one more configuration
    with pytest.warns(match=r"budget of .* is spent: the search stops after 4 of its 7"):
        records = run(learned(), budget=budget, out=tmp_path)
    assert len(records) == 4 * 2
    assert [r["search"]["round"] for r in records if r["seed"] == 0] == [0, 0, 0, 1]
    assert sum(r["compute"] for r in records) == 4 * 2 * lane <= budget


def test_a_budget_that_holds_only_the_first_round_says_the_search_learned_nothing(tmp_path):
    lane = 2 * flops_by_hand([8], TRAIN)
    with pytest.warns(match=r"stops after 2 of its 7 configurations, all in its first round"):
        records = run(learned(), budget=2 * 2 * lane, out=tmp_path)
    assert len(records) == 2 * 2


def test_halving_inside_rounds_prunes_and_tells_the_pruned_their_last_value(tmp_path, told):
    study = learned(samples=6, halving={"eta": 3, "min_epochs": 1}, base={"hidden": [8],
                    "epochs": 3})  # fmt: skip
    records = run(study, out=tmp_path)
    epochs = {r["config_index"]: len(r["history"]["val_accuracy"]) for r in records}
    assert sorted(epochs.values()) == [1, 1, 1, 1, 3, 3]  # each round of 3: 3 -> 1
    for index, result in told.items():
        if epochs[index] == 1:
            assert result.state == "pruned"
            assert result.values == (seed_mean(records, index),)  # its epoch-1 mean
        else:
            assert result.state == "complete"
    stored = {t["config_index"]: t for t in dashboard_trials(tmp_path)}
    assert {i: t["state"] for i, t in stored.items()} == {
        i: "PRUNED" if e == 1 else "COMPLETE" for i, e in epochs.items()
    }


def dashboard_trials(out):
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{out / 'optuna.db'}")
    return [
        {"config_index": t.user_attrs["config_index"], "state": t.state.name, "values": t.values}
        for t in study.trials
    ]


def test_two_objectives_give_a_pareto_front_its_picture_and_keep_its_most_accurate(
    tmp_path, capsys
):
    space = {
        "learning_rate": {"log_uniform": [1e-3, 3e-2]},
        "hidden": {"choice": [[4], [8]]},
    }
    study = learned("nsga2", samples=6, objectives=["val_accuracy", "params"], search=space)
    records = run(study, out=tmp_path)
    front = pareto_front(records)
    assert front
    model = json.loads((tmp_path / "models" / "s" / "model.json").read_text())
    assert model["config_index"] == front[0]
    stored = dashboard_trials(tmp_path)
    assert all(len(t["values"]) == 2 for t in stored)
    assert report_main([str(tmp_path)]) == 0
    table = capsys.readouterr().out
    assert (tmp_path / "s-pareto.png").stat().st_size > 10_000
    assert "params" in table and "Pareto front (holdout accuracy up, params down" in table
    assert f"most accurate first: #{front[0] + 1}" in table


def cli(spec, out):
    return [
        sys.executable, "-m", "flaxmnist.sweep", str(spec), "--seeds", "2", "--limit-train",
        str(TRAIN), "--quiet", "--out", str(out), *LANES,
    ]  # fmt: skip


SPEC = """strategy = "tpe"
samples = 9
seed = 0
[sampler]
n_startup_trials = 3
[base]
hidden = [8]
epochs = 2
[search]
learning_rate = { log_uniform = [1e-3, 3e-2] }
dropout = { uniform = [0.0, 0.3] }
"""


def test_a_search_killed_after_a_round_resumes_to_the_results_of_an_uninterrupted_run(
    tmp_path,
):
    spec = tmp_path / "tpe.toml"
    spec.write_text(SPEC)
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    whole = subprocess.run(cli(spec, tmp_path / "whole"), env=env, timeout=600)
    assert whole.returncode == 0
    out = tmp_path / "killed"
    results = out / "results.jsonl"
    process = subprocess.Popen(cli(spec, out), env=env)
    deadline = time.monotonic() + 300
    while not results.exists() and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert process.poll() is None, "the run ended before its first round was written"
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    assert 0 < len(results.read_text().splitlines()) < 18
    again = subprocess.run(cli(spec, out), env=env, timeout=600)
    assert again.returncode == 0
    assert results.read_bytes() == (tmp_path / "whole" / "results.jsonl").read_bytes()
    for name in ("params.msgpack", "model.json"):
        assert (out / "models" / "tpe" / name).read_bytes() == (
            tmp_path / "whole" / "models" / "tpe" / name
        ).read_bytes()


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('"tpe"', '"bayes"', r"strategy = 'bayes': expected one of grid, .*, tpe, gp"),
        ("n_startup_trials", "n_startups", r"unknown sampler option sampler.n_startups for tpe"),
        ("seed = 0", 'objectives = ["val_accuracy", "latency"]', r"'latency' is not a metric"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_written(old, new, message, tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text(SPEC.replace(old, new))
    done = subprocess.run(cli(spec, tmp_path / "out"), capture_output=True, text=True)
    assert done.returncode == 2
    (error,) = done.stderr.strip().splitlines()
    assert error.startswith("python -m flaxmnist.sweep: error: ") and re.search(message, error)
    assert not (tmp_path / "out" / "results.jsonl").exists()


def test_a_learned_search_never_learns_from_the_test_set():
    with pytest.raises(SettingsError, match=r"would learn from the test set; use the holdout"):
        run(learned(), validate_on="test")


def test_a_torn_last_record_drops_its_round_which_trains_again_the_same(tmp_path):
    whole = run(learned(samples=5), out=tmp_path)
    results = tmp_path / "results.jsonl"
    written = results.read_bytes()
    lines = written.splitlines(keepends=True)
    results.write_bytes(b"".join(lines[:-1]) + lines[-1][:100])  # round 1: 2 configs x 2 seeds
    with pytest.warns(match=r"line 10 is cut short"):
        again = run(learned(samples=5), out=tmp_path)
    assert again == whole and results.read_bytes() == written


def test_a_torn_round_under_a_budget_trains_again_what_the_budget_held(tmp_path):
    """The dropped round's compute is the budget's again: the resumed run cuts where an
    uninterrupted one did (it cut one configuration short before this was mended)."""
    lane = 2 * flops_by_hand([8], TRAIN)
    budget = 3 * 2 * lane + 1 * 2 * lane + lane // 2  # round 1, one more configuration
    with pytest.warns(match=r"stops after 4 of its 7"):
        whole = run(learned(), budget=budget, out=tmp_path)
    results = tmp_path / "results.jsonl"
    written = results.read_bytes()
    lines = written.splitlines(keepends=True)
    results.write_bytes(b"".join(lines[:-1]) + lines[-1][:100])  # round 2's last record torn
    with pytest.warns(match=r"line 8 is cut short"), pytest.warns(match=r"stops after 4 of its 7"):
        again = run(learned(), budget=budget, out=tmp_path)
    assert again == whole and results.read_bytes() == written


def test_a_search_whose_every_proposal_is_in_its_first_round_is_refused_in_one_line(tmp_path):
    """samples = 8 with one call of 24 lanes (one seed): the whole search would be the
    sampler's random start-up, so it is refused before anything runs."""
    spec = tmp_path / "tpe8.toml"
    spec.write_text(SPEC.replace("samples = 9", "samples = 8").replace("n_startup_trials = 3", ""))
    command = [
        sys.executable, "-m", "flaxmnist.sweep", str(spec), "--seeds", "1", "--limit-train",
        str(TRAIN), "--out", str(tmp_path / "out"),
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    (error,) = done.stderr.strip().splitlines()
    assert "strategy = 'tpe' would learn nothing: all its 8 samples" in error
    assert "one round holds 24" in error and "--max-lanes" in error
    assert not (tmp_path / "out").exists()


class Recording:
    """A ``Progress`` that keeps what it is told."""

    def __init__(self):
        self.said, self.labels, self.hows = [], [], []

    def study_started(self, label, text):
        self.said.append(f"{label}: {text}")

    def call_started(self, label, epochs):
        self.labels.append(label)

    def compiled(self, seconds, how):
        self.hows.append(how)

    def epoch(self, *args):
        pass

    def call_done(self):
        pass

    def skipped(self, label):
        pass

    def finished(self, summary):
        pass


def test_the_start_up_is_the_first_round_said_before_it_trains_and_kept(tmp_path):
    from flaxmnist.search.learned import TPE
    from flaxmnist.search.sampler import make_sampler

    document = {  # no [sampler]: Optuna's default start-up (10) would be the whole search
        "strategy": "tpe",
        "samples": 7,
        "base": {"hidden": [11], "epochs": 2},  # a width of its own: programs made for it
        "search": {"learning_rate": {"log_uniform": [1e-3, 3e-2]}},
    }
    study = parse_study(document, "s", "s.toml")
    progress = Recording()
    run(study, out=tmp_path, progress=progress)
    assert progress.said == [
        "s [tpe]: 7 samples in 3 rounds of up to 3: the first 3 are uninformed (proposed "
        "before any result is told, or in the sampler's random start-up), the other 4 learn "
        "from what has trained"
    ]
    assert [label.split(", 0->")[0] for label in progress.labels] == [
        f"s [tpe, round {k} of 3" for k in (1, 2, 3)
    ]
    assert progress.hows[0] != "reused"  # it said so while its grid was already compiled
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["settings"]["studies"][0]["planned"] == {
        "round_size": 3,
        "rounds": 3,
        "startup": 3,
    }
    assert make_sampler(TPE, study.search, 3)._n_startup_trials == 3


def test_a_warm_start_tells_the_sampler_an_earlier_runs_finished_configurations_first(
    tmp_path, monkeypatch
):
    """The second search's sampler holds the first run's six configurations, with their
    seed-mean holdout accuracy, before it proposes; its first round is no start-up."""
    first = run(learned(samples=6), out=tmp_path / "first")
    seen = {}
    ask = Proposer.ask

    def spy(self, count):
        seen.setdefault("before", [t.values for t in self.study.trials])
        return ask(self, count)

    monkeypatch.setattr(Proposer, "ask", spy)
    study = learned(samples=6, sampler={})
    progress = Recording()
    second = run(study, out=tmp_path / "second", warm_start=tmp_path / "first", progress=progress)
    assert seen["before"] == [[seed_mean(first, i)] for i in range(6)]
    assert "told 6 finished configurations of an earlier run" in progress.said[0]
    manifest = json.loads((tmp_path / "second" / "manifest.json").read_text())["settings"]
    assert manifest["warm_start"]["studies"] == {"s": {"from": "s", "configurations": 6}}
    assert manifest["studies"][0]["planned"]["startup"] == 0
    cold = run(study, out=tmp_path / "cold")
    assert [r["config"] for r in second] != [r["config"] for r in cold]
    # The same command again resumes (nothing to train): the warm start is part of the run.
    again = run(study, out=tmp_path / "second", warm_start=tmp_path / "first")
    assert again == second


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"validate_on": "test"}, r"selected on the test set"),
        ({"search": {"learning_rate": {"log_uniform": [1e-3, 1e-2]}}}, r"no study of this"),
        ({"strategy": "nsga2"}, r"no study of this run can be told earlier results"),
        ({"limit_train": 500}, r"its train_size is 600, this run's 500"),
    ],
)
def test_a_warm_start_of_another_kind_is_refused_in_one_line(change, message, tmp_path):
    first = tmp_path / "first"
    first.mkdir()
    (first / "manifest.json").write_text(
        json.dumps(
            {
                "settings": {
                    "validate_on": change.get("validate_on", "holdout"),
                    "dataset": "mnist",
                    "train_size": TRAIN,
                    "studies": [
                        {"name": "s", "search": {"search": learned().search.settings["search"]}}
                    ],
                }
            }
        )
    )
    (first / "results.jsonl").write_text("")
    tables = {k: v for k, v in change.items() if k in ("search", "strategy")}
    settings = {k: v for k, v in learned().search.settings.items() if k != "sampler"}
    document = {**settings, **tables, "base": {"hidden": [8], "epochs": 2}}
    study = parse_study(document, "s", "s.toml")
    limit = change.get("limit_train", TRAIN)
    with pytest.raises(SettingsError, match=message):
        run_sweep(study, seeds=2, limit_train=limit, quiet=True, max_lanes=6, warm_start=first)
