"""optuna-dashboard, started for real on loopback against a run's optuna.db, serves the
study, its trials and their values (its HTTP API, what its pages read). The server binds
127.0.0.1 on a free port and is stopped, within a bounded time, whatever happens."""

import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from flaxmnist import run_sweep
from flaxmnist.studies import parse_study

STARTUP = 60  # seconds the server may take to answer


def dashboard_command():
    beside = Path(sys.executable).parent / "optuna-dashboard"
    found = beside if beside.exists() else shutil.which("optuna-dashboard")
    if found is None:
        pytest.skip("optuna-dashboard (the dashboard extra, in dev) is not installed")
    return [str(found)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(port, path):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return json.loads(response.read())


def test_optuna_dashboard_serves_a_learned_runs_study_trials_and_values(tmp_path):
    command = dashboard_command()
    document = {
        "strategy": "tpe",
        "samples": 4,
        "base": {"hidden": [8], "epochs": 2},
        "search": {"learning_rate": {"log_uniform": [1e-3, 3e-2]}},
    }
    study = parse_study(document, "tpe-search", "tpe.toml")
    # Rounds of 2 (4 lanes, 2 seeds): a round of 12 would hold every proposal, refused.
    records = run_sweep(study, seeds=2, limit_train=600, quiet=True, out=tmp_path, max_lanes=4)
    port = free_port()
    server = subprocess.Popen(
        [*command, f"sqlite:///{tmp_path / 'optuna.db'}", "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + STARTUP
        while True:
            try:
                studies = get(port, "/api/studies")["study_summaries"]
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"optuna-dashboard did not answer: {server.stderr.read()[-2000:]}")
                time.sleep(0.2)
        assert [s["study_name"] for s in studies] == ["tpe-search"]
        detail = get(port, f"/api/studies/{studies[0]['study_id']}")
        trials = detail["trials"]
        assert len(trials) == 4
        for trial in trials:
            attrs = {a["key"]: a["value"] for a in trial["user_attrs"]}
            index = int(attrs["config_index"])
            mine = [r["val_accuracy"] for r in records if r["config_index"] == index]
            assert trial["state"] == "Complete"
            assert trial["values"] == [np.mean(mine)]  # JSON round-trips a float exactly
            assert [p["name"] for p in trial["params"]] == ["learning_rate"]
        assert detail["best_trials"][0]["values"] == [max(t["values"][0] for t in trials)]
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
