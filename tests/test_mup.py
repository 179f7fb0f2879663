"""μP (flaxmnist.core.mup) against Tensor Programs V's Table 3, by hand."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from test_train import (
    assert_updates_match,
    numpy_adamw_steps,
    tiny_splits,
    trained_epochs,
)

from flaxmnist.core.models import unpad_params
from flaxmnist.core.mup import adam_step_multipliers, width_multipliers
from flaxmnist.core.train import TrainSpec, make_hyperparams, make_train_fns
from flaxmnist.errors import SpecError
from flaxmnist.run.plan import group_configs
from flaxmnist.runner import run_sweep
from flaxmnist.specs.config import Config, parse_spec
from flaxmnist.studies import load_study


def initial_params(spec, data, seed=0, **values):
    hparams = make_hyperparams(spec, 1e-3, **values)
    return make_train_fns(spec)[0](hparams, jax.random.key(seed), data).params["params"]


def test_width_multipliers_are_fan_in_over_base_after_the_first_layer():
    assert width_multipliers(jnp.array([600, 150]), 300).tolist() == [1.0, 2.0, 0.5]
    assert width_multipliers(jnp.array([], jnp.int32), 300).tolist() == [1.0]


def test_each_layer_is_drawn_as_table_3_says(small_splits):
    """Widths 1200 and 600 at base 300: the first layer as standard; the hidden kernel's
    variance 0.05² / (1200 / 300) (Table 3: 1 / fan_in); the output kernel's glorot_uniform
    variance 2 / (600 + 10) divided by 600 / 300 (Table 3: 1 / fan_in²); biases zero."""
    standard = TrainSpec(hidden=(1200, 600))
    mup = dataclasses.replace(standard, parameterization="mup", mup_base_width=300)
    drawn, reference = initial_params(mup, small_splits), initial_params(standard, small_splits)
    np.testing.assert_array_equal(drawn["hidden_0"]["kernel"], reference["hidden_0"]["kernel"])
    for name, m in (("hidden_1", 1200 / 300), ("output", 600 / 300)):
        np.testing.assert_allclose(
            drawn[name]["kernel"], reference[name]["kernel"] / np.sqrt(m), rtol=1e-6
        )
        assert not np.any(drawn[name]["bias"])
    # The variances by hand, from 720,000 and 6,000 draws.
    assert np.var(drawn["hidden_1"]["kernel"]) == pytest.approx(0.05**2 * 300 / 1200, rel=0.01)
    assert np.var(drawn["output"]["kernel"]) == pytest.approx(2 / 610 * 300 / 600, rel=0.05)


def test_at_the_base_width_mup_trains_exactly_as_standard(small_splits):
    standard = TrainSpec(hidden=(32, 32), epochs=1, batch_size=250)
    mup = dataclasses.replace(standard, parameterization="mup", mup_base_width=32)
    key = jax.random.key(0)
    results = []
    for spec in (standard, mup):
        hparams = make_hyperparams(spec, 3e-3, weight_decay=0.01)
        init, run_epoch = make_train_fns(spec)
        state, metrics = jax.jit(run_epoch)(
            init(hparams, key, small_splits), hparams, key, small_splits, 0
        )
        results.append((jax.tree.leaves(state.params), metrics["val_loss"]))
    for a, b in zip(*(leaves for leaves, _ in results), strict=True):
        np.testing.assert_array_equal(a, b)
    assert results[0][1] == results[1][1]


def test_adams_step_per_layer_matches_numpy_by_hand():
    """Three full-batch AdamW steps of a 6-5-4-10 MLP at base width 2: the kernels of the
    second and output layers step 1 / 2.5 and 1 / 2 as far as Adam says (their fan-ins are
    5 and 4), the first layer and every bias as far; each decay step stays lr * wd * W."""
    data = tiny_splits(np.random.default_rng(0))
    spec = TrainSpec(hidden=(5, 4), batch_size=8, parameterization="mup", mup_base_width=2)
    l2, lr, wd = [0.01, 0.0, 0.02], 0.01, 0.05
    hparams = make_hyperparams(spec, lr, l2=l2, weight_decay=wd)
    start, state, _ = trained_epochs(spec, hparams, data, 3)
    x, y = data.train_images, data.train_labels
    expected, _ = numpy_adamw_steps(start, x, y, l2, lr, wd, 3, kernel_steps=[1, 1 / 2.5, 1 / 2])
    as_standard, _ = numpy_adamw_steps(start, x, y, l2, lr, wd, 3)
    assert_updates_match(start, state.params, expected)
    # The reference tells the two apart: standard steps move the later kernels further.
    assert not np.allclose(expected[1][0] - start[1][0], as_standard[1][0] - start[1][0])


def numpy_readout_form(layers, m, x, y, lr, steps, b1=0.9, b2=0.999, eps=1e-8):
    """The ``mup`` package's form of a one-hidden-layer MLP, in NumPy: logits are ``h @ V.T
    / m + b`` (the output multiplier), ``V`` starts ``m`` times the weights it stands for,
    and Adam steps every parameter at ``lr``. Returns the weights ``V / m`` it trains."""
    (w0, c0), (w1, c1) = layers
    params = [w0.copy(), c0.copy(), w1 * m, c1.copy()]
    moments = [[np.zeros_like(p), np.zeros_like(p)] for p in params]
    for t in range(1, steps + 1):
        w0, c0, v, c1 = params
        pre = x @ w0.T + c0
        h = np.maximum(pre, 0)
        logits = h @ v.T / m + c1
        probs = np.exp(logits - logits.max(axis=1, keepdims=True))
        probs /= probs.sum(axis=1, keepdims=True)
        delta = probs
        delta[np.arange(len(y)), y] -= 1
        delta /= len(y)
        back = (delta @ v / m) * (pre > 0)
        grads = [back.T @ x, back.sum(0), delta.T @ h / m, delta.sum(0)]
        for p, g, (mom, vel) in zip(params, grads, moments, strict=True):
            mom *= b1
            mom += (1 - b1) * g
            vel *= b2
            vel += (1 - b2) * g**2
            p -= lr * (mom / (1 - b1**t)) / (np.sqrt(vel / (1 - b2**t)) + eps)
    return [(params[0], params[1]), (params[2] / m, params[3])]


def test_the_output_multiplier_form_trains_the_same_network():
    """flaxmnist folds μP's output multiplier 1 / m into the weights (init and step); the
    mup package's form (multiplier in the forward pass, step lr) trains the same weights."""
    data = tiny_splits(np.random.default_rng(1))
    spec = TrainSpec(hidden=(8,), batch_size=8, parameterization="mup", mup_base_width=2)
    start, state, _ = trained_epochs(spec, make_hyperparams(spec, 0.02), data, 5, seed=5)
    x = np.asarray(data.train_images, np.float64)
    readout = numpy_readout_form(start, 8 / 2, x, np.asarray(data.train_labels), 0.02, 5)
    # 5 float32 steps against the reference's 3: the largest relative difference measured
    # is 2.5e-4, above the reference's 2e-4; a readout stepped m times too far is off by m.
    assert_updates_match(start, state.params, readout, rtol=5e-4)


def test_a_padded_mup_lane_is_drawn_and_trains_as_its_true_width(small_splits):
    """16 real units of 40 at base 8: the output kernel is drawn for fan-in 16 (m = 2), not
    40, and steps as the 16-unit program's does, up to float rounding."""
    narrow = TrainSpec(hidden=(16,), batch_size=250, parameterization="mup", mup_base_width=8)
    wide = dataclasses.replace(narrow, hidden=(40,), padded=True)
    narrow_h = make_hyperparams(narrow, 3e-3, weight_decay=1e-4)
    wide_h = make_hyperparams(wide, 3e-3, weight_decay=1e-4, widths=(16,))
    multipliers = adam_step_multipliers(
        {"params": initial_params(wide, small_splits, widths=(16,))}, wide_h.widths, 8
    )
    assert float(multipliers["params"]["output"]["kernel"]) == 0.5
    standard_wide = dataclasses.replace(wide, parameterization="standard")
    drawn = initial_params(wide, small_splits, widths=(16,))["output"]["kernel"]
    as_standard = initial_params(standard_wide, small_splits, widths=(16,))["output"]["kernel"]
    np.testing.assert_allclose(drawn, as_standard / np.sqrt(2), rtol=1e-6)
    key = jax.random.key(0)
    (init_n, epoch_n), (init_w, epoch_w) = make_train_fns(narrow), make_train_fns(wide)
    narrow_state = init_n(narrow_h, key, small_splits)
    wide_state = init_w(wide_h, key, small_splits)
    start = jax.tree.map(  # the narrow start, zero-padded: the same network
        lambda n, w: jnp.zeros_like(w).at[tuple(slice(d) for d in n.shape)].set(n),
        narrow_state.params,
        wide_state.params,
    )
    wide_state = wide_state._replace(params=start)
    for epoch in range(2):
        narrow_state, _ = jax.jit(epoch_n)(narrow_state, narrow_h, key, small_splits, epoch)
        wide_state, _ = jax.jit(epoch_w)(wide_state, wide_h, key, small_splits, epoch)
    trained = unpad_params(wide_state.params["params"], (16,))
    for a, b in zip(jax.tree.leaves(trained), jax.tree.leaves(narrow_state.params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_a_spec_names_the_parameterization_and_its_base_width():
    study = parse_spec(
        {"grid": {"parameterization": ["standard", "mup"], "mup_base_width": [100, 300]}},
        "t",
        "t.toml",
    )
    assert [(c.parameterization, c.mup_base_width) for c in study.configs] == [
        ("standard", 100),
        ("standard", 300),
        ("mup", 100),
        ("mup", 300),
    ]
    # Under "standard" the base width is not read: one program for both.
    groups = group_configs(study.configs)
    assert [g.config_indices for g in groups] == [(0, 1), (2,), (3,)]
    with pytest.raises(SpecError, match=r"base\.parameterization = 'mu': expected one of"):
        parse_spec({"base": {"parameterization": "mu"}}, "t", "t.toml")
    with pytest.raises(SpecError, match=r"base\.mup_base_width = 0: expected a whole number"):
        parse_spec({"base": {"mup_base_width": 0}}, "t", "t.toml")
    assert Config().to_dict()["parameterization"] == "standard"


def test_the_packaged_width_lr_study_crosses_the_notebooks_widths_with_12_rates():
    study = load_study("width-lr")
    assert len(study.configs) == 6 * 12 * 2
    rates = sorted({c.learning_rate for c in study.configs})
    assert rates[0] == 1e-4 and rates[-1] == 3e-2 and len(rates) == 12
    # log-spaced up to the 3 significant digits the spec writes
    np.testing.assert_allclose(np.diff(np.log(rates)), np.log(300) / 11, rtol=0.02)
    # A learning rate is a lane: one program per width and parameterization.
    assert len(group_configs(study.configs)) == 6 * 2
    transfer = load_study("hidden-transfer")
    assert {(c.learning_rate, c.parameterization) for c in transfer.configs} == {
        (0.002, "standard"),
        (0.002, "mup"),
    }


def test_records_carry_the_parameterization_and_its_base_width(tmp_path):
    spec = tmp_path / "both.toml"
    spec.write_text(
        "[base]\nhidden = [32]\nmup_base_width = 16\n"
        '[grid]\nparameterization = ["standard", "mup"]\n'
    )
    records = run_sweep(spec, epochs=1, seeds=1, limit_train=400, quiet=True)
    assert [(r["config"]["parameterization"], r["config"]["mup_base_width"]) for r in records] == [
        ("standard", 16),
        ("mup", 16),
    ]
    assert records[0]["val_accuracy"] != records[1]["val_accuracy"]  # m = 2: another network
