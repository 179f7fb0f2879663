import numpy as np

from flaxmnist.run.records import json_float, make_records
from flaxmnist.specs.config import HISTORY_KEYS


def test_json_float_round_trips_float32_and_writes_nonfinite_as_null():
    value = np.float32(0.1) * np.float32(3)
    assert np.float32(json_float(value)) == value
    assert json_float(np.nan) is None and json_float(np.inf) is None


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
