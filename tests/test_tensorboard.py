"""report --tensorboard: TensorBoard's own files, read back with TensorBoard's own reader,
hold every number of results.jsonl and the HParams tab's sessions."""

import subprocess
import sys

import numpy as np
import pytest

from flaxmnist import run_sweep
from flaxmnist.report.tensorboard import METRICS, lane_hparams, lane_run, write_tensorboard
from flaxmnist.specs.config import HISTORY_KEYS, parse_spec

pytest.importorskip("tensorboard", reason="the tensorboard extra (in dev) is not installed")
from tensorboard.backend.event_processing import event_accumulator  # noqa: E402
from tensorboard.plugins.hparams import metadata  # noqa: E402


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("tb") / "run"
    spec = {
        "base": {"hidden": [8], "epochs": 3},
        "grid": {"learning_rate": [0.01, 0.003], "hidden": [[8], [4, 4]]},
    }
    study = parse_spec(spec, name="g", source="g.toml")
    records = run_sweep(study, seeds=2, limit_train=600, quiet=True, out=out)
    return out, records


def read(folder):
    reader = event_accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0})
    reader.Reload()
    return reader


def test_every_lane_is_a_run_whose_scalars_are_the_records_numbers(run, tmp_path):
    out, records = run
    done = subprocess.run(
        [sys.executable, "-m", "flaxmnist.report", str(out), "--tensorboard", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert f"wrote 8 TensorBoard runs under {tmp_path}" in done.stdout
    for record in records:
        reader = read(tmp_path / lane_run(record))
        assert sorted(reader.Tags()["scalars"]) == sorted(HISTORY_KEYS)
        for key in HISTORY_KEYS:
            events = reader.Scalars(key)
            assert [e.step for e in events] == [1, 2, 3]
            # float32 in the file, as in the record: equal to the last bit
            assert [e.value for e in events] == [np.float32(v) for v in record["history"][key]]


def test_each_lane_has_an_hparams_session_grouped_by_configuration(run, tmp_path):
    _, records = run
    write_tensorboard(records, tmp_path)
    for record in records:
        reader = read(tmp_path / lane_run(record))
        content = reader.SummaryMetadata(metadata.SESSION_START_INFO_TAG).plugin_data.content
        session = metadata.parse_session_start_info_plugin_data(content)
        hparams = {k: v.WhichOneof("kind") and getattr(v, v.WhichOneof("kind"))
                   for k, v in session.hparams.items()}  # fmt: skip
        assert hparams == {
            "study": "g",
            "seeds": "0, 1",  # the group's seeds: its row in the tab stands for both
            "learning_rate": record["config"]["learning_rate"],
            "hidden": str(record["config"]["hidden"]),
        }
        assert session.group_name == f"g/config-{record['config_index'] + 1:03d}"


def test_writing_again_replaces_the_earlier_files_and_a_missing_package_is_one_line(
    run, tmp_path, monkeypatch
):
    _, records = run
    write_tensorboard(records, tmp_path)
    write_tensorboard(records, tmp_path)
    folder = tmp_path / lane_run(records[0])
    assert len(list(folder.glob("events.out.tfevents.*"))) == 1
    assert len(read(folder).Scalars("val_accuracy")) == 3
    monkeypatch.setitem(sys.modules, "tensorboard.summary.writer.event_file_writer", None)
    with pytest.raises(ImportError, match=r"pip install 'flaxmnist\[tensorboard\]'"):
        write_tensorboard(records, tmp_path)


def experiment(logdir):
    """The HParams experiment in ``logdir``: its columns and its metrics, in order."""
    reader = read(logdir)
    content = reader.SummaryMetadata(metadata.EXPERIMENT_TAG).plugin_data.content
    parsed = metadata.parse_experiment_plugin_data(content)
    return [h.name for h in parsed.hparam_infos], [m.name.tag for m in parsed.metric_infos]


def test_the_experiment_puts_what_selects_first_and_keeps_earlier_columns(run, tmp_path):
    _, records = run
    write_tensorboard(records, tmp_path)
    columns, metrics = experiment(tmp_path)
    assert columns == ["study", "seeds", "hidden", "learning_rate"]
    assert metrics == list(METRICS) and metrics[0] == "val_accuracy"
    assert metrics[-2:] == ["test_accuracy", "test_loss"]
    other = [{**r, "study": "d", "config": {**r["config"], "dropout": [0.5]}} for r in records[:1]]
    other.append(
        {**other[0], "config_index": 1, "config": {**other[0]["config"], "dropout": [0.1]}}
    )
    write_tensorboard(other, tmp_path)  # another run into the same LOGDIR
    assert experiment(tmp_path)[0] == ["study", "seeds", "hidden", "learning_rate", "dropout"]
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 1


def test_integers_are_shown_as_written():
    record = {"study": "g", "config": {"batch_size": 200, "augment_shift": 2, "dropout": [0.5]}}
    shown = lane_hparams(record, ["batch_size", "augment_shift", "dropout"], "0")
    integers = {"batch_size": "200", "augment_shift": "2"}
    assert shown == {"study": "g", "seeds": "0", **integers, "dropout": 0.5}
