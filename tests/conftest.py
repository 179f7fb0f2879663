"""Shared fixtures: the shipped MNIST, loaded once, and small splits of it."""

import os
import tempfile

import pytest

from flaxmnist.core.data import DataSplits, load_mnist, make_splits

# CLI tests enable the persistent compilation cache: keep it out of the user's home.
os.environ.setdefault("FLAXMNIST_COMPILE_CACHE", tempfile.mkdtemp(prefix="flaxmnist-cache-"))


@pytest.fixture(scope="session")
def mnist():
    return load_mnist()


@pytest.fixture(scope="session")
def small_splits(mnist) -> DataSplits:
    """1,000 training images, 500 holdout and 500 test images: fast but real."""
    splits = make_splits(mnist, limit_train=1000)
    return splits._replace(
        val_images=splits.val_images[:500],
        val_labels=splits.val_labels[:500],
        test_images=splits.test_images[:500],
        test_labels=splits.test_labels[:500],
    )
