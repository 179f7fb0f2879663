import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from flaxmnist.core.train import TrainSpec, make_hyperparams
from flaxmnist.run.grid import LaneGrid
from flaxmnist.run.progress import RunStats

SPEC = TrainSpec(hidden=(16,), batch_size=250)


def grid_of(rates, small_splits, seeds=(0, 1), stats=None):
    hparams = [make_hyperparams(SPEC, rate) for rate in rates]
    return LaneGrid(SPEC, hparams, seeds, jax.device_put(small_splits), stats=stats)


def params_of(grid, config):
    """One configuration's parameters, every seed: ``[seed, ...]`` arrays."""
    return [np.asarray(x)[:, config] for x in jax.tree.leaves(grid.state.params)]


def test_step_returns_every_lanes_metrics(small_splits):
    stats = RunStats()
    grid = grid_of([1e-2, 1e-3, 1e-4], small_splits, stats=stats)
    grid.init()
    metrics = grid.step()
    assert metrics["val_accuracy"].shape == (2, 3)  # [seed, config]
    assert metrics["val_accuracy"][0, 0] != metrics["val_accuracy"][1, 0]  # seeds differ
    assert (stats.calls, stats.lane_epochs) == (1, 6)
    assert stats.programs_compiled + stats.programs_reused == 1
    with pytest.raises(RuntimeError, match="before init"):
        grid_of([1e-2], small_splits).step()


def test_keep_goes_on_with_the_kept_configurations_state(small_splits):
    stats = RunStats()
    grid = grid_of([1e-2, 1e-3, 3e-3], small_splits, stats=stats)
    grid.init()
    grid.step()
    before = params_of(grid, 2)
    assert grid.config_indices == [0, 1, 2]
    grid.keep([2, 0])
    assert grid.num_configs == 2 and grid.config_indices == [2, 0]  # names follow the lanes
    for a, b in zip(params_of(grid, 0), before, strict=True):
        np.testing.assert_array_equal(a, b)  # a gather: exactly the state it had
    kept = grid.step()
    # The same two configurations trained in a grid of their own from the start.
    alone = grid_of([3e-3, 1e-2], small_splits)
    alone.init()
    alone.step()
    expected = alone.step()
    np.testing.assert_allclose(kept["val_loss"], expected["val_loss"], rtol=1e-5)
    # A grid of 3 and a grid of 2 (compiled here, or by an earlier test of this process).
    assert stats.programs_compiled + stats.programs_reused == 2
    compiled = stats.programs_compiled
    grid.keep([1, 0])  # another grid of 2: nothing new to compile
    assert grid.config_indices == [0, 2]
    grid.step()
    assert stats.programs_compiled == compiled
    assert stats.programs_compiled + stats.programs_reused == 3
    with pytest.raises(ValueError, match="positions"):
        grid.keep([2])


def test_copy_and_set_hyperparams_make_one_lane_a_clone_of_another(small_splits):
    grid = grid_of([1e-2, 1e-3, 3e-3], small_splits)
    grid.init()
    grid.step()
    grid.copy(source=[0], target=[2])
    grid.set_hyperparams([2], [make_hyperparams(SPEC, 1e-2)])
    for a, b in zip(params_of(grid, 2), params_of(grid, 0), strict=True):
        np.testing.assert_array_equal(a, b)
    metrics = grid.step()
    np.testing.assert_array_equal(metrics["val_loss"][:, 2], metrics["val_loss"][:, 0])
    for a, b in zip(params_of(grid, 2), params_of(grid, 0), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(metrics["val_loss"][:, 1], metrics["val_loss"][:, 0])
    # A swap reads both lanes before writing either.
    one, two = params_of(grid, 1), params_of(grid, 2)
    grid.copy(source=[1, 2], target=[2, 1])
    for a, b in zip(params_of(grid, 1) + params_of(grid, 2), two + one, strict=True):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=r"copy: positions must lie in \[0, 3\)"):
        grid.copy(source=[0], target=[3])
    with pytest.raises(ValueError, match="copy: a position is given twice"):
        grid.copy(source=[0, 1], target=[2, 2])


def test_set_hyperparams_takes_effect_at_the_next_epoch(small_splits):
    grid = grid_of([1e-2, 1e-2], small_splits)
    grid.init()
    grid.step()
    frozen = params_of(grid, 1)
    grid.set_hyperparams([1], [make_hyperparams(SPEC, 0.0)])  # lr 0: nothing moves
    grid.step()
    for a, b in zip(params_of(grid, 1), frozen, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not all(np.array_equal(a, b) for a, b in zip(params_of(grid, 0), frozen, strict=True))


SCRIPT = textwrap.dedent(
    """
    import json, sys
    import jax
    import numpy as np
    jax.config.update("jax_num_cpu_devices", 2)
    from flaxmnist.core.data import load_mnist, make_splits
    from flaxmnist.run.grid import LaneGrid
    from flaxmnist.devices.placement import lane_mesh, replicate
    from flaxmnist.core.train import TrainSpec, make_hyperparams

    spec = TrainSpec(hidden=(16,), batch_size=200)
    mesh = lane_mesh()
    data = replicate(make_splits(load_mnist(), limit_train=600), mesh)
    rates = (1e-2, 1e-3, 3e-3)

    def column(grid, c):  # one configuration's parameters, every real seed
        return [np.asarray(x)[:3, c] for x in jax.tree.leaves(grid.state.params)]

    grid = LaneGrid(spec, [make_hyperparams(spec, r) for r in rates], (0, 1, 2), data, mesh=mesh)
    grid.init()
    first = grid.step()      # 3 configurations, padded to 4 columns over 2 devices
    before = column(grid, 1)
    grid.keep([1])           # 1 configuration x 3 seeds: the seeds are sharded, padded to 4
    kept_exactly = all(np.array_equal(a, b) for a, b in zip(column(grid, 0), before))
    second = grid.step()

    clones = LaneGrid(spec, [make_hyperparams(spec, r) for r in rates], (0, 1), data, mesh=mesh)
    clones.init()
    clones.step()
    clones.copy(source=[0], target=[2])  # onto the last column, the one the padding copies
    clones.set_hyperparams([2], [make_hyperparams(spec, rates[0])])
    cloned = clones.step()
    json.dump({"devices": len(mesh.devices.flat), "kept_exactly": kept_exactly,
               "first": first["val_loss"][:, 1].tolist(),
               "second": second["val_loss"][:, 0].tolist(),
               "clone": cloned["val_loss"][:, 2].tolist(),
               "source": cloned["val_loss"][:, 0].tolist()}, sys.stdout)
    """
)


def test_lane_operations_with_padding_on_two_devices():
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["devices"] == 2 and out["kept_exactly"] and len(out["second"]) == 3
    assert all(b < a for a, b in zip(out["first"], out["second"], strict=True))  # learning
    assert out["clone"] == out["source"]


def test_a_grid_refuses_hyperparameters_its_program_would_ignore(small_splits):
    spec = TrainSpec(hidden=(8,), use_input_dropout=False)
    with pytest.raises(ValueError, match="no input_dropout"):
        LaneGrid(spec, [make_hyperparams(spec, 1e-3, input_dropout=0.2)], [0], small_splits)


@pytest.mark.parametrize(("hidden", "lanes"), [((300,), 4), ((64, 32), 8)])
def test_the_lane_memory_estimate_bounds_what_xla_compiles(hidden, lanes, small_splits):
    """``plan.lane_bytes`` plans calls before anything compiles; XLA's own count of the
    compiled epoch program (the data aside) must stay within it, and not far below."""
    from flaxmnist.devices.placement import lane_mesh
    from flaxmnist.run.plan import lane_bytes

    spec = TrainSpec(hidden=hidden, batch_size=100)
    hparams = [make_hyperparams(spec, 1e-3)] * lanes
    one_device = lane_mesh(jax.devices()[:1])
    grid = LaneGrid(spec, hparams, [0], jax.device_put(small_splits), mesh=one_device)
    compiled = grid.program_bytes()
    if compiled is None:
        pytest.skip("this backend gives no memory analysis")
    data = sum(np.asarray(x).nbytes for x in small_splits)
    estimate = lanes * lane_bytes(spec)
    assert estimate / 8 < compiled - data <= estimate
    assert grid.stats.program_bytes == compiled
