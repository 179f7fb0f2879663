import jax
import jax.numpy as jnp
import numpy as np
import pytest

from flaxmnist.core.models import MLP, dropout, layer_names, param_count


def numpy_forward(params, images):
    x = images.reshape(len(images), -1).astype(np.float64) / 255.0
    layers = params["params"]
    names = sorted(k for k in layers if k.startswith("hidden_")) + ["output"]
    for name in names:
        kernel = np.asarray(layers[name]["kernel"], np.float64)  # (out, in)
        x = x @ kernel.T + np.asarray(layers[name]["bias"])
        if name != "output":
            x = np.maximum(x, 0)
    x = x - x.max(axis=1, keepdims=True)
    return np.exp(x) / np.exp(x).sum(axis=1, keepdims=True)


@pytest.mark.parametrize("hidden", [(), (300,), (500, 150)])
def test_forward_matches_numpy_and_param_count(mnist, hidden):
    model = MLP(hidden=hidden)
    params = model.init(jax.random.key(0), mnist.test_images[:1])
    # Non-zero biases, so that a forgotten bias would show.
    params = jax.tree.map(lambda p: p + 0.01 if p.ndim == 1 else p, params)
    images = mnist.test_images[:64]
    probs = jax.nn.softmax(model.apply(params, images))
    np.testing.assert_allclose(probs, numpy_forward(params, images), atol=2e-6)
    count = sum(p.size for p in jax.tree.leaves(params))
    assert count == param_count(784, hidden)
    widths = [784, *hidden, 10]
    for name, fan_in, fan_out in zip(
        layer_names(len(hidden)), widths[:-1], widths[1:], strict=True
    ):
        assert params["params"][name]["kernel"].shape == (fan_out, fan_in)
    assert param_count(784, (300,)) == 784 * 300 + 300 + 300 * 10 + 10


def test_keras1_initialisation_of_every_layer():
    params = MLP(hidden=(1000, 800)).init(jax.random.key(1), jnp.zeros((1, 784)))["params"]
    for name in ("hidden_0", "hidden_1"):  # Keras 1's init='normal': N(0, 0.05^2)
        kernel = np.asarray(params[name]["kernel"])
        assert abs(kernel.std() - 0.05) < 0.001 and abs(kernel.mean()) < 0.001, name
    output = np.asarray(params["output"]["kernel"])
    limit = np.sqrt(6 / (800 + 10))  # glorot_uniform over fan_in + fan_out
    assert np.abs(output).max() <= limit and np.abs(output).max() > 0.95 * limit
    assert abs(output.std() - limit / np.sqrt(3)) < 0.02 * limit  # uniform, not normal
    for name in ("hidden_0", "hidden_1", "output"):
        assert not np.any(params[name]["bias"]), name
    # Each layer its own draw: not the same numbers reshaped.
    first = np.asarray(params["hidden_0"]["kernel"]).ravel()[:100]
    second = np.asarray(params["hidden_1"]["kernel"]).ravel()[:100]
    assert not np.allclose(first, second)


def test_each_dropout_rate_acts_on_its_own_layer():
    """Rate 1 after hidden layer 0 only: layer 1 sees zeros, so every image gets the logits
    W_out relu(b_1) + b_out; rate 1 after layer 1 only: the logits are b_out."""
    model = MLP(hidden=(6, 5))
    images = np.random.default_rng(0).uniform(0, 1, (4, 12)).astype(np.float32)
    params = model.init(jax.random.key(0), images)
    params = jax.tree.map(lambda p: p + 0.3 if p.ndim == 1 else p, params)  # biases non-zero
    layers = params["params"]
    b1 = np.asarray(layers["hidden_1"]["bias"], np.float64)
    w_out = np.asarray(layers["output"]["kernel"], np.float64)
    b_out = np.asarray(layers["output"]["bias"], np.float64)

    def logits(rates):
        return model.apply(
            params,
            images,
            jnp.array(rates),
            deterministic=False,
            rngs={"dropout": jax.random.key(1)},
        )

    first_dropped = np.broadcast_to(w_out @ np.maximum(b1, 0) + b_out, (4, 10))
    np.testing.assert_allclose(logits([1.0, 0.0]), first_dropped, rtol=1e-6)
    np.testing.assert_allclose(logits([0.0, 1.0]), np.broadcast_to(b_out, (4, 10)), rtol=1e-6)
    assert not np.allclose(logits([0.0, 0.0]), np.broadcast_to(b_out, (4, 10)))


def test_integer_images_are_scaled_like_floats(mnist):
    model = MLP(hidden=(32,))
    params = model.init(jax.random.key(0), mnist.test_images[:1])
    images = mnist.test_images[:8]
    np.testing.assert_allclose(
        model.apply(params, images),
        model.apply(params, images.astype(np.float32) / 255.0),
        rtol=1e-6,
    )


def test_dropout_rate_zero_is_the_deterministic_model_exactly(mnist):
    model = MLP(hidden=(64, 32))
    images = mnist.test_images[:32]
    params = model.init(jax.random.key(0), images)
    noisy = model.apply(
        params, images, jnp.zeros(2), deterministic=False, rngs={"dropout": jax.random.key(5)}
    )
    np.testing.assert_array_equal(noisy, model.apply(params, images))


def test_dropout_rate_one_gives_zeros_not_nan():
    x = jnp.full((4, 10), 1e30)  # large enough that x * (1 / tiny) would overflow
    out = dropout(x, jnp.float32(1.0), jax.random.key(0))
    assert np.all(np.isfinite(out)) and not np.any(out)
    grad = jax.grad(lambda x: dropout(x, jnp.float32(1.0), jax.random.key(0)).sum())(x)
    assert np.all(np.isfinite(grad))


def test_vmapped_rates_keep_one_minus_rate_of_units():
    rates = jnp.array([0.0, 0.1, 0.5, 0.9, 1.0])
    x = jnp.ones((200, 500))
    keys = jax.random.split(jax.random.key(3), len(rates))
    out = jax.vmap(dropout, in_axes=(None, 0, 0))(x, rates, keys)
    kept = np.asarray((out != 0).mean(axis=(1, 2)))
    np.testing.assert_allclose(kept, 1 - np.asarray(rates), atol=0.005)
    # Inverted dropout: kept units are scaled so that the mean is preserved.
    means = np.asarray(out.mean(axis=(1, 2)))
    np.testing.assert_allclose(means[:4], 1.0, atol=0.02)


def test_bfloat16_compute_keeps_float32_params_and_logits(mnist):
    images = mnist.test_images[:64]
    params = MLP(hidden=(64,)).init(jax.random.key(0), images)
    low = MLP(hidden=(64,), compute_dtype="bfloat16")
    assert jax.tree.leaves(low.init(jax.random.key(0), images))[0].dtype == jnp.float32
    logits = low.apply(params, images)
    assert logits.dtype == jnp.float32
    exact = MLP(hidden=(64,)).apply(params, images)
    np.testing.assert_allclose(logits, exact, atol=0.05)  # bfloat16: 8 bits of mantissa
    assert not np.array_equal(logits, exact)


def dropped_input(model, params, images, rate, **kwargs):
    """What the first layer sees: ``hidden_0`` is the identity with zero bias, so its output
    (captured before the ReLU) is the input after input dropout."""
    _, state = model.apply(
        params,
        images,
        deterministic=False,
        input_dropout=jnp.float32(rate),
        capture_intermediates=True,
        mutable=["intermediates"],
        **kwargs,
    )
    return np.asarray(state["intermediates"]["hidden_0"]["__call__"][0])


def identity_first_layer(model, images):
    params = model.init(jax.random.key(0), images)
    layer = params["params"]["hidden_0"]
    layer["kernel"] = jnp.eye(784, dtype=jnp.float32)
    layer["bias"] = jnp.zeros(784, jnp.float32)
    return params


@pytest.mark.parametrize("rate", [0.2, 0.5])
def test_input_dropout_zeroes_that_fraction_of_pixels_and_scales_the_rest(mnist, rate):
    model = MLP(hidden=(784,))
    images = mnist.test_images[:64]
    params = identity_first_layer(model, images)
    x = images.reshape(64, -1).astype(np.float64) / 255.0
    out = dropped_input(model, params, images, rate, rngs={"input_dropout": jax.random.key(7)})
    lit = x > 0
    dropped = (out == 0) & lit
    assert lit.sum() > 5000
    assert abs(dropped.sum() / lit.sum() - rate) < 0.02
    kept = lit & ~dropped
    np.testing.assert_allclose(out[kept], x[kept] / (1 - rate), rtol=1e-6)
    assert not np.any(out[~lit])
    zero = dropped_input(model, params, images, 0.0, rngs={"input_dropout": jax.random.key(7)})
    np.testing.assert_array_equal(
        zero, dropped_input(model, params, images, 0.0, rngs={"input_dropout": jax.random.key(8)})
    )
    np.testing.assert_allclose(zero, x, rtol=1e-6)


def test_input_dropout_has_its_own_stream_and_leaves_hidden_draws_alone(mnist):
    model = MLP(hidden=(32, 16))
    images = mnist.test_images[:16]
    params = model.init(jax.random.key(0), images)
    rates, hidden_key = jnp.array([0.3, 0.4]), jax.random.key(5)

    def logits(input_rate, input_seed=9):
        return model.apply(
            params,
            images,
            rates,
            deterministic=False,
            input_dropout=jnp.float32(input_rate),
            rngs={"dropout": hidden_key, "input_dropout": jax.random.key(input_seed)},
        )

    hidden_only = model.apply(params, images, rates, deterministic=False,
                              rngs={"dropout": hidden_key})  # fmt: skip
    np.testing.assert_array_equal(logits(0.0), hidden_only)  # the hidden masks did not move
    assert not np.allclose(logits(0.3), hidden_only)
    assert not np.allclose(logits(0.3), logits(0.3, input_seed=10))
    # Alone, without hidden dropout rates, input dropout needs only its own key.
    alone = model.apply(params, images, deterministic=False, input_dropout=jnp.float32(0.0),
                        rngs={"input_dropout": jax.random.key(9)})  # fmt: skip
    np.testing.assert_array_equal(alone, model.apply(params, images))
    with pytest.raises(ValueError, match="needs dropout_rates or input_dropout"):
        model.apply(params, images, deterministic=False)


def test_mask_padding_zeroes_the_padded_units_and_keeps_the_true_init_ranges():
    from flaxmnist.core.models import mask_padding, unpad_params

    hidden, widths = (32, 24), (20, 7)
    params = MLP(hidden).init(jax.random.key(0), jnp.zeros((1, 784)))["params"]
    masked = mask_padding(params, jnp.asarray(widths), hidden)
    first, second, out = (masked[n]["kernel"] for n in ("hidden_0", "hidden_1", "output"))
    assert not jnp.any(first[20:]) and jnp.all(first[:20] != 0)  # (out, in) kernels
    assert not jnp.any(second[7:]) and not jnp.any(second[:, 20:])
    assert jnp.all(second[:7, :20] != 0)
    assert not jnp.any(out[:, 7:]) and jnp.all(out[:, :7] != 0)
    limit = np.sqrt(6 / (7 + 10))  # glorot_uniform of the true fans, 7 -> 10
    assert 0.8 * limit < float(jnp.max(jnp.abs(out))) <= limit
    assert float(jnp.std(first[:20])) == pytest.approx(0.05, rel=0.05)  # N(0, 0.05²)
    cut = unpad_params(masked, widths)
    shapes = {name: layer["kernel"].shape for name, layer in cut.items()}
    assert shapes == {"hidden_0": (20, 784), "hidden_1": (7, 20), "output": (10, 7)}
    assert cut["hidden_1"]["bias"].shape == (7,)
    np.testing.assert_array_equal(cut["output"]["kernel"], out[:, :7])
