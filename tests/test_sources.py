import sys

import pytest

from flaxmnist.core import sources
from flaxmnist.core.sources import load_dataset
from flaxmnist.errors import DataError


def test_load_dataset_dispatches_to_tfds(monkeypatch, mnist):
    calls = []
    monkeypatch.setattr(sources, "load_tfds", lambda name: calls.append(name) or mnist)
    assert load_dataset("tfds:fashion_mnist") is mnist
    assert calls == ["fashion_mnist"]
    assert load_dataset("mnist").train_labels[0] == 5
    with pytest.raises(DataError, match="^dataset='emnist': unknown dataset"):
        load_dataset("emnist")
    with pytest.raises(DataError, match="^dataset='tfds:': unknown dataset"):
        load_dataset("tfds:")
    with pytest.raises(DataError, match="does not combine"):
        load_dataset("tfds:kmnist", data_dir="/tmp")


def test_missing_tfds_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(
        DataError, match=r"^dataset='tfds:kmnist': .*pip install 'flaxmnist\[tfds\]'"
    ):
        load_dataset("tfds:kmnist")
