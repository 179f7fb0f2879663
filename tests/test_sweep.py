import contextlib
import errno
import fcntl
import io
import json
import shutil
import subprocess
import sys

import pytest

import flaxmnist
from flaxmnist.report.__main__ import main as report_main
from flaxmnist.run import rundir
from flaxmnist.sweep import main

ARGS = ["lr", "--epochs", "1", "--limit-train", "400", "--seeds", "1"]


@pytest.fixture(scope="module")
def cli_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    # One CPU device, as in this test process, so that the API call below computes the same
    # numbers; sharding over 2 devices rounds differently (tests/test_runner.py checks it).
    result = subprocess.run(
        [sys.executable, "-m", "flaxmnist.sweep", *ARGS, "--cpu-devices", "1", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    return result, out


def test_cli_end_to_end(cli_run):
    result, out = cli_run
    assert result.returncode == 0, result.stderr
    lines = (out / "results.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert len(records) == 24
    assert [r["config"]["learning_rate"] for r in records][:4] == [1.0, 0.1, 0.01, 0.001]
    assert all(r["study"] == "lr" and r["seed"] == 0 for r in records)
    rows = [
        line
        for line in result.stdout.splitlines()
        if line.split()[:1] and line.split()[0].isdigit()
    ]
    assert len(rows) == 24
    assert "lr 1/1" in result.stderr and "compiled in" in result.stderr  # progress
    assert (out / "summary.csv").read_text().count("\n") == 25
    for name in ("lr-accuracy.png", "lr-curves.png"):
        assert (out / name).stat().st_size > 10_000


def test_python_api_returns_the_cli_records(cli_run):
    _, out = cli_run
    cli_records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    api_records = flaxmnist.run_sweep("lr", epochs=1, limit_train=400, seeds=1)
    assert api_records == cli_records
    assert flaxmnist.format_table(api_records).splitlines()[2].startswith("1 ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["lr", "--epochs", "0"], "expected a positive integer"),
        (["lr", "--seeds", "two"], "expected a positive integer"),
        (["lr", "--validate-on", "train"], "invalid choice"),
        (["lr", "--bogus"], "unrecognized arguments"),
        (["nosuchstudy"], "unknown study 'nosuchstudy'"),
        (["lr", "--limit-train", "50001"], "--limit-train 50001: must be between 1 and 50000"),
        (["lr", "--data-dir", "/nonexistent"], "not a directory"),
        (
            ["lr", "--limit-train", "100"],
            "--limit-train 100: 100 training images, fewer than one batch of study lr "
            "(batch_size = 200): give 200 or more",
        ),
        (["lr", "--max-lanes", "0"], "expected a positive integer"),
        (["lr", "--formats", "png,gif"], "--formats: expected some of png, pdf, svg"),
        (["lr", "--memory-budget", "lots"], "expected a size such as 12G"),
        (["lr", "--dataset", "emnist"], "--dataset emnist: unknown dataset"),
        (["lr", "--dataset", "tfds:x", "--data-dir", "/tmp"], "--data-dir /tmp: reads IDX files"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(argv, message, capsys, tmp_path):
    try:
        code = main([*argv, "--out", str(tmp_path / "out")])
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_bad_spec_file_exits_2_without_traceback(tmp_path):
    spec = tmp_path / "bad.toml"
    spec.write_text("[grid]\nlearning_rate = [0]\n")
    result = subprocess.run(
        [sys.executable, "-m", "flaxmnist.sweep", str(spec)], capture_output=True, text=True
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"python -m flaxmnist.sweep: error: {spec}: grid.learning_rate = 0: expected a number > 0"
    )


@pytest.mark.parametrize(
    "setting",
    ["augment_shift = -1", "augment_shift = 28", "ema_decay = 1.0", "ema_decay = -0.5",
     "label_smoothing = 1.0", "label_smoothing = -0.1", "augment_elastic_sigma = 0.0"],
)  # fmt: skip
def test_bad_augmentation_ema_or_smoothing_exit_2_with_one_line(setting, tmp_path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text(f"[base]\nhidden = [8]\n{setting}\n[grid]\nlearning_rate = [1e-3]\n")
    code = main([str(spec), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert f"base.{setting.split()[0]} = " in err  # the key and its value, named
    assert not (tmp_path / "out").exists()


def test_out_that_is_a_file_exits_2(tmp_path, capsys):
    path = tmp_path / "taken"
    path.write_text("")
    assert main(["lr", "--out", str(path)]) == 2
    assert f"--out {path}: exists and is not a directory" in capsys.readouterr().err


def test_test_protocol_and_quiet_from_a_spec_file(tmp_path):
    spec = tmp_path / "two.toml"
    spec.write_text("[base]\nhidden = [16]\n[grid]\nlearning_rate = [0.01, 0.001]\n")
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "flaxmnist.sweep",
            str(spec),
            "--validate-on",
            "test",
            "--quiet",
            "--epochs",
            "1",
            "--limit-train",
            "300",
            "--seeds",
            "1",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    assert "validation on the TEST set" in result.stdout and "optimistic" in result.stdout
    records = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["study"] for r in records] == ["two", "two"]  # 2 configs x 1 seed
    assert {r["config"]["validate_on"] for r in records} == {"test"}
    assert {r["config"]["train_size"] for r in records} == {300}
    for record in records:  # validation is the test set: the two must agree exactly
        assert record["history"]["val_accuracy"] == record["history"]["test_accuracy"]


def test_tfds_without_tensorflow_exits_2_with_the_install_hint(monkeypatch, capsys, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    assert main(["lr", "--dataset", "tfds:kmnist", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "pip install 'flaxmnist[tfds]'" in err and len(err.strip().splitlines()) == 1
    assert "--dataset tfds:kmnist: " in err


def test_named_studies_are_found_from_any_directory(tmp_path):
    # From another directory the installed package is imported, not this source tree.
    result = subprocess.run(
        [sys.executable, "-m", "flaxmnist.sweep", "--help"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    assert result.returncode == 0
    named = (
        "Named studies: all, best-mlp, better-mlp, dropout, hidden, hidden-transfer, l2, lr, "
        "three-layer, width-lr."
    )
    text = " ".join(result.stdout.split())
    for word in ("three-layer", "hidden-transfer", "width-lr"):  # argparse may break at "-"
        text = text.replace(word.replace("-", "- "), word)
    assert named in text


def test_an_unusable_compile_cache_is_an_error_only_when_asked_for(tmp_path, capsys):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    out = tmp_path / "run"
    assert main(["lr", "--compile-cache", str(blocker / "cache"), "--out", str(out)]) == 2
    assert "--compile-cache" in capsys.readouterr().err
    assert not out.exists()


#: Two calls of 12 lanes, quick; the faults below are met by the real command line.
SMALL = ["lr", "--epochs", "1", "--limit-train", "400", "--seeds", "1", "--max-lanes", "12"]
SMALL += ["--quiet", "--no-compile-cache"]


def run_cli(capsys, argv):
    """``main(argv)``'s exit code and its stderr, which must be one line."""
    code = main(argv)
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    return code, lines[0]


def test_a_directory_another_run_is_writing_to_is_refused_at_once(tmp_path, capsys):
    out = tmp_path / "run"
    out.mkdir()
    with open(out / ".lock", "w") as held:  # what a running sweep holds: flock, exclusive
        held.write("pid 99999 on elsewhere, since 2026-11-30 12:00:00")
        held.flush()
        fcntl.flock(held, fcntl.LOCK_EX)
        code, line = run_cli(capsys, [*SMALL, "--out", str(out)])
    assert code == 3
    assert line == (
        f"python -m flaxmnist.sweep: error: --out {out}: another flaxmnist run (pid 99999 on "
        "elsewhere, since 2026-11-30 12:00:00) is writing to it; wait for it to end, or use "
        "another directory"
    )
    assert not (out / "manifest.json").exists()


def test_a_full_disk_stops_with_one_line_keeps_what_finished_and_resumes(
    tmp_path, capsys, monkeypatch
):
    out = tmp_path / "run"
    real_replace, writes = rundir._replace_with, []

    def full_after_the_first_results(path, data):
        writes.append(path.name)
        if writes.count("results.jsonl") > 1:
            raise OSError(errno.ENOSPC, "No space left on device")
        real_replace(path, data)

    monkeypatch.setattr(rundir, "_replace_with", full_after_the_first_results)
    code, line = run_cli(capsys, [*SMALL, "--out", str(out)])
    assert code == 3
    assert line.startswith(f"python -m flaxmnist.sweep: error: --out {out}: no space left on")
    assert "writing results.jsonl" in line and "run again into the same directory" in line
    assert len((out / "results.jsonl").read_text().splitlines()) == 12  # the first call
    monkeypatch.undo()
    assert main([*SMALL, "--out", str(out)]) == 0
    assert len((out / "results.jsonl").read_text().splitlines()) == 24


def test_a_torn_manifest_is_named_and_nothing_runs(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*SMALL, "--out", str(out)]) == 0
    before = (out / "results.jsonl").read_bytes()
    (out / "manifest.json").write_text('{"fingerprint": "ab')
    capsys.readouterr()
    code, line = run_cli(capsys, [*SMALL, "--out", str(out)])
    assert code == 3
    assert f"{out / 'manifest.json'} line 1: not JSON (Unterminated string" in line
    assert (out / "results.jsonl").read_bytes() == before


def test_a_torn_last_record_is_trained_again_with_a_one_line_warning(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*SMALL, "--out", str(out)]) == 0
    complete = (out / "results.jsonl").read_text()
    (out / "results.jsonl").write_text(complete[:-40])
    capsys.readouterr()
    code, line = run_cli(capsys, [*SMALL, "--out", str(out)])
    assert code == 0
    assert line.startswith(f"python -m flaxmnist.sweep: warning: {out / 'results.jsonl'} line 24")
    assert (out / "results.jsonl").read_text() == complete


def test_a_model_too_large_for_memory_is_refused_before_anything_runs(tmp_path, capsys):
    spec = tmp_path / "huge.toml"
    spec.write_text("[base]\nhidden = [2000000]\n[grid]\nlearning_rate = [0.001]\n")
    out = tmp_path / "run"
    code, line = run_cli(capsys, [str(spec), "--out", str(out), "--memory-budget", "12G"])
    assert code == 3
    assert "one lane of 784-2000000-10 needs about" in line and "budget of 12.0 GiB" in line
    assert not out.exists()


@pytest.fixture
def tiny_disk(tmp_path):
    """A 32 KiB tmpfs: a real full disk (needs root; skipped elsewhere)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    command = ["mount", "-t", "tmpfs", "-o", "size=32k", "tmpfs", str(mount)]
    if subprocess.run(command, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (not root)")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def test_a_real_full_disk(tiny_disk, tmp_path):
    """Wherever the disk fills (results, manifest or report), one line, exit 3, whole records
    kept, and the directory, moved to a larger disk, resumes."""
    out = tiny_disk / "run"
    command = [sys.executable, "-m", "flaxmnist.sweep", *SMALL, "--out", str(out)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 3, result.stderr
    assert result.stderr.count("\n") == 1 and "no space left" in result.stderr.lower()
    kept = (
        (out / "results.jsonl").read_text().splitlines() if (out / "results.jsonl").exists() else []
    )
    assert len(kept) % 12 == 0 and all(json.loads(line)["study"] == "lr" for line in kept)
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    command[-1] = str(moved)
    subprocess.run(command, check=True, capture_output=True, timeout=600)
    resumed = (moved / "results.jsonl").read_text().splitlines()
    assert len(resumed) == 24 and resumed[: len(kept)] == kept


def test_nothing_to_resume_means_no_resume_hint(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default run directory, runs/<study>-<time>, goes here
    spec = tmp_path / "huge.toml"
    spec.write_text("[base]\nhidden = [2000000]\n[grid]\nlearning_rate = [0.001]\n")
    code, line = run_cli(capsys, [str(spec), "--memory-budget", "12G"])
    assert code == 3 and "needs about" in line and "to resume" not in line
    assert not (tmp_path / "runs").exists()


def test_warnings_are_one_line_and_only_while_the_cli_runs(capsys):
    import warnings

    from flaxmnist.errors import FlaxmnistWarning, one_line_warnings

    with one_line_warnings("prog"):
        warnings.warn("kept short\nsecond line", FlaxmnistWarning, stacklevel=1)
        warnings.warn("from elsewhere", DeprecationWarning, stacklevel=1)
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "prog: warning: kept short"
    assert lines[1].startswith("prog: warning: DeprecationWarning: from elsewhere (")
    assert len(lines) == 2
    assert warnings.showwarning.__module__ == "warnings"  # restored


@pytest.fixture(scope="module")
def search_run(tmp_path_factory):
    """A small random search run by the command, its spec with a description; the run
    directory and what the command printed (stdout and stderr, in one string each)."""
    folder = tmp_path_factory.mktemp("search")
    spec = folder / "few.toml"
    spec.write_text(
        'description = "two learning rates, drawn"\nstrategy = "random"\nsamples = 2\n'
        "seed = 0\n[base]\nhidden = [16]\nbatch_size = 100\n"
        "[search]\nlearning_rate = { log_uniform = [1e-3, 3e-2] }\n"
    )
    argv = [str(spec), "--epochs", "1", "--limit-train", "300", "--seeds", "1"]
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main([*argv, "--out", str(folder / "out")]) == 0
    return folder / "out", out.getvalue(), err.getvalue()


def test_a_search_says_its_greedy_ensemble_once_and_counts_one_seed_as_one(search_run):
    _, out, err = search_run
    terminal = (out + err).splitlines()
    assert sum("greedy ensemble of configurations" in line for line in terminal) == 1
    summary = next(line for line in terminal if "training FLOPs" in line)
    assert "2 configs x 1 seed;" in summary and "seeds" not in summary


def test_every_figure_of_a_run_is_a_png_a_pdf_and_an_svg(search_run):
    out, _, _ = search_run
    for figure in ("few-accuracy", "few-curves", "few-search"):
        for kind in ("png", "pdf", "svg"):
            assert (out / f"{figure}.{kind}").stat().st_size > 5_000, f"{figure}.{kind}"


def test_the_manifest_keeps_the_spec_and_the_report_shows_the_sweeps_titles(search_run, capsys):
    out, printed, _ = search_run
    spec = json.loads((out / "manifest.json").read_text())["specs"]["few"]
    assert spec["description"] == "two learning rates, drawn"
    assert spec["source"].endswith("few.toml")
    resolved = spec["resolved"]
    assert resolved["strategy"] == "random" and resolved["samples"] == 2
    assert resolved["base"]["hidden"] == [16] and resolved["base"]["batch_size"] == 100
    assert resolved["base"]["epochs"] == 1  # --epochs, as it ran
    assert resolved["base"]["learning_rate"] == flaxmnist.Config().learning_rate  # a default
    title = next(line for line in printed.splitlines() if line.startswith("study few"))
    assert '"two learning rates, drawn"' in title
    assert report_main([str(out)]) == 0
    assert title in capsys.readouterr().out.splitlines()
