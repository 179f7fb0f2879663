"""The multilayer perceptron of the reference study, as a Flax linen module.

Keras 1 semantics by default: hidden kernels drawn from N(0, 0.05²) (Keras 1's
``init='normal'``), the output kernel from ``glorot_uniform``, zero biases, ReLU, and
inverted dropout after each hidden activation (and, optionally, on the input pixels). The
module returns logits; the 10-way softmax lives in the loss (``log_softmax`` is the stable way
to compute it).

Kernels are stored output-major, ``(out_features, in_features)`` (``Dense`` below), not
Flax's ``(in, out)``: training ran faster that way (step C in BENCHMARKS.md). The initial
values are the same as ``nn.Dense``'s: drawn as ``(in, out)`` and transposed.

Dropout rates are *arrays* passed at call time, not module attributes, so that a batch of
models with different rates can be :func:`jax.vmap`-ed. Flax's ``nn.Dropout`` cannot do that: it
tests ``rate == 0`` in Python.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

KERAS1_NORMAL_STDDEV = 0.05


class Dense(nn.Module):
    """``x @ kernel.T + bias`` with ``kernel`` of shape ``(features, in_features)``.

    Attributes:
      features: output width.
      kernel_init: initializer called with the ``(in_features, features)`` shape (the
        convention of Flax's and Keras' initializers, whose fans it sets); its draw is
        stored transposed.
      bias_init: initializer of the ``(features,)`` bias.
    """

    features: int
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param(
            "kernel",
            lambda key, shape: self.kernel_init(key, shape[::-1]).T,
            (self.features, x.shape[-1]),
        )
        bias = self.param("bias", self.bias_init, (self.features,))
        contract = (((x.ndim - 1,), (1,)), ((), ()))
        return jax.lax.dot_general(x, kernel.astype(x.dtype), contract) + bias.astype(x.dtype)


def dropout(x: jax.Array, rate: jax.Array, key: jax.Array) -> jax.Array:
    """Inverted dropout with a traced ``rate``: zero each unit with probability ``rate``.

    Kept units are scaled by ``1 / (1 - rate)`` so the expected activation is unchanged.
    ``rate = 0`` returns ``x`` exactly; ``rate = 1`` returns zeros (never NaN).
    """
    keep_prob = 1.0 - rate
    # Float32 draws whatever x's dtype: bfloat16's 8-bit mantissa would quantise the rate.
    keep = jax.random.uniform(key, x.shape) >= rate
    # In x's dtype: a float32 scale would promote bfloat16 activations to float32.
    scale = (1.0 / jnp.maximum(keep_prob, jnp.finfo(x.dtype).tiny)).astype(x.dtype)
    return jnp.where(keep, x * scale, jnp.zeros_like(x))


class MLP(nn.Module):
    """784 → hidden[0] → … → hidden[-1] → ``num_classes``, ReLU, inverted dropout.

    Attributes:
      hidden: widths of the hidden layers (any number, including none).
      num_classes: width of the output layer.
      compute_dtype: ``"float32"`` or ``"bfloat16"``: the dtype of the activations and of the
        matrix products (kernels are cast to it per call; parameters stay float32, and the
        logits come back as float32).

    Call with ``images`` of shape ``(batch, ...)``: integer images are scaled by 1/255, then
    flattened. Pass ``dropout_rates`` (shape ``(len(hidden),)``) and
    ``deterministic=False`` with ``rngs={"dropout": key}`` to train with dropout; pass
    ``input_dropout`` (shape ``()``) with ``rngs={"input_dropout": key}`` to drop input pixels
    too. Either may come alone; each has its own stream, so neither moves the other's draws.
    Parameters are named ``hidden_0``, ``hidden_1``, …, ``output``; kernels are
    ``(out, in)`` (see ``Dense``).
    """

    hidden: Sequence[int]
    num_classes: int = 10
    compute_dtype: str = "float32"

    @nn.compact
    def __call__(
        self,
        images: jax.Array,
        dropout_rates: jax.Array | None = None,
        *,
        deterministic: bool = True,
        input_dropout: jax.Array | None = None,
    ) -> jax.Array:
        x = images.reshape(images.shape[0], -1)
        if jnp.issubdtype(x.dtype, jnp.integer):
            x = x.astype(jnp.float32) / 255.0
        x = x.astype(self.compute_dtype)
        if not deterministic and dropout_rates is None and input_dropout is None:
            raise ValueError("deterministic=False needs dropout_rates or input_dropout")
        if not deterministic and input_dropout is not None:
            x = dropout(x, input_dropout, self.make_rng("input_dropout"))
        for i, width in enumerate(self.hidden):
            x = Dense(
                width,
                kernel_init=nn.initializers.normal(KERAS1_NORMAL_STDDEV),
                bias_init=nn.initializers.zeros,
                name=f"hidden_{i}",
            )(x)
            x = nn.relu(x)
            if not deterministic and dropout_rates is not None:
                x = dropout(x, dropout_rates[i], self.make_rng("dropout"))
        logits = Dense(
            self.num_classes,
            kernel_init=nn.initializers.glorot_uniform(),
            bias_init=nn.initializers.zeros,
            name="output",
        )(x)
        return logits.astype(jnp.float32)


def layer_names(num_hidden: int) -> tuple[str, ...]:
    """Parameter names of an ``MLP`` with ``num_hidden`` hidden layers, input to output."""
    return tuple(f"hidden_{i}" for i in range(num_hidden)) + ("output",)


def param_count(input_size: int, hidden: Sequence[int], num_classes: int = 10) -> int:
    """Number of parameters (kernels and biases) of an ``MLP``."""
    sizes = [input_size, *hidden, num_classes]
    return sum(
        fan_in * fan_out + fan_out for fan_in, fan_out in zip(sizes, sizes[1:], strict=False)
    )


def mask_padding(params: dict, widths: jax.Array, hidden: Sequence[int]) -> dict:
    """The initial ``params`` of an ``MLP(hidden)`` (padded widths) as those of an MLP whose
    hidden layers are ``widths`` wide (an int array, each ≤ ``hidden``): every weight into
    or out of a unit past its layer's width is zero, and the output kernel is rescaled to the
    ``glorot_uniform`` range of the true fans (the hidden kernels' N(0, 0.05²) has none).

    Padded units then stay zero through training: their pre-activation is 0, ReLU's
    gradient there is 0, so no gradient, Adam step, penalty or decay ever moves them. The
    real units draw from the same distributions as an unpadded MLP's (other values: the
    draws are of another shape), and train alike up to float rounding and dropout draws.
    """
    params = dict(params)
    names = layer_names(len(hidden))
    keep_in = None  # the input pixels are never padded
    for i, name in enumerate(names):
        kernel = params[name]["kernel"]  # (out, in)
        out_units = jnp.arange(kernel.shape[0])
        keep_out = out_units < widths[i] if i < len(hidden) else jnp.ones_like(out_units, bool)
        mask = keep_out[:, None] if keep_in is None else keep_out[:, None] & keep_in[None, :]
        if i == len(hidden):  # glorot_uniform's limit is sqrt(6 / (fan_in + fan_out))
            classes = kernel.shape[0]
            kernel = kernel * jnp.sqrt((kernel.shape[1] + classes) / (widths[-1] + classes))
        params[name] = {"kernel": jnp.where(mask, kernel, 0), "bias": params[name]["bias"]}
        keep_in = keep_out
    return params


def unpad_params(params: dict, widths: Sequence[int]) -> dict:
    """``params`` of a padded ``MLP`` cut to the hidden ``widths`` (any leading axes kept):
    the parameters of the MLP the padded one trains."""
    names = layer_names(len(widths))
    sizes = [None, *widths, None]  # None: the input and the classes stay whole
    cut = {}
    for i, name in enumerate(names):
        rows, columns = slice(sizes[i + 1]), slice(sizes[i])
        layer = params[name]
        cut[name] = {
            "kernel": layer["kernel"][..., rows, columns],
            "bias": layer["bias"][..., rows],
        }
    return cut
