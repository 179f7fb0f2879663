import errno
import json

import pytest

from flaxmnist.errors import RunDirError, SettingsError
from flaxmnist.run import rundir
from flaxmnist.run.rundir import (
    fingerprint,
    open_run_dir,
    read_jsonl,
    with_defaults,
    write_jsonl_atomic,
    write_results,
)
from flaxmnist.specs.config import Config

SETTINGS = {
    "studies": [{"name": "t", "configs": [Config(hidden=(8,)).to_dict()]}],
    "seeds": 1,
    "dataset": "mnist",
    "validate_on": "holdout",
    "train_size": 300,
    "dtype": "float32",
    "first_seed": 0,
    "budget": None,
    "precision": "float32",
    "warm_start": None,
}


def result(config):
    """A whole record, as results.jsonl holds it, of ``config``."""
    accuracies = {"val_accuracy": 0.5, "test_accuracy": 0.5}
    return {"study": "t", "config": config, "config_index": 0, "seed": 0,
            "history": {k: [v] for k, v in accuracies.items()}, **accuracies,
            "diverged": False, "at_chance": False}  # fmt: skip


def test_write_jsonl_atomic_refuses_nan_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "results.jsonl"
    write_jsonl_atomic(path, [{"a": 1}])
    with pytest.raises(ValueError):
        write_jsonl_atomic(path, [{"a": float("nan")}])
    assert path.read_text() == '{"a": 1}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["results.jsonl"]
    assert read_jsonl(path) == [{"a": 1}]
    assert read_jsonl(tmp_path / "absent.jsonl") == []


def test_a_new_directory_gets_a_manifest_and_resumes_with_its_records(tmp_path):
    out = tmp_path / "run"
    assert open_run_dir(out, SETTINGS) == []
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest == {"fingerprint": fingerprint(SETTINGS), "settings": SETTINGS}
    record = result({**Config().to_dict(), "dtype": "float32"})
    write_results(out, [record])
    assert open_run_dir(out, SETTINGS) == [record]


def test_other_settings_a_file_or_a_stranger_are_refused(tmp_path):
    out = tmp_path / "run"
    open_run_dir(out, SETTINGS)
    with pytest.raises(SettingsError, match=r"out='.*run': holds a run with other settings"):
        open_run_dir(out, {**SETTINGS, "seeds": 2})
    with pytest.raises(SettingsError, match=r"changed: dtype, seeds\)"):
        open_run_dir(out, {**SETTINGS, "seeds": 2, "dtype": "bfloat16"})
    stranger = tmp_path / "other"
    stranger.mkdir()
    (stranger / "notes.txt").write_text("mine")
    with pytest.raises(SettingsError, match="holds no flaxmnist manifest"):
        open_run_dir(stranger, SETTINGS)
    (tmp_path / "file").write_text("")
    with pytest.raises(SettingsError, match="exists and is not a directory") as error:
        open_run_dir(tmp_path / "file", SETTINGS)
    assert error.value.flag_message().startswith(f"--out {tmp_path / 'file'}: ")


def test_an_older_manifest_and_its_records_read_as_today(tmp_path):
    """Written before ``loss``, ``dtype`` and ``precision`` existed: all count at their
    defaults."""
    old_config = {k: v for k, v in Config(hidden=(8,)).to_dict().items() if k != "loss"}
    old_settings = {
        k: v for k, v in SETTINGS.items() if k not in ("dtype", "precision", "warm_start")
    }
    old_settings["studies"] = [{"name": "t", "configs": [old_config]}]
    assert with_defaults(old_settings) == SETTINGS
    out = tmp_path / "run"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"settings": old_settings}))
    write_results(out, [result({**old_config, "dataset": "mnist"})])
    (record,) = open_run_dir(out, SETTINGS)
    assert record["config"]["loss"] == "cross_entropy" and record["config"]["dtype"] == "float32"


def test_a_torn_last_line_is_left_out_with_a_warning(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_text('{"a": 1}\n{"a": 2}\n{"a": ')
    with pytest.warns(UserWarning, match=r"results.jsonl line 3 is cut short .*trains its lane"):
        assert read_jsonl(path) == [{"a": 1}, {"a": 2}]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('{"a": 1}\n{oops}\n{"a": 3}\n', r"results.jsonl line 2: not JSON \(.* column 2\)"),
        ('{"a": 1}\n[1, 2]\n', r"results.jsonl line 2: not a JSON object"),
    ],
)
def test_a_broken_line_before_the_last_names_file_and_line(tmp_path, text, message):
    path = tmp_path / "results.jsonl"
    path.write_text(text)
    with pytest.raises(RunDirError, match=message):
        read_jsonl(path)


def test_a_broken_manifest_is_named_by_file_and_line(tmp_path):
    out = tmp_path / "run"
    open_run_dir(out, SETTINGS)
    lines = (out / "manifest.json").read_text().splitlines()
    lines[2] = '  "settings": {oops'
    (out / "manifest.json").write_text("\n".join(lines))
    with pytest.raises(RunDirError, match=r"manifest.json line 3: not JSON .*restore it"):
        open_run_dir(out, SETTINGS)
    (out / "manifest.json").write_text("[1, 2]")
    with pytest.raises(RunDirError, match="not a flaxmnist manifest"):
        open_run_dir(out, SETTINGS)


def test_a_full_disk_leaves_the_file_as_it_was_and_says_so(tmp_path, monkeypatch):
    out = tmp_path / "run"
    write_results(out, [{"a": 1}])

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(rundir.os, "fsync", full)
    with pytest.raises(RunDirError, match="no space left on the device while writing results"):
        write_results(out, [{"a": 1}, {"a": 2}])
    monkeypatch.undo()
    assert read_jsonl(out / "results.jsonl") == [{"a": 1}]
    assert sorted(p.name for p in out.iterdir()) == ["results.jsonl"]  # no temp file left


def test_bytes_that_are_not_text_and_records_that_are_not_results_are_named(tmp_path):
    out = tmp_path / "run"
    open_run_dir(out, SETTINGS)
    (out / "results.jsonl").write_bytes(b'{"a": "\xff"}\n')
    with pytest.raises(RunDirError, match=r"results.jsonl: not UTF-8 text \(byte 7\)"):
        open_run_dir(out, SETTINGS)
    (out / "results.jsonl").write_text('{"study": "t", "seed": 0}\n')
    with pytest.raises(RunDirError, match=r"record 1: not a flaxmnist result \(no config, "):
        open_run_dir(out, SETTINGS)


def searching(base):
    """``SETTINGS`` of a TPE search whose ``[base]`` is ``base`` (None: a manifest written
    before the base was kept)."""
    search = {"strategy": "tpe", "samples": 8, "search": {"dropout": {"uniform": [0.0, 0.5]}}}
    if base is not None:
        search["base"] = base
    return {**SETTINGS, "studies": [{"name": "t", "configs": [], "search": search}]}


def test_a_search_resumed_with_another_base_is_refused(tmp_path):
    open_run_dir(tmp_path, searching({"epochs": 3}))
    open_run_dir(tmp_path, searching({"epochs": 3}))
    with pytest.raises(SettingsError, match=r"holds a run with other settings \(changed: studies"):
        open_run_dir(tmp_path, searching({"epochs": 2}))


def test_a_search_from_before_its_base_was_kept_resumes_as_before(tmp_path):
    open_run_dir(tmp_path, searching(None))
    assert open_run_dir(tmp_path, searching({"epochs": 2})) == []
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert "base" not in manifest["settings"]["studies"][0]["search"]  # left as it was


def test_specs_are_kept_beside_the_settings_and_follow_a_new_description(tmp_path):
    first = {"t": {"description": "first words", "source": "t.toml", "resolved": {}}}
    open_run_dir(tmp_path, SETTINGS, first)
    assert rundir.read_descriptions(tmp_path) == {"t": "first words"}
    fingerprint_before = json.loads((tmp_path / "manifest.json").read_text())["fingerprint"]
    second = {"t": {**first["t"], "description": "better words"}}
    open_run_dir(tmp_path, SETTINGS, second)  # not a setting: the run resumes
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["specs"] == second and manifest["fingerprint"] == fingerprint_before
    assert rundir.read_descriptions(tmp_path / "nowhere") == {}
