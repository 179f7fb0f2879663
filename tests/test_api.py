"""The public API: narrow, every name documented with an example, and the examples run."""

import doctest
import importlib

import pytest

import flaxmnist

#: The modules whose docstring examples are run here.
DOCTESTED = [
    "flaxmnist.errors",
    "flaxmnist.core.data",
    "flaxmnist.specs.keys",
    "flaxmnist.specs.config",
    "flaxmnist.core.train",
    "flaxmnist.run.progress",
    "flaxmnist.devices.machine",
    "flaxmnist.run.plan",
    "flaxmnist.runner",
    "flaxmnist.report",
    "flaxmnist.report.table",
    "flaxmnist.report.plots",
    "flaxmnist.run.checkpoint",
    "flaxmnist.search.trials",
    "flaxmnist.search.halving",
    "flaxmnist.search.hyperband",
    "flaxmnist.report.stats",
    "flaxmnist.core.augment",
    "flaxmnist.run.ensemble",
]


def test_the_public_api_is_narrow_and_every_name_has_an_example():
    assert len(flaxmnist.__all__) <= 24
    for name in flaxmnist.__all__:
        doc = getattr(flaxmnist, name).__doc__ or ""
        assert "Example::" in doc and ">>> " in doc, name


@pytest.mark.heavy  # and run by nox -s docs
@pytest.mark.parametrize("module", DOCTESTED)
def test_docstring_examples_run(module):
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    failed, attempted = doctest.testmod(importlib.import_module(module), optionflags=flags)
    assert attempted > 0 and failed == 0
