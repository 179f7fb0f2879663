"""Pytrees on disk (atomic, any structure) and the best model kept in the run directory."""

import errno
import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxmnist.core.models import MLP, layer_names
from flaxmnist.core.train import TrainSpec, TrainState, make_hyperparams, make_optimizer
from flaxmnist.errors import RunDirError
from flaxmnist.run.checkpoint import (
    INFO_FILE,
    MODELS,
    PARAMS_FILE,
    load_tree,
    read_model,
    save_model,
    save_tree,
)


def train_state(seeds=2, configs=3):
    """A TrainState of params and AdamW (inject_hyperparams) state, ``[seed, config, ...]``:
    one lane's, stacked, with the lanes made distinct."""
    hparams = make_hyperparams(TrainSpec(hidden=(8,)), 1e-3, weight_decay=1e-4)
    params = MLP((8,)).init(jax.random.key(0), jnp.zeros((1, 784), jnp.uint8))
    lane = TrainState(params, make_optimizer(hparams).init(params))
    lanes = np.arange(seeds * configs).reshape(seeds, configs)
    return jax.tree.map(
        lambda x: np.asarray(x) + lanes.reshape(lanes.shape + (1,) * np.ndim(x)).astype(x.dtype),
        lane,
    )


def params_of(seeds=2, hidden=(8,)):
    """A Flax params dict of ``MLP(hidden)`` with a leading seed axis, numpy float32."""
    rng = np.random.default_rng(0)
    sizes = [784, *hidden, 10]
    return {
        "params": {
            name: {
                "kernel": rng.standard_normal((seeds, fan_out, fan_in), np.float32),
                "bias": rng.standard_normal((seeds, fan_out), np.float32),
            }
            for name, fan_in, fan_out in zip(
                layer_names(len(hidden)), sizes, sizes[1:], strict=False
            )
        }
    }


def assert_trees_equal(a, b):
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_an_adamw_train_state_with_lane_axes_round_trips(tmp_path):
    state = train_state()
    assert state.params["params"]["hidden_0"]["kernel"].shape == (2, 3, 8, 784)
    save_tree(tmp_path / "state.msgpack", state)
    restored = load_tree(tmp_path / "state.msgpack", state)
    assert isinstance(restored, TrainState)
    assert type(restored.opt_state) is type(state.opt_state)
    assert_trees_equal(restored, state)
    # The optimizer goes on from the restored state exactly as from the original.
    optimizer = make_optimizer(make_hyperparams(TrainSpec(hidden=(8,)), 1e-3, weight_decay=1e-4))
    lane = jax.tree.map(lambda x: x[1, 2], state)
    restored_lane = jax.tree.map(lambda x: x[1, 2], restored)
    grads = jax.tree.map(np.ones_like, lane.params)
    assert_trees_equal(
        optimizer.update(grads, restored_lane.opt_state, restored_lane.params),
        optimizer.update(grads, lane.opt_state, lane.params),
    )


def test_without_a_target_the_tree_comes_back_as_nested_dicts(tmp_path):
    params = params_of()
    save_tree(tmp_path / "p.msgpack", params)
    restored = load_tree(tmp_path / "p.msgpack")
    assert isinstance(restored, dict) and sorted(restored["params"]) == ["hidden_0", "output"]
    assert_trees_equal(restored, params)


def test_a_target_of_other_shapes_is_refused(tmp_path):
    save_tree(tmp_path / "p.msgpack", params_of(hidden=(8,)))
    shapes = r"\['hidden_0'\]\['bias'\] has shape \(2, 8\), expected \(2, 16\)"
    with pytest.raises(RunDirError, match=shapes):
        load_tree(tmp_path / "p.msgpack", params_of(hidden=(16,)))
    with pytest.raises(RunDirError, match="damaged or not a flaxmnist checkpoint"):
        load_tree(tmp_path / "p.msgpack", params_of(hidden=(8, 8)))


@pytest.mark.parametrize("content", [b"", b"garbage", b"\x93\x01\x02"])
def test_a_damaged_file_is_a_run_dir_error(tmp_path, content):
    path = tmp_path / "p.msgpack"
    path.write_bytes(content)
    with pytest.raises(RunDirError, match="p.msgpack: damaged or not a flaxmnist checkpoint"):
        load_tree(path, params_of())
    with pytest.raises(RunDirError, match="damaged"):
        load_tree(path)
    with pytest.raises(RunDirError, match="missing.msgpack: no such file"):
        load_tree(tmp_path / "missing.msgpack")


def test_a_truncated_checkpoint_is_refused(tmp_path):
    path = tmp_path / "p.msgpack"
    save_tree(path, params_of())
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(RunDirError, match="damaged"):
        load_tree(path)


@pytest.mark.parametrize("failing", ["fsync", "replace"])
def test_a_failing_write_leaves_the_old_file(tmp_path, monkeypatch, failing):
    path = tmp_path / "p.msgpack"
    old = params_of()
    save_tree(path, old)
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, failing, fail)
    with pytest.raises(RunDirError, match="no space left on the device while writing p.msgpack"):
        save_tree(path, params_of(seeds=3))
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.msgpack"]  # no temp file left
    assert_trees_equal(load_tree(path, old), old)


def info_of(study="tiny", seeds=(0, 1)):
    return {
        "study": study,
        "config_index": 4,
        "config": {"hidden": [8], "learning_rate": 0.001, "dtype": "float32"},
        "seeds": list(seeds),
        "val_accuracy": [0.5, 0.25, 0.75][: len(seeds)],
        "test_accuracy": [0.5, 0.125, 0.375][: len(seeds)],
        "selected_by": "holdout",
    }


def test_save_model_writes_params_then_model_json(tmp_path):
    params = params_of()
    folder = save_model(tmp_path, "tiny", params, info_of())
    assert folder == tmp_path / MODELS / "tiny"
    assert sorted(p.name for p in folder.iterdir()) == [INFO_FILE, PARAMS_FILE]
    on_disk = json.loads((folder / INFO_FILE).read_text())
    assert on_disk == {**info_of(), "params_sha256": on_disk["params_sha256"]}
    info, restored = read_model(tmp_path)
    assert info == info_of()
    assert_trees_equal(restored, params)
    assert restored["params"]["output"]["kernel"].dtype == np.float32
    # Saved again (a later call beat it): the new pair replaces the old.
    save_model(tmp_path, "tiny", params_of(seeds=3), info_of(seeds=(0, 1, 2)))
    info, restored = read_model(tmp_path, "tiny")
    assert info["seeds"] == [0, 1, 2] and restored["params"]["hidden_0"]["bias"].shape == (3, 8)


def test_read_model_names_what_is_wrong(tmp_path):
    with pytest.raises(RunDirError, match="not a directory"):
        read_model(tmp_path / "nothing")
    with pytest.raises(RunDirError, match="holds no saved model: it was written by an older"):
        read_model(tmp_path)
    save_model(tmp_path, "a", params_of(), info_of("a"))
    save_model(tmp_path, "b", params_of(), info_of("b"))
    with pytest.raises(RunDirError, match=r"several studies \(a, b\): name one"):
        read_model(tmp_path)
    with pytest.raises(RunDirError, match=r"study='c': no saved model .* \(saved: a, b\)"):
        read_model(tmp_path, "c")
    assert read_model(tmp_path, "b")[0]["study"] == "b"


def test_damaged_model_files_are_refused(tmp_path):
    folder = save_model(tmp_path, "a", params_of(), info_of("a"))
    data = bytearray((folder / PARAMS_FILE).read_bytes())
    data[-5] ^= 0xFF  # a flipped bit inside an array: still msgpack, no longer the saved one
    (folder / PARAMS_FILE).write_bytes(bytes(data))
    with pytest.raises(RunDirError, match="params.msgpack: does not match model.json"):
        read_model(tmp_path)
    (folder / PARAMS_FILE).unlink()
    with pytest.raises(RunDirError, match="params.msgpack: no such file"):
        read_model(tmp_path)
    (folder / INFO_FILE).write_text('{"study": "a"')
    with pytest.raises(RunDirError, match="model.json: damaged, not JSON"):
        read_model(tmp_path)
    (folder / INFO_FILE).write_text('{"study": "a"}')
    with pytest.raises(RunDirError, match="model.json: not a flaxmnist model .*config_index"):
        read_model(tmp_path)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"seeds": []}, "seeds = \\[\\]: expected a list of integers"),
        ({"seeds": [0, "1"]}, "expected a list of integers"),
        ({"test_accuracy": [0.5]}, "test_accuracy need one value per seed"),
    ],
)
def test_a_model_json_without_one_value_per_seed_is_refused(tmp_path, change, message):
    save_model(tmp_path, "a", params_of(), {**info_of("a"), **change})
    with pytest.raises(RunDirError, match=message):
        read_model(tmp_path)
