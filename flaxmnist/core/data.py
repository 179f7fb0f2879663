"""MNIST-format data: IDX parsing, checksums and the train / holdout / test split.

Everything here is NumPy and files; nothing knows about models or training. Images stay
uint8 ``(N, 28, 28)`` all the way to the device: the scaling to [0, 1] happens inside the
compiled training code, so the host never holds a float copy and the device holds a quarter
of the bytes.

No network access happens here, ever: the default source is the copy of MNIST shipped
inside the package, and ``data_dir`` reads any local directory with the same four IDX files
(Fashion-MNIST and KMNIST are distributed in this format). ``flaxmnist.core.sources`` adds the
optional TensorFlow Datasets source.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from importlib import resources
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np

from flaxmnist.errors import DataError, SettingsError

TRAIN_IMAGES = "train-images-idx3-ubyte"
TRAIN_LABELS = "train-labels-idx1-ubyte"
TEST_IMAGES = "t10k-images-idx3-ubyte"
TEST_LABELS = "t10k-labels-idx1-ubyte"

#: SHA-256 of the *uncompressed* original MNIST files (the gzip wrappers may differ).
MNIST_SHA256 = {
    TRAIN_IMAGES: "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    TRAIN_LABELS: "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    TEST_IMAGES: "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    TEST_LABELS: "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
}

_IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
_LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension
NUM_CLASSES = 10
HOLDOUT_SIZE = 10_000


class MnistArrays(NamedTuple):
    """The four arrays of an MNIST-format dataset, in file order, on the host."""

    train_images: np.ndarray  # uint8 (60000, 28, 28)
    train_labels: np.ndarray  # uint8 (60000,)
    test_images: np.ndarray  # uint8 (10000, 28, 28)
    test_labels: np.ndarray  # uint8 (10000,)


class DataSplits(NamedTuple):
    """What training sees: a train split, a validation split and the test set.

    A NamedTuple is a JAX pytree, so the whole thing can be passed to a jitted function
    (as an argument: closing over it would bake 47 MB of constants into the program).
    """

    train_images: np.ndarray
    train_labels: np.ndarray
    val_images: np.ndarray
    val_labels: np.ndarray
    test_images: np.ndarray
    test_labels: np.ndarray


def shipped_mnist_dir() -> Path:
    """The directory of the MNIST copy shipped inside the package."""
    return Path(str(resources.files("flaxmnist") / "datasets" / "mnist"))


def _read_bytes(directory: Path, name: str) -> tuple[bytes, Path]:
    """Uncompressed bytes of ``name`` or ``name.gz`` in ``directory``."""
    plain, packed = directory / name, directory / f"{name}.gz"
    if plain.is_file():
        return plain.read_bytes(), plain
    if packed.is_file():
        try:
            return gzip.decompress(packed.read_bytes()), packed
        except EOFError:
            raise DataError(f"{packed}: truncated gzip stream (the file was cut short)") from None
        except (OSError, zlib.error) as err:  # BadGzipFile (bad header, CRC) is an OSError
            raise DataError(f"{packed}: corrupt gzip data ({err})") from None
    raise DataError(f"{directory}: missing {name} (looked for {name} and {name}.gz)")


def _parse_idx(raw: bytes, path: Path, magic: int) -> np.ndarray:
    """Parse an IDX file of unsigned bytes, checking magic number and length."""
    ndim = 3 if magic == _IMAGES_MAGIC else 1
    header_size = 4 * (1 + ndim)
    if len(raw) < header_size:
        raise DataError(f"{path}: truncated header ({len(raw)} bytes, need {header_size})")
    header = np.frombuffer(raw, dtype=">u4", count=1 + ndim)
    if int(header[0]) != magic:
        raise DataError(f"{path}: bad IDX magic number {int(header[0])}, expected {magic}")
    shape = tuple(int(d) for d in header[1:])
    expected = header_size + int(np.prod(shape))
    if len(raw) != expected:
        what = "truncated" if len(raw) < expected else "has trailing bytes"
        raise DataError(
            f"{path}: {what}: header says shape {shape} ({expected} bytes), file has {len(raw)}"
        )
    return np.frombuffer(raw, dtype=np.uint8, offset=header_size).reshape(shape)


def _load_file(directory: Path, name: str, magic: int, verify_checksum: bool) -> np.ndarray:
    raw, path = _read_bytes(directory, name)
    if verify_checksum:
        digest = hashlib.sha256(raw).hexdigest()
        if digest != MNIST_SHA256[name]:
            raise DataError(
                f"{path}: SHA-256 of the uncompressed bytes is {digest}, expected "
                f"{MNIST_SHA256[name]} (the file is corrupt or not the original MNIST)"
            )
    return _parse_idx(raw, path, magic)


def load_mnist(
    data_dir: str | Path | None = None, verify_checksums: bool | None = None
) -> MnistArrays:
    """Load an MNIST-format dataset into uint8 NumPy arrays, in the files' order.

    Args:
      data_dir: a directory holding the four IDX files (``train-images-idx3-ubyte`` etc.,
        plain or ``.gz``). ``None`` reads the copy of MNIST shipped with the package and
        verifies the SHA-256 of each file; any other directory is only checked for valid
        IDX headers and consistent sizes (so Fashion-MNIST or KMNIST load too).
      verify_checksums: force the SHA-256 check on (``True``, for a copy of MNIST) or off;
        ``None`` checks the shipped copy only.

    Returns:
      ``MnistArrays`` with images ``(N, rows, cols)`` and labels ``(N,)``, both uint8.

    Raises:
      DataError: a file is missing, truncated or corrupt, naming the file and the fault.

    Example::

        >>> import flaxmnist
        >>> mnist = flaxmnist.load_mnist()
        >>> mnist.train_images.shape, mnist.train_images.dtype, mnist.train_labels[:5]
        ((60000, 28, 28), dtype('uint8'), array([5, 0, 4, 1, 9], dtype=uint8))
    """
    verify = data_dir is None if verify_checksums is None else verify_checksums
    directory = shipped_mnist_dir() if data_dir is None else Path(data_dir)
    if not directory.is_dir():
        raise DataError(f"{directory}: not a directory")
    arrays = MnistArrays(
        train_images=_load_file(directory, TRAIN_IMAGES, _IMAGES_MAGIC, verify),
        train_labels=_load_file(directory, TRAIN_LABELS, _LABELS_MAGIC, verify),
        test_images=_load_file(directory, TEST_IMAGES, _IMAGES_MAGIC, verify),
        test_labels=_load_file(directory, TEST_LABELS, _LABELS_MAGIC, verify),
    )
    for split in ("train", "test"):
        images, labels = getattr(arrays, f"{split}_images"), getattr(arrays, f"{split}_labels")
        if len(images) != len(labels):
            raise DataError(
                f"{directory}: {split} has {len(images)} images but {len(labels)} labels"
            )
        if labels.size and labels.max() >= NUM_CLASSES:
            raise DataError(f"{directory}: {split} labels go up to {labels.max()}, expected 0-9")
    if arrays.train_images.shape[1:] != arrays.test_images.shape[1:]:
        raise DataError(
            f"{directory}: train images are {arrays.train_images.shape[1:]}, "
            f"test images {arrays.test_images.shape[1:]}"
        )
    return arrays


ValidateOn = Literal["holdout", "test"]


def make_splits(
    arrays: MnistArrays,
    validate_on: ValidateOn = "holdout",
    holdout_size: int = HOLDOUT_SIZE,
    limit_train: int | None = None,
) -> DataSplits:
    """Split a dataset into what is trained on, what selects models, and the test set.

    Args:
      arrays: the loaded dataset.
      validate_on: ``"holdout"`` (default, honest) trains on all but the last
        ``holdout_size`` training images and validates on those, which are never trained on.
        ``"test"`` reproduces the reference notebook: train on every training image and
        "validate" on the test set, so that selection sees the test set.
      holdout_size: size of the holdout, taken from the end of the training files.
      limit_train: train on only the first ``limit_train`` images of the train split (for
        quick looks and tests). The holdout and the test set are not affected.

    Returns:
      ``DataSplits``; the test set is always the dataset's own test files.

    Raises:
      SettingsError: a bad ``validate_on``, ``holdout_size`` or ``limit_train``.

    Example::

        >>> import flaxmnist
        >>> splits = flaxmnist.make_splits(flaxmnist.load_mnist(), limit_train=5000)
        >>> len(splits.train_images), len(splits.val_images), len(splits.test_images)
        (5000, 10000, 10000)
    """
    if validate_on not in ("holdout", "test"):
        raise SettingsError(
            "expected 'holdout' or 'test'", parameter="validate_on", value=validate_on
        )
    images, labels = arrays.train_images, arrays.train_labels
    if validate_on == "holdout":
        if not 0 < holdout_size < len(images):
            raise SettingsError(
                f"must be between 1 and {len(images) - 1}",
                parameter="holdout_size",
                value=holdout_size,
            )
        cut = len(images) - holdout_size
        train_images, train_labels = images[:cut], labels[:cut]
        val_images, val_labels = images[cut:], labels[cut:]
    else:
        train_images, train_labels = images, labels
        val_images, val_labels = arrays.test_images, arrays.test_labels
    if limit_train is not None:
        if not 0 < limit_train <= len(train_images):
            raise SettingsError(
                f"must be between 1 and {len(train_images)} (the train split's size)",
                parameter="limit_train",
                value=limit_train,
            )
        train_images, train_labels = train_images[:limit_train], train_labels[:limit_train]
    return DataSplits(
        train_images=train_images,
        train_labels=train_labels,
        val_images=val_images,
        val_labels=val_labels,
        test_images=arrays.test_images,
        test_labels=arrays.test_labels,
    )


def chance_accuracy(labels: np.ndarray) -> np.float32:
    """The accuracy of always guessing the most common class of ``labels``.

    In float32, as training computes accuracies, so that a network predicting that class
    for every image compares equal to it, not one rounding step above.
    """
    return np.float32(np.bincount(labels).max()) / np.float32(len(labels))
