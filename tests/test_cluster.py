"""Two processes on localhost, one sweep: the same records as one process with two devices,
a killed process that stops the other within the timeout, and a rerun that finishes the
study as an uninterrupted run would. Every process is a subprocess with a hard timeout."""

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from flaxmnist.devices import cluster
from flaxmnist.sweep import build_parser

TINY = ["--epochs", "3", "--seeds", "2", "--limit-train", "400", "--quiet", "--cpu-devices"]
HEARTBEAT = 6  # seconds: a survivor names the lost process within half of it
TIMEOUT = 240  # seconds any one process may take
HALVING = """strategy = "halving"
samples = 4
[base]
hidden = [8]
epochs = 4
[search]
learning_rate = { log_uniform = [1e-3, 3e-2] }
[halving]
eta = 2
"""


TPE = """strategy = "tpe"
samples = 6
[sampler]
n_startup_trials = 2
[base]
hidden = [8]
epochs = 3
[search]
learning_rate = { log_uniform = [1e-3, 3e-2] }
dropout = { uniform = [0.0, 0.3] }
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def environment():
    return {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}


def one_process(study, out, *extra):
    command = [sys.executable, "-m", "flaxmnist.sweep", study, *TINY, "2", "--out", str(out)]
    done = subprocess.run(
        [*command, *extra], env=environment(), timeout=TIMEOUT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-2000:]


def start_two(study, out, *extra):
    """Processes 0 and 1 of a two-process run (one CPU device each), started."""
    port = free_port()
    processes = []
    for rank in (0, 1):
        command = [
            sys.executable, "-m", "flaxmnist.sweep", study, *TINY, "1", "--out", str(out),
            "--coordinator", f"127.0.0.1:{port}", "--num-processes", "2",
            "--process-id", str(rank), "--heartbeat-timeout", str(HEARTBEAT), *extra,
        ]  # fmt: skip
        processes.append(
            subprocess.Popen(
                command,
                env=environment(),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )  # fmt: skip
        )
    return processes


def finish(processes, timeout=TIMEOUT):
    """``(returncode, stdout, stderr)`` of each process; kills them all past ``timeout``."""
    results = []
    for process in processes:
        try:
            out, err = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            for p in processes:
                p.kill()
            pytest.fail(f"a process ran past {timeout} s: the cluster hangs")
        results.append((process.returncode, out, err))
    return results


def two_processes(study, out, *extra):
    results = finish(start_two(study, out, *extra))
    for code, _, err in results:
        assert code == 0, err[-2000:]
    return results


LR_CALLS = ["--max-lanes", "8"]  # lr's 24 configurations in 3 calls: a kill between them


@pytest.fixture(scope="module")
def whole_lr(tmp_path_factory):
    """``results.jsonl`` of an uninterrupted one-process run with two devices."""
    out = tmp_path_factory.mktemp("whole") / "lr"
    one_process("lr", out, *LR_CALLS)
    return (out / "results.jsonl").read_bytes()


def check_two_process_run(results, out):
    """Process 0 printed the table (native chatter, gloo's, goes to stderr), the other
    nothing; the manifest counts the processes and hosts."""
    (_, main_out, _), (_, other_out, other_err) = results
    assert main_out.startswith("study ") and "best by holdout accuracy" in main_out
    assert other_out == "" and "error" not in other_err
    attempt = json.loads((out / "manifest.json").read_text())["attempts"][-1]
    assert attempt["processes"] == 2 and attempt["hosts"] == 1
    assert attempt["devices"]["count"] == 2 and attempt["status"] == "finished"


#: BOHB in rounds of 2 configurations (4 lanes of 2 seeds): lanes refilled as rungs stop
#: configurations, proposals made by process 0 and shared.
BOHB = HALVING.replace('"halving"', '"bohb"').replace("samples = 4", "samples = 7")
SEARCHES = {"halving": (HALVING, ()), "bohb": (BOHB, ("--max-lanes", "4"))}


@pytest.mark.parametrize("strategy", ["halving", pytest.param("bohb", marks=pytest.mark.heavy)])
def test_a_search_on_two_processes_gives_the_records_of_one_process(strategy, tmp_path):
    spec = tmp_path / f"{strategy}.toml"
    text, extra = SEARCHES[strategy]
    spec.write_text(text)
    one_process(str(spec), tmp_path / "one", *extra)
    results = two_processes(str(spec), tmp_path / "two", *extra)
    check_two_process_run(results, tmp_path / "two")
    # Bit for bit: each device holds the same lanes in both layouts.
    one, two = (tmp_path / d / "results.jsonl" for d in ("one", "two"))
    assert two.read_bytes() == one.read_bytes()


@pytest.mark.heavy
def test_a_learned_search_on_two_processes_gives_the_records_of_one_process(tmp_path):
    """Process 0 asks the sampler and shares the proposals: rounds of 2 configurations (4
    lanes of 2 seeds), told what every process trained, equal to one process's."""
    spec = tmp_path / "tpe.toml"
    spec.write_text(TPE)
    one_process(str(spec), tmp_path / "one", "--max-lanes", "4")
    out = tmp_path / "two"
    check_two_process_run(two_processes(str(spec), out, "--max-lanes", "4"), out)
    one, two = (tmp_path / d / "results.jsonl" for d in ("one", "two"))
    assert two.read_bytes() == one.read_bytes()
    assert [json.loads(line)["search"]["round"] for line in one.read_text().splitlines()] == [
        r for r in (0, 1, 2) for _ in range(4)
    ]
    assert (out / "optuna.db").exists()


# One victim is enough for the light suite.
@pytest.mark.parametrize("victim", [1, pytest.param(0, marks=pytest.mark.heavy)])
def test_a_killed_process_stops_the_other_and_the_rerun_resumes(victim, whole_lr, tmp_path):
    extra = LR_CALLS
    out = tmp_path / "killed"
    processes = start_two("lr", out, *extra)
    results = out / "results.jsonl"
    deadline = time.monotonic() + TIMEOUT
    while not results.exists() and time.monotonic() < deadline:
        if any(p.poll() is not None for p in processes):
            break
        time.sleep(0.05)
    assert results.exists(), finish(processes)
    written = results.read_bytes()
    processes[victim].send_signal(signal.SIGKILL)
    killed_at = time.monotonic()
    survivor = processes[1 - victim]
    (code, _, err), = finish([survivor], timeout=4 * HEARTBEAT)  # fmt: skip
    processes[victim].wait()
    assert time.monotonic() - killed_at < 4 * HEARTBEAT
    if code == 0:  # the kill came after the last collective: nothing was lost
        pytest.skip("the survivor had already finished")
    # 4: flaxmnist saw a collective fail; SIGABRT: JAX's coordination service ended the
    # process first (at once when the coordinator is gone) and the stderr watcher says why.
    assert code in (4, -signal.SIGABRT), err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("python -m flaxmnist.sweep: error: lost process ")
    assert f"lost process {victim} " in last and "run the same command" in last
    assert results.read_bytes().startswith(written[: written.rindex(b"\n") + 1])
    check_two_process_run(two_processes("lr", out, *extra), out)  # the same command again
    assert results.read_bytes() == whole_lr  # as one process with two devices, bit for bit


def test_launch_arguments_go_together_and_name_a_process_of_the_cluster():
    parser = build_parser()

    def launch(*argv):
        return cluster.launch_of(parser.parse_args(["lr", *argv]))

    assert launch() == (cluster.Launch(), None)
    assert "go together" in launch("--coordinator", "h:1")[1]
    assert (
        "must be below"
        in launch("--coordinator", "h:1", "--num-processes", "2", "--process-id", "2")[1]
    )
    given, problem = launch(
        "--coordinator", "h:1", "--num-processes", "2", "--process-id", "1",
        "--heartbeat-timeout", "9",
    )  # fmt: skip
    assert problem is None and given == cluster.Launch("h:1", 2, 1, 9)
    assert not cluster.is_distributed() and cluster.is_main()
    assert cluster.share(lambda: {"a": 1}) == {"a": 1}  # one process: read as it is
    assert cluster.lost_processes() == []


def test_no_cluster_is_detected_on_a_plain_machine(monkeypatch):
    for name in ("SLURM_JOB_ID", "OMPI_MCA_orte_hnp_uri", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    assert cluster.detected() is None
    monkeypatch.setenv("SLURM_JOB_ID", "1")  # JAX's SLURM detection, with four tasks
    for name, value in (("SLURM_NTASKS", "4"), ("SLURM_PROCID", "0"), ("SLURM_LOCALID", "0")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("SLURM_STEP_NODELIST", "node1")
    assert cluster.detected() == "SlurmCluster"
