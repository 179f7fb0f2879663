"""Shared fixtures: the shipped MNIST, loaded once, and small splits of it."""

import os
import shutil
import tempfile

import pytest

from flaxmnist.core.data import DataSplits, load_mnist, make_splits

# CLI tests enable the persistent compilation cache: keep it out of the user's home, in a
# directory of this session's own, removed at its end.
_COMPILE_CACHE = None
if "FLAXMNIST_COMPILE_CACHE" not in os.environ:
    _COMPILE_CACHE = tempfile.mkdtemp(prefix="flaxmnist-cache-")
    os.environ["FLAXMNIST_COMPILE_CACHE"] = _COMPILE_CACHE


def pytest_sessionfinish(session, exitstatus):
    if _COMPILE_CACHE is not None:
        shutil.rmtree(_COMPILE_CACHE, ignore_errors=True)


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
