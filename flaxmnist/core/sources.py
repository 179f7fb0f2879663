"""Where a dataset comes from: ``"mnist"`` (the shipped copy, or IDX files in a folder) or
``"tfds:NAME"`` (TensorFlow Datasets, the ``tfds`` extra; it downloads on first use, for users
who are online). Every source gives the same uint8 ``MnistArrays``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from flaxmnist.core.data import NUM_CLASSES, MnistArrays, load_mnist
from flaxmnist.errors import DataError

TFDS_PREFIX = "tfds:"
TFDS_INSTALL_HINT = (
    "TensorFlow Datasets needs TensorFlow to build datasets: pip install 'flaxmnist[tfds]'"
)


def arrays_from_tfds_builder(builder) -> MnistArrays:
    """The train and test splits of a prepared TFDS image builder as ``MnistArrays``.

    Images lose their channel axis (``(N, 28, 28, 1)`` becomes ``(N, 28, 28)``); labels
    become uint8 and must lie in 0-9. TFDS's own example order is kept (it is not the IDX
    files' order, so the holdout is not the same 10,000 images as with the IDX files).
    """
    import tensorflow_datasets as tfds

    splits = []
    for split in ("train", "test"):
        images, labels = tfds.as_numpy(
            builder.as_dataset(split=split, batch_size=-1, as_supervised=True)
        )
        if images.ndim == 4 and images.shape[-1] == 1:
            images = images[..., 0]
        if images.ndim != 3 or images.dtype != np.uint8:
            raise DataError(
                f"tfds:{builder.name}: expected uint8 grey images, got {images.dtype} "
                f"{images.shape}"
            )
        if labels.size and (labels.min() < 0 or labels.max() >= NUM_CLASSES):
            raise DataError(f"tfds:{builder.name}: labels go up to {labels.max()}, expected 0-9")
        splits += [images, labels.astype(np.uint8)]
    return MnistArrays(*splits)


def load_tfds(name: str, tfds_data_dir: str | Path | None = None) -> MnistArrays:
    """Load an MNIST-like dataset from TensorFlow Datasets (``fashion_mnist``, ``kmnist``…).

    This is the one data path that may use the network: TFDS downloads and prepares the
    dataset on first use (into ``tfds_data_dir``, default ``~/tensorflow_datasets``). It
    needs the ``tfds`` extra (TensorFlow Datasets and TensorFlow).

    Raises:
      DataError: TFDS is not installed (saying how to install it), the name is unknown, or
        the dataset is not 10-class uint8 grey images.
    """
    try:
        import tensorflow_datasets as tfds
    except ImportError:
        raise DataError(TFDS_INSTALL_HINT, parameter="dataset", value=TFDS_PREFIX + name) from None
    try:
        builder = tfds.builder(name, data_dir=None if tfds_data_dir is None else str(tfds_data_dir))
        builder.download_and_prepare()
    except Exception as err:  # TFDS raises many types: unknown names, network, missing TF
        raise DataError(
            f"{type(err).__name__}: {err}", parameter="dataset", value=TFDS_PREFIX + name
        ) from None
    return arrays_from_tfds_builder(builder)


def load_dataset(dataset: str = "mnist", data_dir: str | Path | None = None) -> MnistArrays:
    """Load ``"mnist"`` (the shipped copy, or the IDX files in ``data_dir``) or ``"tfds:NAME"``.

    Raises:
      DataError: as ``load_mnist`` and ``load_tfds``; or an unknown dataset name.
    """
    if dataset == "mnist":
        return load_mnist(data_dir)
    if dataset.startswith(TFDS_PREFIX) and len(dataset) > len(TFDS_PREFIX):
        if data_dir is not None:
            raise DataError(
                f"reads IDX files; it does not combine with {dataset}",
                parameter="data_dir",
                value=data_dir,
            )
        return load_tfds(dataset[len(TFDS_PREFIX) :])
    raise DataError(
        "unknown dataset: expected 'mnist' or 'tfds:NAME'", parameter="dataset", value=dataset
    )
