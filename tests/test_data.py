import gzip
import hashlib
import shutil

import numpy as np
import pytest

from flaxmnist.core.data import (
    MNIST_SHA256,
    TEST_LABELS,
    TRAIN_IMAGES,
    TRAIN_LABELS,
    DataError,
    load_mnist,
    make_splits,
    shipped_mnist_dir,
)
from flaxmnist.errors import SettingsError


def test_shapes_dtypes_and_first_labels(mnist):
    assert mnist.train_images.shape == (60000, 28, 28)
    assert mnist.test_images.shape == (10000, 28, 28)
    assert mnist.train_labels.shape == (60000,)
    assert mnist.test_labels.shape == (10000,)
    for array in mnist:
        assert array.dtype == np.uint8
    assert mnist.train_labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert mnist.test_labels[:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert mnist.train_images.max() == 255 and mnist.train_images.min() == 0
    assert set(np.unique(mnist.train_labels)) == set(range(10))


def test_shipped_files_match_published_checksums():
    for name, digest in MNIST_SHA256.items():
        raw = gzip.decompress((shipped_mnist_dir() / f"{name}.gz").read_bytes())
        assert hashlib.sha256(raw).hexdigest() == digest


@pytest.fixture
def copy_dir(tmp_path):
    for path in shipped_mnist_dir().glob("*.gz"):
        shutil.copy(path, tmp_path / path.name)
    return tmp_path


def test_other_directory_loads_plain_and_gzipped(copy_dir, mnist):
    raw = gzip.decompress((copy_dir / f"{TEST_LABELS}.gz").read_bytes())
    (copy_dir / f"{TEST_LABELS}.gz").unlink()
    (copy_dir / TEST_LABELS).write_bytes(raw)
    arrays = load_mnist(copy_dir)
    np.testing.assert_array_equal(arrays.test_labels, mnist.test_labels)


def test_corrupted_copy_fails_the_checksum(copy_dir):
    path = copy_dir / f"{TRAIN_LABELS}.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[100] = (raw[100] + 1) % 10  # still a valid label: only the checksum can tell
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match=rf"{TRAIN_LABELS}\.gz: SHA-256"):
        load_mnist(copy_dir, verify_checksums=True)
    assert load_mnist(copy_dir).train_labels[100] == raw[100]  # other dirs: header checks only


def test_truncated_gzip_is_named(copy_dir):
    path = copy_dir / f"{TRAIN_IMAGES}.gz"
    path.write_bytes(path.read_bytes()[:100_000])
    with pytest.raises(DataError, match=rf"{TRAIN_IMAGES}\.gz: truncated"):
        load_mnist(copy_dir)


def test_truncated_idx_payload_is_named(copy_dir):
    path = copy_dir / f"{TRAIN_LABELS}.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-7]))
    with pytest.raises(DataError, match=rf"{TRAIN_LABELS}\.gz: truncated.*60000"):
        load_mnist(copy_dir)


def test_bad_magic_and_garbage_and_missing(copy_dir):
    path = copy_dir / f"{TRAIN_LABELS}.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[3] = 3
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="magic number 2051"):
        load_mnist(copy_dir)
    path.write_bytes(b"not a gzip file at all")
    with pytest.raises(DataError, match=rf"{TRAIN_LABELS}\.gz: corrupt gzip"):
        load_mnist(copy_dir)
    path.unlink()
    with pytest.raises(DataError, match=f"missing {TRAIN_LABELS}"):
        load_mnist(copy_dir)


def test_label_count_mismatch(copy_dir):
    path = copy_dir / f"{TEST_LABELS}.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[4:8] = (9999).to_bytes(4, "big")
    path.write_bytes(gzip.compress(bytes(raw[:-1])))
    with pytest.raises(DataError, match="10000 images but 9999 labels"):
        load_mnist(copy_dir)


def test_holdout_split_is_the_last_10000_training_images(mnist):
    splits = make_splits(mnist)
    assert splits.train_images.shape[0] == 50000
    np.testing.assert_array_equal(splits.val_images, mnist.train_images[50000:])
    np.testing.assert_array_equal(splits.train_labels, mnist.train_labels[:50000])
    np.testing.assert_array_equal(splits.test_labels, mnist.test_labels)


def test_test_protocol_and_limit_train(mnist):
    splits = make_splits(mnist, validate_on="test", limit_train=123)
    assert splits.train_images.shape[0] == 123
    np.testing.assert_array_equal(splits.val_labels, mnist.test_labels)
    full = make_splits(mnist, validate_on="test")
    assert full.train_images.shape[0] == 60000


@pytest.mark.parametrize(
    "kwargs", [{"validate_on": "train"}, {"limit_train": 0}, {"limit_train": 50001}]
)
def test_bad_split_arguments(mnist, kwargs):
    ((name, value),) = kwargs.items()
    with pytest.raises(SettingsError, match=f"^{name}={value!r}: "):
        make_splits(mnist, **kwargs)
