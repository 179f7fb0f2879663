import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from flaxmnist.core.data import make_splits
from flaxmnist.core.losses import apply_max_norm, make_evaluate, make_loss, smoothed_cross_entropy
from flaxmnist.core.models import MLP
from flaxmnist.core.train import (
    TrainSpec,
    make_hyperparams,
    make_optimizer,
    make_train,
    make_train_fns,
    schedule_factor,
    stack_hyperparams,
)
from flaxmnist.run.grid import _check_fits
from flaxmnist.specs.config import HISTORY_KEYS, LR_SCHEDULES


def batched_train(spec):
    return jax.jit(jax.vmap(make_train(spec), in_axes=(0, 0, None)))


def assert_trees_close(a, b, rtol=1e-4, atol=1e-6):
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def test_vmapped_lane_equals_standalone_run(small_splits):
    # 1,000 images, batch 100, 3 epochs: 30 steps, with dropout, L2 and weight decay lanes.
    spec = TrainSpec(hidden=(64,), epochs=3, batch_size=100)
    hparams = [
        make_hyperparams(spec, 1e-3),
        make_hyperparams(spec, 3e-3, dropout=0.3),
        make_hyperparams(spec, 1e-3, l2=[0.002, 0.0], weight_decay=0.01),
    ]
    keys = [jax.random.key(0), jax.random.key(1), jax.random.key(0)]
    params, history = batched_train(spec)(stack_hyperparams(hparams), jnp.stack(keys), small_splits)
    train = jax.jit(make_train(spec))
    for lane, (hp, key) in enumerate(zip(hparams, keys, strict=True)):
        solo_params, solo_history = train(hp, key, small_splits)
        assert_trees_close(jax.tree.map(lambda p, i=lane: p[i], params), solo_params)
        for name in HISTORY_KEYS:
            np.testing.assert_allclose(history[name][lane], solo_history[name], rtol=1e-4)


def test_history_shapes_and_ranges(small_splits):
    spec = TrainSpec(hidden=(32,), epochs=2, batch_size=100)
    _, history = jax.jit(make_train(spec))(
        make_hyperparams(spec, 1e-3), jax.random.key(0), small_splits
    )
    for name in HISTORY_KEYS:
        assert history[name].shape == (2,)
        assert np.all(np.isfinite(history[name]))
    for name in ("train_accuracy", "val_accuracy", "test_accuracy"):
        assert np.all((history[name] >= 0) & (history[name] <= 1))
    assert history["val_accuracy"][1] > 0.5
    assert not np.any(history["nonfinite"])


def test_l2_adds_exactly_2wW_to_its_kernel_only(small_splits):
    spec = TrainSpec(hidden=(16, 8))
    model = MLP(hidden=spec.hidden)
    images, labels = small_splits.train_images[:50], small_splits.train_labels[:50]
    params = model.init(jax.random.key(0), images)
    grad = jax.jit(
        jax.grad(
            lambda p, hp: make_loss(model, 2)(
                p, hp, images, labels, jnp.ones(50), jax.random.key(1)
            )[0]
        )
    )
    w = 0.002
    plain = grad(params, make_hyperparams(spec, 1e-3, l2=0.0))
    with_l2 = grad(params, make_hyperparams(spec, 1e-3, l2=[0.0, w, 0.0]))
    kernel = params["params"]["hidden_1"]["kernel"]
    np.testing.assert_allclose(
        with_l2["params"]["hidden_1"]["kernel"] - plain["params"]["hidden_1"]["kernel"],
        2 * w * kernel,
        rtol=1e-4,
        atol=1e-9,
    )
    for layer in ("hidden_0", "output"):
        for leaf in ("kernel", "bias"):
            np.testing.assert_array_equal(
                with_l2["params"][layer][leaf], plain["params"][layer][leaf]
            )
    np.testing.assert_array_equal(
        with_l2["params"]["hidden_1"]["bias"], plain["params"]["hidden_1"]["bias"]
    )


def test_weight_decay_is_decoupled_and_spares_biases():
    spec = TrainSpec(hidden=(4,))
    params = MLP(hidden=(4,)).init(jax.random.key(0), jnp.zeros((1, 6)))
    params = jax.tree.map(lambda p: p + 0.5, params)  # non-zero biases too
    grads = jax.tree.map(jnp.ones_like, params)
    lr, wd = 0.01, 0.1

    def step(weight_decay):
        optimizer = make_optimizer(make_hyperparams(spec, lr, weight_decay=weight_decay))
        updates, _ = optimizer.update(grads, optimizer.init(params), params)
        return updates

    # Compare the updates, not the updated parameters (their difference would cancel).
    decayed, plain = step(wd), step(0.0)
    for layer in ("hidden_0", "output"):
        np.testing.assert_allclose(
            decayed["params"][layer]["kernel"] - plain["params"][layer]["kernel"],
            -lr * wd * params["params"][layer]["kernel"],
            rtol=1e-5,
            atol=1e-8,
        )
        np.testing.assert_array_equal(
            decayed["params"][layer]["bias"], plain["params"][layer]["bias"]
        )


def test_partial_last_batch_is_a_mean_over_real_examples(small_splits):
    spec = TrainSpec(hidden=(16,))
    model = MLP(hidden=spec.hidden)
    images, labels = small_splits.train_images[:8], small_splits.train_labels[:8]
    params = model.init(jax.random.key(0), images)
    loss = make_loss(model, 1)
    hp = make_hyperparams(spec, 1e-3, l2=0.0)
    weights = jnp.array([1, 1, 1, 1, 1, 0, 0, 0], jnp.float32)
    padded, (_, correct) = loss(params, hp, images, labels, weights, jax.random.key(0))
    real, _ = loss(params, hp, images[:5], labels[:5], jnp.ones(5), jax.random.key(0))
    np.testing.assert_allclose(padded, real, rtol=1e-6)
    assert correct <= 5
    # 450 images in batches of 200: 3 steps, the last one padded. At lr = 1e-30 the
    # parameters do not move, so the epoch's mean training loss and accuracy must equal an
    # evaluation of the initial network on exactly those 450 images, each counted once.
    spec = TrainSpec(hidden=(16,), epochs=1, batch_size=200)
    data = small_splits._replace(
        train_images=small_splits.train_images[:450], train_labels=small_splits.train_labels[:450]
    )
    key = jax.random.key(0)
    _, history = jax.jit(make_train(spec))(make_hyperparams(spec, 1e-30), key, data)
    hp = make_hyperparams(spec, 1e-30)
    params = make_train_fns(spec)[0](hp, key, data).params  # the initial network
    logits = model.apply(params, data.train_images)
    expected_loss = optax.softmax_cross_entropy_with_integer_labels(logits, data.train_labels)
    expected_accuracy = np.mean(np.argmax(logits, -1) == data.train_labels)
    np.testing.assert_allclose(history["train_loss"][0], expected_loss.mean(), rtol=1e-5)
    np.testing.assert_allclose(history["train_accuracy"][0], expected_accuracy, rtol=1e-6)


def test_batch_larger_than_the_training_set_is_refused(small_splits):
    spec = TrainSpec(hidden=(4,), batch_size=2000)
    with pytest.raises(ValueError, match="batch_size 2000 is larger than the training set"):
        make_train(spec)(make_hyperparams(spec, 1e-3), jax.random.key(0), small_splits)


def test_diverging_lanes_do_not_touch_their_neighbours(small_splits):
    spec = TrainSpec(hidden=(32,), epochs=2, batch_size=100)
    rates = [1.0, 1e30, 1e-3]  # lr = 1e30 overflows to non-finite within a step or two
    key = jax.random.key(0)
    params, history = batched_train(spec)(
        stack_hyperparams([make_hyperparams(spec, lr) for lr in rates]),
        jnp.stack([key] * 3),
        small_splits,
    )
    assert bool(history["nonfinite"][1].any())
    assert not bool(history["nonfinite"][0].any()) and not bool(history["nonfinite"][2].any())
    solo_params, solo_history = batched_train(spec)(
        stack_hyperparams([make_hyperparams(spec, 1e-3)]), jnp.stack([key]), small_splits
    )
    assert_trees_close(
        jax.tree.map(lambda p: p[2], params), jax.tree.map(lambda p: p[0], solo_params)
    )
    np.testing.assert_allclose(
        history["val_accuracy"][2], solo_history["val_accuracy"][0], rtol=1e-4
    )
    # The diverged lane still reports an accuracy: what its (NaN) network predicts.
    assert 0.0 <= float(history["val_accuracy"][1][-1]) <= 0.2


def test_one_epoch_on_5000_images_beats_85_percent(mnist):
    data = make_splits(mnist, limit_train=5000)
    spec = TrainSpec(hidden=(300,), epochs=1)
    _, history = jax.jit(make_train(spec))(make_hyperparams(spec, 1e-3), jax.random.key(0), data)
    assert float(history["val_accuracy"][0]) > 0.85


def test_train_is_init_then_run_epoch_per_epoch(small_splits):
    spec = TrainSpec(hidden=(8,), epochs=3, batch_size=250)
    hp, key = make_hyperparams(spec, 1e-2, dropout=0.2), jax.random.key(4)
    params, history = jax.jit(make_train(spec))(hp, key, small_splits)
    init, run_epoch = make_train_fns(spec)
    state = jax.jit(init)(hp, key, small_splits)
    epoch_fn = jax.jit(run_epoch)
    for epoch in range(3):
        state, metrics = epoch_fn(state, hp, key, small_splits, jnp.int32(epoch))
        for name in HISTORY_KEYS:
            assert float(metrics[name]) == pytest.approx(float(history[name][epoch]), rel=1e-5)
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(params), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)


def test_unused_regularisers_compile_out_without_changing_results(small_splits):
    """use_dropout/use_l2/use_weight_decay = False is the same run as rates of 0."""
    full = TrainSpec(hidden=(16,), epochs=2, batch_size=250)
    lean = dataclasses.replace(full, use_dropout=False, use_l2=False, use_weight_decay=False)
    hp = make_hyperparams(full, 3e-3)  # every rate and coefficient 0
    key = jax.random.key(2)
    params_full, history_full = jax.jit(make_train(full))(hp, key, small_splits)
    params_lean, history_lean = jax.jit(make_train(lean))(hp, key, small_splits)
    for name in HISTORY_KEYS:
        np.testing.assert_allclose(history_lean[name], history_full[name], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(params_lean), jax.tree.leaves(params_full), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    # And the full program does use them when asked.
    _, with_dropout = jax.jit(make_train(full))(
        make_hyperparams(full, 3e-3, dropout=0.5), key, small_splits
    )
    assert not np.allclose(with_dropout["train_loss"], history_full["train_loss"])


def test_val_is_test_reports_the_one_evaluation_twice(small_splits):
    data = small_splits._replace(
        val_images=small_splits.test_images, val_labels=small_splits.test_labels
    )
    spec = TrainSpec(hidden=(8,), epochs=1, batch_size=250)
    hp, key = make_hyperparams(spec, 1e-2), jax.random.key(0)
    _, both = jax.jit(make_train(spec))(hp, key, data)
    _, once = jax.jit(make_train(dataclasses.replace(spec, val_is_test=True)))(hp, key, data)
    for name in HISTORY_KEYS:
        np.testing.assert_allclose(once[name], both[name], rtol=1e-6)
    assert float(once["test_accuracy"][0]) == float(once["val_accuracy"][0])


def test_keras1_loss_clips_probabilities_and_their_gradient():
    from flaxmnist.core.losses import cross_entropy

    labels = jnp.array([0, 1])
    mild = jnp.array([[2.0, 1.0, 0.5], [0.1, 0.3, -0.2]])
    np.testing.assert_allclose(
        cross_entropy(mild, labels, "keras1"), cross_entropy(mild, labels), rtol=1e-6
    )
    wrong = jnp.array([[-30.0, 30.0, 0.0], [0.1, 0.3, -0.2]])  # sample 0: p(true) ~ 1e-26
    exact = cross_entropy(wrong, labels)
    clipped = cross_entropy(wrong, labels, "keras1")
    assert float(exact[0]) > 50 and float(clipped[0]) == pytest.approx(-np.log(1e-7), rel=1e-4)
    grad = jax.grad(lambda z: cross_entropy(z, labels, "keras1").sum())(wrong)
    assert not np.any(grad[0]) and np.any(grad[1])  # no gradient from the clipped sample
    assert np.all(jax.grad(lambda z: cross_entropy(z, labels).sum())(wrong)[0] != 0)
    with pytest.raises(ValueError, match="loss must be one of"):
        TrainSpec(loss="hinge")


def test_bfloat16_training_learns_like_float32(small_splits):
    spec = TrainSpec(hidden=(32,), epochs=3, batch_size=100)
    low = dataclasses.replace(spec, compute_dtype="bfloat16")
    hp, key = make_hyperparams(spec, 3e-3), jax.random.key(0)
    params, exact = jax.jit(make_train(spec))(hp, key, small_splits)
    low_params, rounded = jax.jit(make_train(low))(hp, key, small_splits)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(low_params))
    assert float(rounded["val_accuracy"][-1]) == pytest.approx(
        float(exact["val_accuracy"][-1]), abs=0.03
    )
    assert float(rounded["val_accuracy"][-1]) > 0.7  # it learns: chance is 0.1
    with pytest.raises(ValueError, match="compute_dtype"):
        TrainSpec(compute_dtype="float16")


def dot_operand_dtypes(jaxpr) -> list[tuple[str, str]]:
    """The operand dtypes of every matrix product in ``jaxpr``, nested jaxprs included."""
    found = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.append(tuple(str(v.aval.dtype) for v in eqn.invars))
        for param in eqn.params.values():
            for sub in param if isinstance(param, tuple | list) else [param]:
                inner = getattr(sub, "jaxpr", sub)
                if hasattr(inner, "eqns"):
                    found += dot_operand_dtypes(inner)
    return found


@pytest.mark.parametrize("hidden", [(64, 32), (16,)])
def test_bfloat16_with_dropout_trains_every_layer_in_bfloat16(small_splits, hidden):
    """Dropout must not promote bfloat16 activations to float32 (its scale was float32)."""
    spec = TrainSpec(hidden=hidden, epochs=1, batch_size=250, compute_dtype="bfloat16")
    init, run_epoch = make_train_fns(spec)
    hp, key = make_hyperparams(spec, 1e-3, dropout=0.3), jax.random.key(0)
    state = init(hp, key, small_splits)
    jaxpr = jax.make_jaxpr(run_epoch)(state, hp, key, small_splits, jnp.int32(0)).jaxpr
    dtypes = dot_operand_dtypes(jaxpr)
    # Per training step: forward, input gradient (not for the first layer), kernel gradient;
    # plus the forward of the two evaluations.
    layers = len(hidden) + 1
    assert len(dtypes) == 3 * layers - 1 + 2 * layers
    assert all(d == ("bfloat16", "bfloat16") for d in dtypes), dtypes


def test_run_epoch_trains_with_the_hyperparameters_it_is_given(small_splits):
    """The optimizer state carries no copy of the learning rate or weight decay: a driver
    that changes a lane's hyperparameters between epochs (PBT, schedules) gets them used."""
    spec = TrainSpec(hidden=(16,), epochs=1, batch_size=250)
    init, run_epoch = make_train_fns(spec)
    key = jax.random.key(0)
    slow = make_hyperparams(spec, 1e-3, weight_decay=0.01)
    fast = make_hyperparams(spec, 3e-2, weight_decay=0.01)
    strong_decay = make_hyperparams(spec, 1e-3, weight_decay=5.0)
    state = jax.jit(init)(slow, key, small_splits)
    epoch = jax.jit(run_epoch)

    def params_after(hparams, start=state):
        return jax.tree.leaves(epoch(start, hparams, key, small_splits, jnp.int32(1))[0].params)

    for changed in (fast, strong_decay):
        after_slow, after_changed = params_after(slow), params_after(changed)
        assert any(not np.allclose(a, b) for a, b in zip(after_slow, after_changed, strict=True))
        # The same as a lane that had these hyperparameters from the start.
        from_start = params_after(changed, jax.jit(init)(changed, key, small_splits))
        for a, b in zip(after_changed, from_start, strict=True):
            np.testing.assert_array_equal(a, b)


# --- Against independent references: NumPy by hand, float64 ----------------------------


def tiny_splits(rng, n_train=8, n_val=7, n_test=5, width=6):
    """Float features (no 1/255 scaling); feature 0 is ~1e-7, so that its kernel gradients
    are ~1e-9 and Adam's epsilon (1e-8) visibly damps their updates."""

    def images(n):
        x = rng.uniform(0, 1, (n, width)).astype(np.float32)
        x[:, 0] *= 1e-7
        return x

    def labels(n):
        return rng.integers(0, 10, n).astype(np.int32)

    return make_splits_like(images(n_train), labels(n_train), images(n_val), labels(n_val),
                            images(n_test), labels(n_test))  # fmt: skip


def make_splits_like(*arrays):
    from flaxmnist.core.data import DataSplits

    return DataSplits(*arrays)


def numpy_params(params):
    layers = params["params"]
    names = sorted(k for k in layers if k.startswith("hidden_")) + ["output"]
    return [
        (np.asarray(layers[n]["kernel"], np.float64), np.asarray(layers[n]["bias"], np.float64))
        for n in names
    ]


def numpy_forward(layers, x):
    """Pre-activations and activations of every layer; kernels are (out, in)."""
    activations, pre = [np.asarray(x, np.float64)], []
    for i, (kernel, bias) in enumerate(layers):
        z = activations[-1] @ kernel.T + bias
        pre.append(z)
        activations.append(z if i == len(layers) - 1 else np.maximum(z, 0))
    return pre, activations


def numpy_loss_and_grads(layers, x, y, l2):
    """Mean softmax cross-entropy plus sum_i l2[i] * |W_i|^2, and its gradients."""
    pre, acts = numpy_forward(layers, x)
    logits = acts[-1]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = len(y)
    loss = -log_probs[np.arange(n), y].mean()
    loss += sum(c * np.sum(k**2) for c, (k, _) in zip(l2, layers, strict=True))
    delta = np.exp(log_probs)
    delta[np.arange(n), y] -= 1
    delta /= n
    grads = [None] * len(layers)
    for i in reversed(range(len(layers))):
        kernel, _ = layers[i]
        grads[i] = (delta.T @ acts[i] + 2 * l2[i] * kernel, delta.sum(axis=0))
        if i:
            delta = (delta @ kernel) * (pre[i - 1] > 0)
    return loss, grads


def numpy_evaluate(layers, x, y, l2):
    logits = numpy_forward(layers, x)[1][-1]
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    penalty = sum(c * np.sum(k**2) for c, (k, _) in zip(l2, layers, strict=True))
    loss = -log_probs[np.arange(len(y)), y].mean() + penalty
    return loss, np.mean(np.argmax(logits, axis=1) == y)


def numpy_adamw_steps(
    layers, x, y, l2, lr, wd, steps, b1=0.9, b2=0.999, eps=1e-8, kernel_steps=None
):
    """Full-batch Adam steps as docs/design.md states them (optax's epsilon placement: after
    the bias correction), decoupled decay ``lr * wd * W`` on kernels only. ``lr`` is a
    number or one learning rate per step; ``kernel_steps`` (one per layer) multiplies Adam's
    step on each kernel, not its decay (μP's per-layer learning rates)."""
    m = [[np.zeros_like(p) for p in layer] for layer in layers]
    v = [[np.zeros_like(p) for p in layer] for layer in layers]
    losses = []
    for t in range(1, steps + 1):
        loss, grads = numpy_loss_and_grads(layers, x, y, l2)
        losses.append(loss)
        new_layers = []
        for i, layer in enumerate(layers):
            new_layer = []
            for j, (p, g) in enumerate(zip(layer, grads[i], strict=True)):
                m[i][j] = b1 * m[i][j] + (1 - b1) * g
                v[i][j] = b2 * v[i][j] + (1 - b2) * g**2
                update = (m[i][j] / (1 - b1**t)) / (np.sqrt(v[i][j] / (1 - b2**t)) + eps)
                if j == 0:  # the kernel
                    update = update * (1.0 if kernel_steps is None else kernel_steps[i])
                    update = update + wd * p
                new_layer.append(p - (lr[t - 1] if np.ndim(lr) else lr) * update)
            new_layers.append(tuple(new_layer))
        layers = new_layers
    return layers, losses


def trained_epochs(spec, hparams, data, epochs, seed=3):
    """One lane of ``spec`` trained ``epochs`` epochs: its start as ``numpy_params``, its
    final ``TrainState`` and each epoch's metrics."""
    key = jax.random.key(seed)
    init, run_epoch = make_train_fns(spec)
    state = init(hparams, key, data)
    start, run_epoch, history = numpy_params(state.params), jax.jit(run_epoch), []
    for epoch in range(epochs):
        state, metrics = run_epoch(state, hparams, key, data, epoch)
        history.append(metrics)
    return start, state, history


def assert_updates_match(start, params, expected, rtol=2e-4, atol=1e-9):
    """Each parameter's change from ``start`` against the reference's (``expected``, as
    ``numpy_params``): the change, not the parameter, so a relative check of the update."""
    trained = numpy_params(params)
    for (k0, b0), (k, b), (k_ref, b_ref) in zip(start, trained, expected, strict=True):
        np.testing.assert_allclose(k - k0, k_ref - k0, rtol=rtol, atol=atol)
        np.testing.assert_allclose(b - b0, b_ref - b0, rtol=rtol, atol=atol)


def test_three_adamw_steps_with_l2_match_numpy_by_hand():
    """Three full-batch steps (one per epoch: the shuffle cannot matter), two hidden layers,
    a different L2 per layer, AdamW decay: losses, gradients' effect through Adam with Keras
    1's constants, the decay, and the reported metrics against NumPy in float64."""
    data = tiny_splits(np.random.default_rng(0))
    spec = TrainSpec(hidden=(5, 4), batch_size=8, eval_batch_size=3)  # evaluation padded
    l2, lr, wd = [0.01, 0.0, 0.02], 0.01, 0.05
    hparams = make_hyperparams(spec, lr, l2=l2, weight_decay=wd)
    start, state, history = trained_epochs(spec, hparams, data, 3)
    expected, losses = numpy_adamw_steps(
        start, data.train_images, data.train_labels, l2, lr, wd, steps=3
    )
    assert_updates_match(start, state.params, expected)
    train_losses = [float(m["train_loss"]) for m in history]
    np.testing.assert_allclose(train_losses, losses, rtol=1e-5)  # the penalty included
    for split in ("val", "test"):
        x, y = getattr(data, f"{split}_images"), getattr(data, f"{split}_labels")
        loss, accuracy = numpy_evaluate(expected, x, y, l2)
        np.testing.assert_allclose(float(history[-1][f"{split}_loss"]), loss, rtol=1e-5)
        assert float(history[-1][f"{split}_accuracy"]) == pytest.approx(accuracy, abs=1e-6)


@pytest.mark.parametrize(
    ("name", "changed"),
    [("b2", {"b2": 0.99}), ("eps", {"eps": 1e-7}), ("no decay", {"wd": 0.0})],
)
def test_the_numpy_reference_is_sensitive_to(name, changed):
    """The reference above would catch a changed constant: each change moves some update by
    far more than its tolerance."""
    data = tiny_splits(np.random.default_rng(0))
    spec = TrainSpec(hidden=(5, 4), batch_size=8)
    state = make_train_fns(spec)[0](make_hyperparams(spec, 0.01), jax.random.key(3), data)
    start = numpy_params(state.params)
    args = {"l2": [0.01, 0.0, 0.02], "lr": 0.01, "wd": 0.05, "steps": 3}
    x, y = data.train_images, data.train_labels
    reference, _ = numpy_adamw_steps(start, x, y, **args)
    wd = changed.pop("wd", args.pop("wd"))
    other, _ = numpy_adamw_steps(start, x, y, wd=wd, **args, **changed)
    layers = zip(start, reference, other, strict=True)
    deltas = [(k - k0, o - k0) for (k0, _), (k, _), (o, _) in layers]
    assert any(not np.allclose(a, b, rtol=2e-3, atol=1e-9) for a, b in deltas), name


def test_history_keys_are_what_an_epoch_reports(small_splits):
    spec = TrainSpec(hidden=(4,), batch_size=500)
    init, run_epoch = make_train_fns(spec)
    hp, key = make_hyperparams(spec, 1e-3), jax.random.key(0)
    _, metrics = jax.jit(run_epoch)(init(hp, key, small_splits), hp, key, small_splits, 0)
    assert set(metrics) == {*HISTORY_KEYS, "nonfinite"} and len(HISTORY_KEYS) == 6


def test_every_epoch_draws_a_new_shuffle_and_new_dropout_masks(small_splits):
    key = jax.random.key(1)

    def after_one_epoch(spec, epoch, dropout=0.0):
        init, run_epoch = make_train_fns(spec)
        hp = make_hyperparams(spec, 1e-2, dropout=dropout)
        state = jax.jit(init)(hp, key, small_splits)
        state, _ = jax.jit(run_epoch)(state, hp, key, small_splits, epoch)
        return jax.tree.leaves(state.params)

    def same(a, b, **tolerance):
        return all(np.allclose(x, y, **tolerance) for x, y in zip(a, b, strict=True))

    batches = TrainSpec(hidden=(8,), batch_size=100)  # 10 steps: the order matters
    assert same(after_one_epoch(batches, 0), after_one_epoch(batches, 0), rtol=0, atol=0)
    assert not same(after_one_epoch(batches, 0), after_one_epoch(batches, 1), rtol=1e-3)
    one_batch = TrainSpec(hidden=(8,), batch_size=1000)  # 1 step: only the masks can differ
    assert same(after_one_epoch(one_batch, 0), after_one_epoch(one_batch, 1), rtol=1e-5)
    masks = [after_one_epoch(one_batch, epoch, dropout=0.5) for epoch in (0, 1)]
    assert not same(*masks, rtol=1e-3)


# --- Input dropout, max-norm, learning-rate schedules -----------------------------------


def numpy_schedule(kind, step, steps_per_epoch, lr_decay=1.0, warmup_epochs=0.0, horizon=1.0):
    """The learning rate's factor at ``step``, as the docs state it, in float64."""
    epochs = step / steps_per_epoch
    decay = {
        "constant": 1.0,
        "cosine": 0.5 * (1 + np.cos(np.pi * min(epochs / horizon, 1.0))),
        "exponential": lr_decay**epochs,
    }[kind]
    warmup = min(1.0, (step + 1) / (warmup_epochs * steps_per_epoch)) if warmup_epochs else 1.0
    return warmup * decay


SCHEDULES = [  # (kind, lr_decay, warmup_epochs, schedule_epochs)
    ("constant", 1.0, 0.0, 1.0),
    ("constant", 1.0, 1.5, 1.0),
    ("cosine", 1.0, 0.0, 3.0),
    ("cosine", 1.0, 0.5, 2.0),
    ("exponential", 0.7, 0.0, 1.0),
    ("exponential", 0.5, 2.0, 1.0),
]


def test_schedule_factor_matches_numpy_for_every_kind_also_vmapped():
    spec = TrainSpec(hidden=(8,))
    steps_per_epoch = 10
    steps = [0, 1, 4, 9, 10, 14, 25, 29, 30, 47]  # up to past the cosine's horizon
    hparams = [
        make_hyperparams(spec, 1e-3, lr_schedule=kind, lr_decay=decay, warmup_epochs=warmup,
                         schedule_epochs=horizon)
        for kind, decay, warmup, horizon in SCHEDULES
    ]  # fmt: skip
    expected = np.array(
        [[numpy_schedule(*schedule[:1], t, steps_per_epoch, *schedule[1:]) for t in steps]
         for schedule in SCHEDULES]
    )  # fmt: skip
    factor = jax.jit(schedule_factor, static_argnums=2)
    for hp, row in zip(hparams, expected, strict=True):
        got = [float(factor(hp, jnp.int32(t), steps_per_epoch)) for t in steps]
        np.testing.assert_allclose(got, row, rtol=2e-6, atol=1e-7)
    lanes = jax.vmap(factor, in_axes=(0, None, None))
    batched = np.stack([lanes(stack_hyperparams(hparams), t, steps_per_epoch) for t in steps], 1)
    np.testing.assert_allclose(batched, expected, rtol=2e-6, atol=1e-7)
    # The constant schedule without warmup is exactly 1, so it leaves the learning rate alone.
    assert np.all(batched[0] == 1.0) and batched.dtype == np.float32
    assert [int(hp.lr_schedule) for hp in hparams[::2]] == [0, 1, 2]
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        make_hyperparams(spec, 1e-3, lr_schedule="linear")


def test_a_scheduled_run_matches_numpy_adamw_with_the_rate_set_per_step():
    """Two epochs of four steps each. Every training example is the same one, so the shuffle
    cannot matter and each step is a full-batch step: Adam in NumPy (float64) with the
    learning rate of each global step from ``numpy_schedule``, warmup then a cosine, and the
    decoupled decay scaled by it as well (as in optax)."""
    x = np.random.default_rng(0).uniform(0, 1, (1, 6)).astype(np.float32)
    data = make_splits_like(np.repeat(x, 8, 0), np.full(8, 3, np.int32), x, np.array([3]),
                            x, np.array([3]))  # fmt: skip
    spec = TrainSpec(hidden=(5,), epochs=2, batch_size=2)
    lr, wd, schedule = 0.01, 0.05, {"warmup_epochs": 1.0, "schedule_epochs": 2.0}
    hparams = make_hyperparams(spec, lr, weight_decay=wd, lr_schedule="cosine", **schedule)
    key = jax.random.key(3)
    params, _ = jax.jit(make_train(spec))(hparams, key, data)
    start = numpy_params(make_train_fns(spec)[0](hparams, key, data).params)
    rates = [lr * numpy_schedule("cosine", t, 4, 1.0, 1.0, 2.0) for t in range(8)]
    expected, _ = numpy_adamw_steps(start, x, np.array([3]), [0, 0], rates, wd, steps=8)
    unscheduled, _ = numpy_adamw_steps(start, x, np.array([3]), [0, 0], lr, wd, steps=8)
    for (k0, b0), (k, b), (k_ref, b_ref), (k_flat, _) in zip(
        start, numpy_params(params), expected, unscheduled, strict=True
    ):
        np.testing.assert_allclose(k - k0, k_ref - k0, rtol=2e-4, atol=1e-9)
        np.testing.assert_allclose(b - b0, b_ref - b0, rtol=2e-4, atol=1e-9)
        assert not np.allclose(k_flat - k0, k_ref - k0, rtol=2e-2)  # the schedule matters


def test_max_norm_bounds_every_hidden_unit_and_spares_the_output_layer(small_splits):
    """One step at a huge learning rate: the hidden rows grow past the bound and are rescaled
    onto it; the output layer and the biases move exactly as without a constraint."""
    spec = TrainSpec(hidden=(8, 6), epochs=1, batch_size=1000)  # one step
    key, bound = jax.random.key(0), 0.5
    train = jax.jit(make_train(spec))
    free, _ = train(make_hyperparams(spec, 10.0), key, small_splits)
    bounded, _ = train(make_hyperparams(spec, 10.0, max_norm=bound), key, small_splits)
    for name in ("hidden_0", "hidden_1"):
        free_rows = np.linalg.norm(np.asarray(free["params"][name]["kernel"]), axis=1)
        rows = np.linalg.norm(np.asarray(bounded["params"][name]["kernel"]), axis=1)
        assert free_rows.min() > bound  # the constraint had work to do
        np.testing.assert_allclose(rows, bound, rtol=1e-5)
        np.testing.assert_array_equal(bounded["params"][name]["bias"], free["params"][name]["bias"])
    for leaf in ("kernel", "bias"):
        np.testing.assert_array_equal(
            bounded["params"]["output"][leaf], free["params"]["output"][leaf]
        )


def test_apply_max_norm_is_the_keras_formula_row_by_row():
    rng = np.random.default_rng(1)
    kernels = [rng.normal(0, 1, (4, 7)).astype(np.float32) for _ in range(2)]
    kernels[0] *= (np.array([3.0, 0.2, 2.0, 1.5]) / np.linalg.norm(kernels[0], axis=1))[:, None]
    params = {
        "params": {
            "hidden_0": {"kernel": kernels[0], "bias": np.ones(4, np.float32)},
            "output": {"kernel": kernels[1], "bias": np.ones(4, np.float32)},
        }
    }
    c = 1.3
    out = apply_max_norm(params, jnp.float32(c), 1)["params"]
    w = kernels[0].astype(np.float64)
    norms = np.sqrt((w**2).sum(axis=1, keepdims=True))
    np.testing.assert_allclose(out["hidden_0"]["kernel"], w * np.clip(norms, 0, c) / (1e-7 + norms),
                               rtol=1e-6)  # fmt: skip
    # Rows above the bound end on it; the row within it (0.2) keeps its norm, up to eps.
    np.testing.assert_allclose(np.linalg.norm(out["hidden_0"]["kernel"], axis=1),
                               [c, 0.2, c, c], rtol=1e-6)  # fmt: skip
    np.testing.assert_array_equal(out["output"]["kernel"], kernels[1])
    np.testing.assert_array_equal(out["hidden_0"]["bias"], params["params"]["hidden_0"]["bias"])
    unchanged = apply_max_norm(params, jnp.float32(0.0), 1)["params"]["hidden_0"]["kernel"]
    np.testing.assert_array_equal(unchanged, kernels[0])  # 0: exactly no constraint


def test_new_features_at_their_defaults_are_bit_identical_to_compiled_out(small_splits):
    """max_norm 0, the constant schedule without warmup and input dropout 0 (also next to
    hidden dropout, whose draws must not move) give the very same bits as a program without
    them."""
    full = TrainSpec(hidden=(8,), epochs=2, batch_size=250, use_input_dropout=True)
    lean = dataclasses.replace(full, use_max_norm=False, use_schedule=False)
    no_input = dataclasses.replace(full, use_input_dropout=False)
    key = jax.random.key(1)
    for hp in (make_hyperparams(full, 3e-3), make_hyperparams(full, 3e-3, dropout=0.3)):
        reference, history = jax.jit(make_train(full))(hp, key, small_splits)
        for spec in (lean, no_input):
            params, other = jax.jit(make_train(spec))(hp, key, small_splits)
            for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(reference), strict=True):
                np.testing.assert_array_equal(a, b)
            for name in HISTORY_KEYS:
                np.testing.assert_array_equal(other[name], history[name])


def test_input_dropout_and_the_schedule_train_differently_and_vmap(small_splits):
    spec = TrainSpec(hidden=(8,), epochs=2, batch_size=250, use_input_dropout=True)
    hparams = [
        make_hyperparams(spec, 3e-3),
        make_hyperparams(spec, 3e-3, input_dropout=0.5),
        make_hyperparams(spec, 3e-3, max_norm=0.3),
        make_hyperparams(spec, 3e-3, lr_schedule="exponential", lr_decay=0.1),
        make_hyperparams(spec, 3e-3, lr_schedule="cosine", warmup_epochs=0.5),
    ]
    key = jax.random.key(0)
    params, history = batched_train(spec)(stack_hyperparams(hparams), jnp.stack([key] * 5),
                                          small_splits)  # fmt: skip
    train = jax.jit(make_train(spec))
    for lane, hp in enumerate(hparams):
        solo_params, solo_history = train(hp, key, small_splits)
        assert_trees_close(jax.tree.map(lambda p, i=lane: p[i], params), solo_params)
        np.testing.assert_allclose(history["val_loss"][lane], solo_history["val_loss"], rtol=1e-4)
        if lane:
            assert not np.allclose(history["train_loss"][lane], history["train_loss"][0])


def test_check_fits_refuses_what_a_program_compiled_out():
    spec = TrainSpec(hidden=(8,), use_input_dropout=False, use_max_norm=False, use_schedule=False)
    _check_fits(spec, make_hyperparams(spec, 1e-3, lr_decay=0.5, schedule_epochs=3.0))
    refused = {
        "input_dropout": {"input_dropout": 0.2},
        "max_norm": {"max_norm": 2.0},
        "lr_schedule": {"lr_schedule": "cosine"},
        "warmup_epochs": {"warmup_epochs": 1.0},
    }
    for name, settings in refused.items():
        with pytest.raises(ValueError, match=f"has no {name} "):
            _check_fits(spec, make_hyperparams(spec, 1e-3, **settings))
    everything = dataclasses.replace(spec, use_input_dropout=True, use_max_norm=True,
                                     use_schedule=True)  # fmt: skip
    for settings in refused.values():
        _check_fits(everything, make_hyperparams(spec, 1e-3, **settings))
    assert LR_SCHEDULES == ("constant", "cosine", "exponential")


@pytest.mark.parametrize("dropout", [0.0, 0.3])
def test_a_padded_program_trains_the_narrow_network(small_splits, dropout):
    """From the same start, a lane of a padded program (16 real units of 40) trains what the
    16-unit program trains, up to float rounding (without dropout: its masks have another
    shape, so other draws); its padded units stay exactly zero under L2, decay, max-norm."""
    from flaxmnist.core.models import unpad_params

    narrow = TrainSpec(hidden=(16,), batch_size=250)
    wide = dataclasses.replace(narrow, hidden=(40,), padded=True)
    settings = dict(l2=1e-4, weight_decay=1e-4, max_norm=3.0, dropout=dropout)
    narrow_h = make_hyperparams(narrow, 3e-3, **settings)
    wide_h = make_hyperparams(wide, 3e-3, **settings, widths=(16,))
    key = jax.random.key(0)
    (init_n, epoch_n), (init_w, epoch_w) = make_train_fns(narrow), make_train_fns(wide)
    narrow_state = init_n(narrow_h, key, small_splits)
    wide_state = init_w(wide_h, key, small_splits)
    assert not jnp.any(wide_state.params["params"]["hidden_0"]["kernel"][16:])
    start = jax.tree.map(  # the narrow start, zero-padded: the same network
        lambda n, w: jnp.zeros_like(w).at[tuple(slice(d) for d in n.shape)].set(n),
        narrow_state.params, wide_state.params,
    )  # fmt: skip
    wide_state = wide_state._replace(params=start)
    for epoch in range(2):
        narrow_state, narrow_m = jax.jit(epoch_n)(narrow_state, narrow_h, key, small_splits, epoch)
        wide_state, wide_m = jax.jit(epoch_w)(wide_state, wide_h, key, small_splits, epoch)
    trained = wide_state.params["params"]
    assert not jnp.any(trained["hidden_0"]["kernel"][16:]) and not jnp.any(
        trained["hidden_0"]["bias"][16:]
    )
    assert not jnp.any(trained["output"]["kernel"][:, 16:])
    if dropout == 0:
        assert_trees_close(unpad_params(trained, (16,)), narrow_state.params["params"])
        assert abs(float(wide_m["val_accuracy"] - narrow_m["val_accuracy"])) <= 1 / 500
    else:
        assert abs(float(wide_m["val_accuracy"] - narrow_m["val_accuracy"])) < 0.05


def test_ema_is_the_debiased_moving_average_of_a_hand_loop(small_splits):
    """One step per epoch (a batch of the whole split), so each epoch's state is one step."""
    spec = TrainSpec(hidden=(8,), epochs=1, batch_size=1000)
    init, run_epoch = make_train_fns(spec)
    run_epoch, key, decay = jax.jit(run_epoch), jax.random.key(0), 0.9
    hparams = make_hyperparams(spec, 3e-3, ema_decay=decay)
    state = init(hparams, key, small_splits)
    lean = dataclasses.replace(spec, use_ema=False)
    lean_init, lean_epoch = make_train_fns(lean)
    lean_state = lean_init(hparams._replace(ema_decay=jnp.float32(0)), key, small_splits)
    moment = jax.tree.map(lambda x: np.zeros(x.shape, np.float64), state.params)
    for t in range(1, 5):
        state, metrics = run_epoch(state, hparams, key, small_splits, t - 1)
        lean_state, _ = jax.jit(lean_epoch)(lean_state, hparams, key, small_splits, t - 1)
        moment = jax.tree.map(
            lambda m, p: decay * m + (1 - decay) * np.asarray(p, np.float64), moment, state.params
        )
        expected = jax.tree.map(lambda m, t=t: m / (1 - decay**t), moment)
        assert_trees_close(state.averaged, expected, rtol=1e-5, atol=1e-7)
        # the average never feeds back into training
        for a, b in zip(
            jax.tree.leaves(state.params), jax.tree.leaves(lean_state.params), strict=True
        ):
            np.testing.assert_array_equal(a, b)
    # what an epoch evaluates is the average, not the parameters
    model = MLP((8,))
    _, accuracy = jax.jit(make_evaluate(model, 1000))(
        state.averaged, small_splits.val_images, small_splits.val_labels
    )
    assert round(float(metrics["val_accuracy"]) * 500) == round(float(accuracy) * 500)
    assert not all(
        np.array_equal(a, b)
        for a, b in zip(jax.tree.leaves(state.averaged), jax.tree.leaves(state.params), strict=True)
    )


def test_ema_decay_0_keeps_the_parameters_exactly(small_splits):
    spec = TrainSpec(hidden=(8,), epochs=2, batch_size=250)
    hparams, key = make_hyperparams(spec, 3e-3), jax.random.key(2)
    with_ema, history = jax.jit(make_train(spec))(hparams, key, small_splits)
    without, plain = jax.jit(make_train(dataclasses.replace(spec, use_ema=False)))(
        hparams, key, small_splits
    )
    for a, b in zip(jax.tree.leaves(with_ema), jax.tree.leaves(without), strict=True):
        np.testing.assert_array_equal(a, b)
    for name in HISTORY_KEYS:
        np.testing.assert_array_equal(history[name], plain[name])


def numpy_smoothed_loss(logits, labels, smoothing, clip=False):
    logits = np.asarray(logits, np.float64)
    if clip:
        probs = np.exp(logits - logits.max(-1, keepdims=True))
        probs = np.clip(probs / probs.sum(-1, keepdims=True), 1e-7, 1 - 1e-7)
        log_probs = np.log(probs)
    else:
        shifted = logits - logits.max(-1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))
    targets = np.full(logits.shape, smoothing / logits.shape[-1])
    targets[np.arange(len(labels)), labels] += 1 - smoothing
    return -(targets * log_probs).sum(-1)


@pytest.mark.parametrize("loss", ["cross_entropy", "keras1"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_the_smoothed_loss_is_numpys(loss, smoothing):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (64, 10)).astype(np.float32)
    labels = rng.integers(0, 10, 64)
    got = smoothed_cross_entropy(jnp.asarray(logits), jnp.asarray(labels), smoothing, loss)
    expected = numpy_smoothed_loss(logits, labels, smoothing, clip=loss == "keras1")
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5, atol=1e-6)


def test_training_with_label_smoothing_minimises_the_smoothed_loss(small_splits):
    spec = TrainSpec(hidden=(8,), epochs=1, batch_size=100)
    model = MLP((8,))
    params = model.init(jax.random.key(0), small_splits.train_images[:1])
    hparams = make_hyperparams(spec, 1e-3, label_smoothing=0.2)
    images, labels = small_splits.train_images[:100], small_splits.train_labels[:100]
    loss = make_loss(model, 1, use_dropout=False, use_l2=False, use_input_dropout=False,
                     use_label_smoothing=True)  # fmt: skip
    value, _ = loss(params, hparams, images, labels, jnp.ones(100), jax.random.key(1))
    expected = numpy_smoothed_loss(model.apply(params, images), np.asarray(labels), 0.2).mean()
    assert float(value) == pytest.approx(expected, rel=1e-5)
