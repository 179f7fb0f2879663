"""A run as TensorBoard event files: scalars per epoch and the HParams tab's sessions.

``write_tensorboard(records, logdir)`` writes one TensorBoard run per lane, in
``LOGDIR/<study>/config-<NNN>/seed-<S>`` (``NNN`` the table's 1-based configuration number):

- scalars ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``test_loss``
  and ``test_accuracy`` at steps 1 … epochs (``val`` is the split that selects: the holdout,
  or the test set under the notebook's protocol), exactly the float32 numbers of
  ``results.jsonl`` (an epoch without a value, after a divergence, has no point);
- the HParams plugin's session: the lane's hyperparameters (every key any study of the run
  varies, ``study``, and ``seeds``: its configuration's seeds, as text), grouped by
  configuration, so that the HParams tab's table, parallel-coordinates and scatter views
  show the sweep, a configuration's seeds as one group (its row, their mean). An integer
  is written as text (``"2"``): the tab shows a number with four decimals, ``2.0000``;
- in LOGDIR itself, the HParams experiment: its columns, the metrics in ``METRICS``'s order
  (the split that selects first, the test set last: the number not to select on). The
  event files of several runs can share one LOGDIR: a later write keeps the columns of the
  earlier ones.

It writes with TensorBoard's own event writer and protocol buffers (the ``tensorboard``
package, ``pip install 'flaxmnist[tensorboard]'``), which need no TensorFlow; the same
package shows them: ``tensorboard --logdir LOGDIR``. Writing again replaces what an earlier
write of flaxmnist left in a lane's folder (its files end in ``.flaxmnist``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flaxmnist.report.table import split_by_study
from flaxmnist.search.trials import param_value
from flaxmnist.specs.config import CONFIG_KEYS, HISTORY_KEYS, Config

SUFFIX = ".flaxmnist"
#: The HParams tab's metric columns, in this order.
METRICS = ("val_accuracy", "val_loss", "train_accuracy", "train_loss", "test_accuracy", "test_loss")


def lane_run(record: dict[str, Any]) -> str:
    """The TensorBoard run (a folder under LOGDIR) of a record's lane."""
    return f"{record['study']}/config-{record['config_index'] + 1:03d}/seed-{record['seed']}"


def lane_hparams(record: dict[str, Any], keys: Sequence[str], seeds: str = "") -> dict[str, Any]:
    """The hyperparameters of a record's lane as the HParams tab shows them: ``study``,
    ``seeds`` (the seeds of its configuration, given) and ``keys`` (layer widths and
    per-layer lists as text, ``trials.param_value``; integers as text)."""
    config = {**Config().to_dict(), **record["config"]}  # keys added since an old record
    values = {key: _shown(param_value(key, config[key])) for key in keys}
    return {"study": record["study"], "seeds": seeds, **values}


def _shown(value: Any) -> Any:
    """An integer as text, which the HParams tab shows as it is (a number gets 4 decimals)."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


def write_tensorboard(records: Sequence[dict[str, Any]], logdir: str | Path) -> list[Path]:
    """Write the event files of every lane of ``records`` under ``logdir`` (see the module);
    returns the runs' folders.

    Raises:
      ImportError: the ``tensorboard`` package is not installed (the message says how).
      OSError: ``logdir`` cannot be written.
    """
    try:
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.plugins.hparams import summary_v2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter
    except ImportError as err:
        raise ImportError(
            "--tensorboard needs the tensorboard package (no TensorFlow): "
            "pip install 'flaxmnist[tensorboard]'"
        ) from err
    keys = sorted({k for group in split_by_study(records).values() for k in _varied(group)})
    mixed = _mixed_types(records, keys)
    seeds = _seeds(records)
    _write_experiment(Path(logdir), ["study", "seeds", *keys])
    folders = []
    for record in records:
        folder = Path(logdir) / lane_run(record)
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob(f"events.out.tfevents.*{SUFFIX}"):
            old.unlink()
        writer = EventFileWriter(str(folder), filename_suffix=SUFFIX)
        lane = lane_hparams(record, keys, seeds[record["study"], record["config_index"]])
        hparams = {k: str(v) if k in mixed else v for k, v in lane.items()}
        group = lane_run(record).rsplit("/", 1)[0]
        now = time.time()
        session = summary_v2.hparams_pb(hparams, trial_id=group, start_time_secs=now)
        writer.add_event(event_pb2.Event(wall_time=now, step=0, summary=session))
        for key in HISTORY_KEYS:
            for epoch, value in enumerate(record["history"][key], 1):
                if value is None:
                    continue
                point = summary_pb2.Summary.Value(tag=key, simple_value=value)
                event = event_pb2.Event(
                    wall_time=now, step=epoch, summary=summary_pb2.Summary(value=[point])
                )
                writer.add_event(event)
        writer.close()
        folders.append(folder)
    return folders


def _varied(records: Sequence[dict[str, Any]]) -> list[str]:
    """The keys whose values, as parameters, differ between a study's records."""
    return [
        key for key in CONFIG_KEYS if len({repr(lane_hparams(r, [key])[key]) for r in records}) > 1
    ]


def _mixed_types(records: Sequence[dict[str, Any]], keys: Sequence[str]) -> set[str]:
    """Keys whose values are numbers in some lanes and text in others: written as text (an
    HParams domain has one type)."""
    mixed = set()
    for key in keys:
        kinds = {isinstance(lane_hparams(r, [key])[key], int | float) for r in records}
        if len(kinds) > 1:
            mixed.add(key)
    return mixed


def _seeds(records: Sequence[dict[str, Any]]) -> dict[tuple[str, int], str]:
    """Per (study, configuration index), its seeds as text: ``"0, 1"``."""
    seeds: dict[tuple[str, int], list[int]] = {}
    for record in records:
        seeds.setdefault((record["study"], record["config_index"]), []).append(record["seed"])
    return {key: ", ".join(map(str, sorted(values))) for key, values in seeds.items()}


def _write_experiment(logdir: Path, names: Sequence[str]) -> None:
    """The HParams experiment in ``logdir``: the columns ``names`` after those an earlier
    write left there, and ``METRICS``; replaces that earlier file."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.compat.proto import event_pb2
    from tensorboard.plugins.hparams import metadata, summary_v2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    logdir.mkdir(parents=True, exist_ok=True)
    earlier: list[str] = []
    for old in logdir.glob(f"events.out.tfevents.*{SUFFIX}"):
        for event in EventFileLoader(str(old)).Load():
            for value in event.summary.value:
                if value.tag == metadata.EXPERIMENT_TAG:
                    content = value.metadata.plugin_data.content
                    infos = metadata.parse_experiment_plugin_data(content).hparam_infos
                    earlier += [info.name for info in infos]
        old.unlink()
    columns = [*dict.fromkeys([*earlier, *names])]
    experiment = summary_v2.hparams_config_pb(
        hparams=[summary_v2.HParam(name) for name in columns],
        metrics=[summary_v2.Metric(tag) for tag in METRICS],
    )
    writer = EventFileWriter(str(logdir), filename_suffix=SUFFIX)
    writer.add_event(event_pb2.Event(wall_time=time.time(), summary=experiment))
    writer.close()
