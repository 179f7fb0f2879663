"""A run as TensorBoard event files: scalars per epoch and the HParams tab's sessions.

``write_tensorboard(records, logdir)`` writes one TensorBoard run per lane, in
``LOGDIR/<study>/config-<NNN>/seed-<S>`` (``NNN`` the table's 1-based configuration number):

- scalars ``train_loss``, ``train_accuracy``, ``val_loss``, ``val_accuracy``, ``test_loss``
  and ``test_accuracy`` at steps 1 … epochs (``val`` is the split that selects: the holdout,
  or the test set under the notebook's protocol), exactly the float32 numbers of
  ``results.jsonl`` (an epoch without a value, after a divergence, has no point);
- the HParams plugin's session: the lane's hyperparameters (every key any study of the run
  varies, ``study`` and ``seed``), grouped by configuration, so that the HParams tab's table,
  parallel-coordinates and scatter views show the sweep, a configuration's seeds as one
  group. TensorBoard takes the hyperparameters and metrics from the sessions themselves, so
  the event files of several runs can share one LOGDIR.

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


def lane_run(record: dict[str, Any]) -> str:
    """The TensorBoard run (a folder under LOGDIR) of a record's lane."""
    return f"{record['study']}/config-{record['config_index'] + 1:03d}/seed-{record['seed']}"


def lane_hparams(record: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """The hyperparameters of a record's lane as the HParams tab shows them: ``study``,
    ``seed`` and ``keys`` (layer widths and per-layer lists as text, ``trials.param_value``)."""
    config = {**Config().to_dict(), **record["config"]}  # keys added since an old record
    values = {key: param_value(key, config[key]) for key in keys}
    return {"study": record["study"], "seed": record["seed"], **values}


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
    folders = []
    for record in records:
        folder = Path(logdir) / lane_run(record)
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob(f"events.out.tfevents.*{SUFFIX}"):
            old.unlink()
        writer = EventFileWriter(str(folder), filename_suffix=SUFFIX)
        hparams = {k: str(v) if k in mixed else v for k, v in lane_hparams(record, keys).items()}
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
