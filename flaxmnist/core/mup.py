"""The maximal-update parameterisation (μP) of an MLP trained with Adam, relative to a base width.

Tensor Programs V (Yang et al. 2022, arXiv 2203.03466), Table 3, for ``784 → hidden → 10``
and Adam, reads, layer by layer (fan-in: the width a layer reads):

===================================  ==============  ================  ==================
layer                                Table 3's kind  initial variance  Adam learning rate
===================================  ==============  ================  ==================
``hidden_0`` (784 → w(0))            input weights   ∝ 1 / fan_in      η
``hidden_l``, l ≥ 1 (w(l-1) → w(l))  hidden weights  ∝ 1 / fan_in      η / fan_in
``output`` (w(last) → 10)            output weights  ∝ 1 / fan_in²     η / fan_in
every bias                           all biases      (zeros here)      η
===================================  ==============  ================  ==================

Relative to a base width ``B`` (``TrainSpec.mup_base_width``): with the width multiplier
``m = fan_in / B`` of every layer whose fan-in is a hidden width (every layer after the
first), that layer's kernel is drawn as ``"standard"`` draws it at its true fans, times
``1 / sqrt(m)`` (its variance divided by ``m``), and Adam's step on it is divided by ``m``.
The first layer reads the 784 pixels, whose number does not grow with width: it is as
``"standard"``, like every bias. So at ``B`` every layer is drawn and stepped exactly as
under ``"standard"``, and away from it the scalings are Table 3's: the output kernel's
``glorot_uniform`` (variance ``2 / (fan_in + 10)``, about ``1 / fan_in``) divided by ``m``
falls as ``1 / fan_in²``; the hidden kernels' N(0, 0.05²) (Keras 1's, which has no fan-in in
it) divided by ``m`` falls as ``1 / fan_in``.

**The output multiplier.** The authors' ``mup`` package writes the output layer otherwise:
it multiplies the logits by ``1 / m`` (its ``MuReadout``), draws the kernel ``sqrt(m)`` times
wider and steps it at η. Under Adam that is the same function at every step: the logits'
weights are ``kernel / m`` either way, drawn with variance ``standard / m``, and Adam's step
does not depend on the scale of its gradient (up to its ``eps``), so a step of η on the
kernel is a step of ``η / m`` on ``kernel / m``. flaxmnist folds the multiplier into the
weights: parameters stay the function's weights, which evaluation, ensembles, checkpoints
and ``unpad_params`` read as they are. ``tests/test_mup.py`` trains both forms by hand.

Decoupled weight decay keeps its step ``lr * weight_decay * W`` in every layer (the ``mup``
package's ``MuAdamW`` multiplies the decay by ``m`` for the same end): the multiplier divides
Adam's step only. Everything here is traced: in a padded program (``TrainSpec.padded``) each
lane has its own widths, so its own multipliers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from flaxmnist.core.models import layer_names


def width_multipliers(widths: jax.Array, base_width: int) -> jax.Array:
    """``m`` of every dense layer, input to output, shape ``(len(widths) + 1,)``: 1 for the
    first (its fan-in is the pixels), ``fan_in / base_width`` for every later one.

    ``widths`` are a lane's hidden widths (``Hyperparams.widths``; its own in a padded
    program). Example: widths ``(600,)``, base 300 give ``[1, 2]``.
    """
    fan_ins = jnp.asarray(widths, jnp.float32).reshape(-1)
    return jnp.concatenate([jnp.ones((1,), jnp.float32), fan_ins / base_width])


def rescale_init(params: dict, widths: jax.Array, base_width: int) -> dict:
    """Initial ``params`` (``{"params": {layer: {"kernel", "bias"}}}``, drawn as
    ``"standard"``, at the lane's true widths) as μP draws them: each kernel divided by
    ``sqrt(m)`` of its layer (``width_multipliers``); biases untouched."""
    multipliers = width_multipliers(widths, base_width)
    layers = dict(params["params"])
    for i, name in enumerate(layer_names(len(multipliers) - 1)):
        kernel = layers[name]["kernel"]
        layers[name] = {**layers[name], "kernel": kernel / jnp.sqrt(multipliers[i])}
    return {**params, "params": layers}


def adam_step_multipliers(params: dict, widths: jax.Array, base_width: int) -> dict:
    """A tree like ``params``: what Adam's step on each leaf is multiplied by, ``1 / m`` for
    a kernel (``width_multipliers``), 1 for a bias (``optimizer.make_optimizer`` applies it)."""
    multipliers = width_multipliers(widths, base_width)
    layers = {}
    for i, name in enumerate(layer_names(len(multipliers) - 1)):
        layers[name] = {
            leaf: (1.0 / multipliers[i] if leaf == "kernel" else jnp.float32(1.0))
            for leaf in params["params"][name]
        }
    return {**params, "params": layers}
