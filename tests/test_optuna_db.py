"""Every run is an Optuna study: optuna.db written as the run goes, its trials' values the
records' seed-mean holdout accuracies, written again for an older run by report --optuna,
and a locked or damaged file that never stops training."""

import copy
import json
import sqlite3
from datetime import datetime, timedelta
from types import SimpleNamespace

import numpy as np
import optuna
import pytest

from flaxmnist import run_sweep
from flaxmnist.report.__main__ import main
from flaxmnist.search import optuna_db
from flaxmnist.specs.config import parse_spec

GRID = {
    "base": {"hidden": [8], "epochs": 2},
    "grid": {"learning_rate": [0.01, 0.003], "dropout": [0.0, 0.2]},
}
SETTINGS = {"seeds": 2, "limit_train": 600, "quiet": True}


@pytest.fixture(scope="module")
def grid_run(tmp_path_factory):
    """A grid of 4 configurations x 2 seeds in 2 calls, written to a run directory, and
    after each call, the records so far and the trials optuna.db held."""
    out = tmp_path_factory.mktemp("grid") / "run"
    study = parse_spec(GRID, name="grid", source="grid.toml")
    seen, update = [], optuna_db.LiveExport.__call__

    def spy(self, records):
        update(self, records)
        seen.append((len(records), len(stored(out).trials)))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(optuna_db.LiveExport, "__call__", spy)
        records = run_sweep(study, out=out, max_lanes=4, **SETTINGS)
    return out, records, seen


def stored(out, name="grid"):
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=name, storage=f"sqlite:///{out / 'optuna.db'}")


def seed_means(records, index, key):
    return [r[key] for r in records if r["config_index"] == index]


def test_a_grid_run_is_an_optuna_study_of_one_trial_per_configuration(grid_run):
    out, records, _ = grid_run
    study = stored(out)
    assert [s.study_name for s in optuna.get_all_study_summaries(study._storage)] == ["grid"]
    assert study.directions == [optuna.study.StudyDirection.MAXIMIZE]
    assert study.metric_names == ["val_accuracy"]
    assert sorted(t.user_attrs["config_index"] for t in study.trials) == [0, 1, 2, 3]
    for trial in study.trials:
        index = trial.user_attrs["config_index"]
        mine = [r for r in records if r["config_index"] == index]
        assert trial.state == optuna.trial.TrialState.COMPLETE
        assert trial.value == np.mean([r["val_accuracy"] for r in mine])
        assert trial.params == {
            "learning_rate": mine[0]["config"]["learning_rate"],
            "dropout": mine[0]["config"]["dropout"][0],
        }
        assert trial.distributions["learning_rate"].choices == (0.01, 0.003)
        for epoch in (1, 2):
            curve = [r["history"]["val_accuracy"][epoch - 1] for r in mine]
            assert trial.intermediate_values[epoch] == np.mean(curve)
        attrs = trial.user_attrs
        assert attrs["seeds"] == [0, 1]
        assert attrs["val_accuracy"] == [r["val_accuracy"] for r in mine]
        assert attrs["test_accuracy"] == [r["test_accuracy"] for r in mine]
        assert attrs["compute"] == sum(r["compute"] for r in mine)
        assert attrs["diverged"] is False and attrs["config"] == mine[0]["config"]
        assert trial.value != attrs["test_accuracy_mean"]  # the test set is never the value
    # each trial spans the call that trained it: the two calls one after the other
    manifest = json.loads((out / "manifest.json").read_text())
    attempt = manifest["attempts"][-1]
    began, ended = (datetime.fromisoformat(attempt[k]) for k in ("started", "ended"))
    began, ended = began.replace(tzinfo=None), ended.replace(tzinfo=None) + timedelta(seconds=1)
    spans = sorted((t.datetime_start, t.datetime_complete) for t in study.trials)
    for start, end in spans:  # the attempt's times are whole seconds: the end rounded down
        assert began <= start < end <= ended
    assert spans[0][1] <= spans[2][0]  # the second call began after the first ended
    assert all("timing" not in t.user_attrs for t in study.trials)


@pytest.fixture
def report(capsys, monkeypatch):
    """``python -m flaxmnist.report ARGS`` in this process: its exit code, stdout, stderr."""
    monkeypatch.setattr(optuna_db, "LOCK_TIMEOUT", 0.2)

    def run(*args):
        code = main([str(a) for a in args])
        out, err = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out, stderr=err)

    return run


def summary(out):
    return sorted(
        (t.user_attrs["config_index"], t.state.name, t.values, t.params, t.intermediate_values)
        for t in stored(out).trials
    )


def test_report_optuna_writes_it_for_an_older_run_and_adds_nothing_twice(
    grid_run, tmp_path, report
):
    out, _, _ = grid_run
    copy_of = tmp_path / "old"
    copy_of.mkdir()
    for name in ("manifest.json", "results.jsonl"):  # a run from before optuna.db
        (copy_of / name).write_bytes((out / name).read_bytes())
    done = report(copy_of, "--optuna")
    assert done.returncode == 0, done.stderr
    assert "4 trials added, 1 study; open it with: optuna-dashboard sqlite:///" in done.stdout
    assert summary(copy_of) == summary(out)
    assert {t.user_attrs["timing"] for t in stored(copy_of).trials} == {
        "not recorded: the times are the export's"  # no timing.json copied: an older run
    }
    again = report(copy_of, "--optuna")
    assert "0 trials added" in again.stdout and summary(copy_of) == summary(out)


def test_report_optuna_without_results_or_with_a_locked_file_says_so_in_one_line(
    grid_run, tmp_path, report
):
    empty = report(tmp_path, "--optuna")
    assert empty.returncode == 2
    assert empty.stderr.strip().splitlines() == [
        f"python -m flaxmnist.report: error: {tmp_path / 'results.jsonl'}: no such file"
    ]
    out, _, _ = grid_run
    with locked(out / "optuna.db"):
        busy = report(out, "--optuna")
    assert busy.returncode == 3
    (line,) = busy.stderr.strip().splitlines()
    assert "cannot write" in line and "locked by another program" in line


class locked:
    """An exclusive SQLite lock on ``path`` for the ``with`` block."""

    def __init__(self, path):
        self.connection = sqlite3.connect(path, timeout=0.1, isolation_level=None)

    def __enter__(self):
        self.connection.execute("BEGIN EXCLUSIVE")

    def __exit__(self, *exc):
        self.connection.execute("ROLLBACK")
        self.connection.close()


def cut_last_call(out):
    """The run directory as a kill after its first call leaves it."""
    lines = (out / "results.jsonl").read_text().splitlines(keepends=True)
    (out / "results.jsonl").write_text("".join(lines[:4]))


@pytest.mark.parametrize("damage", ["locked", "garbage"])
def test_an_unwritable_optuna_db_warns_once_and_training_goes_on(
    damage, grid_run, tmp_path, report
):
    out, records, _ = grid_run
    run = tmp_path / "run"
    run.mkdir()
    for name in ("manifest.json", "results.jsonl", "optuna.db"):
        (run / name).write_bytes((out / name).read_bytes())
    cut_last_call(run)
    study = parse_spec(GRID, name="grid", source="grid.toml")
    expected = "it is locked by another program" if damage == "locked" else "it is damaged"
    if damage == "garbage":
        (run / "optuna.db").write_bytes(b"not a database" * 100)
    guard = locked(run / "optuna.db") if damage == "locked" else None
    if guard:
        guard.__enter__()
    try:
        with pytest.warns(match=rf"optuna.db: cannot update it \({expected}") as caught:
            again = run_sweep(study, out=run, max_lanes=4, **SETTINGS)
    finally:
        if guard:
            guard.__exit__()
    (mine,) = [str(w.message) for w in caught if "optuna.db" in str(w.message)]
    assert "report " in mine and "--optuna" in mine
    assert again == records  # trained to the end, as the first time
    assert (run / "results.jsonl").read_bytes() == (out / "results.jsonl").read_bytes()
    if damage == "garbage":
        (run / "optuna.db").unlink()
    assert report(run, "--optuna").returncode == 0
    assert summary(run) == summary(out)


def test_a_diverged_configuration_is_a_failed_trial_and_a_stopped_one_pruned(tmp_path):
    out, records = tmp_path, []
    settings = {
        "studies": [{"name": "s", "configs": [{"learning_rate": 0.1}, {"learning_rate": 1.0}]}],
        "seeds": 1,
        "validate_on": "holdout",
        "dataset": "mnist",
    }
    base = {
        "study": "s", "seed": 0, "config": {"hidden": [8], "epochs": 3},
        "test_accuracy": 0.5, "at_chance": False, "compute": 1,
    }  # fmt: skip
    stopped = {**copy.deepcopy(base), "config_index": 0, "diverged": False}
    stopped["config"]["learning_rate"] = 0.1
    stopped |= {"history": {"val_accuracy": [0.4, 0.6]}, "val_accuracy": 0.6}
    diverged = {**copy.deepcopy(base), "config_index": 1, "diverged": True}
    diverged["config"]["learning_rate"] = 1.0
    diverged |= {"history": {"val_accuracy": [0.1, None, None]}, "val_accuracy": None}
    stopped["search"] = {"strategy": "tpe", "round": 0}  # the record's index: from 0
    diverged["search"] = {"strategy": "tpe", "round": 1}
    records = [stopped, diverged]
    assert optuna_db.export(out, settings, records) == 2
    trials = {t.user_attrs["config_index"]: t for t in stored(out, "s").trials}
    assert trials[0].state.name == "PRUNED" and trials[0].value == 0.6
    assert trials[1].state.name == "FAIL" and trials[1].values is None
    assert json.loads(json.dumps(trials[1].user_attrs))["diverged"] is True
    # rounds as the progress numbers them ("round 1 of 2"), as #1 is config_index 0
    assert [trials[i].user_attrs["search_round"] for i in (0, 1)] == [1, 2]


def test_optuna_db_grows_after_every_call_while_the_run_trains(grid_run):
    _, _, seen = grid_run
    assert seen == [(4, 2), (8, 4)]  # 2 calls of 2 configurations x 2 seeds


def test_an_error_without_a_message_is_named_by_its_type():
    # SQLAlchemy keeps the library's own error as ``orig``; a bare one has no text at all.
    wrapped = SimpleNamespace(orig=TimeoutError())
    assert optuna_db.problem(wrapped) == ("TimeoutError", "when that is mended")
    assert optuna_db.problem(RuntimeError("")) == ("RuntimeError", "when that is mended")


def test_a_ctrl_c_the_database_library_wrapped_still_stops_the_run(tmp_path, monkeypatch):
    """A real SIGINT inside the export, under the run's handler, that the database library
    hands back wrapped in an error of its own with the interrupt as its ``orig`` and no
    message (CI saw a run crash with an IndexError on that): it stops the run as a Ctrl-C,
    and the export neither warns nor crashes."""
    import signal
    import warnings

    import sqlalchemy.exc

    from flaxmnist import interrupts

    def interrupted(*args):
        try:
            signal.raise_signal(signal.SIGINT)
        except KeyboardInterrupt as err:
            raise sqlalchemy.exc.OperationalError("INSERT", {}, err) from None

    monkeypatch.setattr(optuna_db, "export", interrupted)
    monkeypatch.setattr(optuna_db, "open_storage", lambda out: object())
    monkeypatch.setattr(optuna_db, "close", lambda storage: None)
    live = optuna_db.LiveExport(tmp_path, {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(KeyboardInterrupt), interrupts.stopping_on_ctrl_c():
            live([])
    assert live.storage is None  # closed: a resumed run opens it again


def test_an_export_error_while_a_ctrl_c_is_pending_stops_the_run(tmp_path, monkeypatch):
    """A Ctrl-C that a callback swallowed is pending (see ``interrupts``); an export that
    then fails, whatever its error, raises the interrupt rather than warn."""
    from flaxmnist import interrupts

    def failing(*args):
        raise RuntimeError("disk I/O error")

    monkeypatch.setattr(optuna_db, "export", failing)
    monkeypatch.setattr(optuna_db, "open_storage", lambda out: object())
    monkeypatch.setattr(optuna_db, "close", lambda storage: None)
    live = optuna_db.LiveExport(tmp_path, {})
    with pytest.warns(match=r"cannot update it \(disk I/O error\)"):
        live([])  # nothing pending: a warning, and training goes on
    monkeypatch.setattr(interrupts, "_pending", True)
    with pytest.raises(KeyboardInterrupt):
        live([])
