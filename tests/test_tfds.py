"""The TensorFlow Datasets source, offline: run by ``nox -s tfds`` (skipped without TFDS).

TFDS's ``mnist`` builder is subclassed so that its URL points at the IDX files shipped with
flaxmnist; preparing it then needs no network, and what TFDS yields must be the same
images with the same labels as the NumPy loader's (as a set: TFDS stores another order).
"""

import numpy as np
import pytest

tfds = pytest.importorskip("tensorflow_datasets")

from tensorflow_datasets.image_classification import mnist as tfds_mnist  # noqa: E402

from flaxmnist.core.data import load_mnist, shipped_mnist_dir  # noqa: E402
from flaxmnist.core.sources import arrays_from_tfds_builder, load_tfds  # noqa: E402


class OfflineMnist(tfds_mnist.MNIST, skip_registration=True):
    """TFDS's MNIST builder, named ``mnist``, reading the shipped IDX files."""

    name = "mnist"
    URL = shipped_mnist_dir().as_uri() + "/"


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    builder = OfflineMnist(data_dir=str(data_dir))
    builder.download_and_prepare(download_dir=str(data_dir / "downloads"))
    return data_dir, builder


def as_set(images, labels):
    rows = np.concatenate([images.reshape(len(images), -1), labels[:, None]], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


def test_tfds_mnist_equals_the_idx_files_as_a_set(prepared):
    _, builder = prepared
    from_tfds = arrays_from_tfds_builder(builder)
    from_idx = load_mnist()
    for split in ("train", "test"):
        images = getattr(from_tfds, f"{split}_images")
        labels = getattr(from_tfds, f"{split}_labels")
        assert images.shape == getattr(from_idx, f"{split}_images").shape
        assert images.dtype == np.uint8 and labels.dtype == np.uint8
        np.testing.assert_array_equal(
            as_set(images, labels),
            as_set(getattr(from_idx, f"{split}_images"), getattr(from_idx, f"{split}_labels")),
        )
    # TFDS shuffles when it prepares: same set, other order.
    assert not np.array_equal(from_tfds.train_labels[:100], from_idx.train_labels[:100])


def test_load_tfds_reads_a_prepared_dataset_without_the_network(prepared):
    data_dir, builder = prepared
    arrays = load_tfds("mnist", tfds_data_dir=data_dir)
    np.testing.assert_array_equal(arrays.test_labels, arrays_from_tfds_builder(builder).test_labels)
    assert arrays.train_images.shape == (60000, 28, 28)
