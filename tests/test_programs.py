"""A process's compiled programs (flaxmnist.run.programs): kept, reused, and let go."""

import sys

import jax
import pytest

from flaxmnist.core.train import TrainSpec, make_hyperparams
from flaxmnist.run import programs
from flaxmnist.run.grid import LaneGrid
from flaxmnist.run.progress import RunStats


def memory_maps() -> int:
    with open("/proc/self/maps") as maps:
        return sum(1 for _ in maps)


def train_width(width, data, stats):
    spec = TrainSpec(hidden=(width,), batch_size=250)
    grid = LaneGrid(spec, [make_hyperparams(spec, 1e-3)], (0,), data, stats=stats)
    grid.init()
    grid.step()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_past_max_compiled_the_oldest_programs_and_their_machine_code_are_let_go(
    small_splits, monkeypatch
):
    """On a CPU each program's machine code takes hundreds of memory mappings, and a Linux
    process may hold 65,530: a long search that kept every program died at about 120. With
    at most 3 kept, 8 widths end with about the mappings 3 take."""
    data, stats = jax.device_put(small_splits), RunStats()
    monkeypatch.setattr(programs, "MAX_COMPILED", 3)
    programs.forget_programs()
    train_width(5, data, stats)  # what any first program maps once (runtime, thread pools)
    programs.forget_programs()
    start = memory_maps()
    for width in range(6, 9):
        train_width(width, data, stats)
    three = memory_maps() - start
    for width in range(9, 14):
        train_width(width, data, stats)
    assert len(programs._COMPILED) <= 3
    assert memory_maps() - start < 1.5 * three  # not 8/3 as many: the others are unmapped
    train_width(13, data, stats)  # the most recent is kept and reused
    assert stats.programs_reused == 1
