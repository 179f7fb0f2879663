import json

import numpy as np
import pytest

from flaxmnist.errors import SettingsError
from flaxmnist.rundir import (
    fingerprint,
    make_records,
    open_run_dir,
    read_jsonl,
    with_defaults,
    write_jsonl_atomic,
    write_results,
)
from flaxmnist.specs import HISTORY_KEYS, Config

SETTINGS = {
    "studies": [{"name": "t", "configs": [Config(hidden=(8,)).to_dict()]}],
    "seeds": 1,
    "dataset": "mnist",
    "validate_on": "holdout",
    "train_size": 300,
    "dtype": "float32",
}


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
    record = {"study": "t", "config": {**Config().to_dict(), "dtype": "float32"}, "seed": 0}
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
    """Written before ``loss`` and ``dtype`` existed: both count at their defaults."""
    old_config = {k: v for k, v in Config(hidden=(8,)).to_dict().items() if k != "loss"}
    old_settings = {k: v for k, v in SETTINGS.items() if k != "dtype"}
    old_settings["studies"] = [{"name": "t", "configs": [old_config]}]
    assert with_defaults(old_settings) == SETTINGS
    out = tmp_path / "run"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps({"settings": old_settings}))
    write_results(out, [{"study": "t", "config": {**old_config, "dataset": "mnist"}}])
    (record,) = open_run_dir(out, SETTINGS)
    assert record["config"]["loss"] == "cross_entropy" and record["config"]["dtype"] == "float32"


def test_records_from_metrics():
    # 2 seeds x 3 configurations x 2 epochs; configuration 1 of seed 0 diverges.
    shape = (2, 3, 2)
    history = {key: np.full(shape, 0.5, np.float32) for key in HISTORY_KEYS}
    history["val_accuracy"][:, 2, -1] = 0.11
    history["val_loss"][0, 1, 1] = np.nan
    history["nonfinite"] = np.zeros(shape, bool)
    history["nonfinite"][0, 1, 1] = True
    records = make_records(history, config_indices=[4, 5, 7], seeds=[0, 1], chance_accuracy=0.11)
    assert [(r["config_index"], r["seed"]) for r in records] == [
        (4, 0), (4, 1), (5, 0), (5, 1), (7, 0), (7, 1)
    ]  # fmt: skip
    assert [r["diverged"] for r in records] == [False, False, True, False, False, False]
    assert [r["at_chance"] for r in records] == [False] * 4 + [True, True]
    assert records[2]["history"]["val_loss"] == [0.5, None]
    assert records[4]["val_accuracy"] == 0.11 and records[4]["test_accuracy"] == 0.5
