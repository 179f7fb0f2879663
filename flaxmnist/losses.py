"""The training losses, pure functions of logits, labels and kernels.

- ``cross_entropy``: softmax cross-entropy, exact (``log_softmax``) or Keras 1's clipped.
- ``l2_penalty``: Keras-style coupled L2, ``sum_i l2[i] * sum(W_i**2)`` over the kernels.
- ``make_loss``: the training objective of a model: weighted mean cross-entropy plus L2.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from flaxmnist.models import MLP, layer_names
from flaxmnist.specs import LOSSES


def l2_penalty(params, l2: jax.Array, num_hidden: int) -> jax.Array:
    """Keras-style penalty ``sum_i l2[i] * sum(W_i**2)`` over the dense kernels."""
    layers = params["params"]
    return sum(
        l2[i] * jnp.sum(jnp.square(layers[name]["kernel"]))
        for i, name in enumerate(layer_names(num_hidden))
    )


#: Keras 1's ``K.epsilon()``: its cross-entropy clips probabilities to [eps, 1 - eps].
KERAS1_EPSILON = 1e-7


def cross_entropy(logits: jax.Array, labels: jax.Array, loss: str = "cross_entropy") -> jax.Array:
    """Per-example cross-entropy of integer ``labels`` under softmax ``logits``.

    ``"cross_entropy"`` is the exact ``-log_softmax``. ``"keras1"`` is Keras 1's
    ``categorical_crossentropy``: softmax probabilities clipped to [1e-7, 1 - 1e-7] before
    the log, so a sample's loss is at most about 16.1 and a confidently wrong prediction
    (true-class probability below 1e-7) gets no gradient at all. At large learning rates
    that freezes training where the exact loss would recover (see REPRODUCTION.md, lr 0.1).
    """
    if loss == "cross_entropy":
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    if loss == "keras1":
        probs = jnp.clip(jax.nn.softmax(logits), KERAS1_EPSILON, 1.0 - KERAS1_EPSILON)
        return -jnp.log(jnp.take_along_axis(probs, labels[:, None].astype(jnp.int32), 1)[:, 0])
    raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")


def make_loss(
    model: MLP,
    num_hidden: int,
    loss: str = "cross_entropy",
    use_dropout: bool = True,
    use_l2: bool = True,
):
    """``loss(params, hparams, images, labels, weights, dropout_key)``, training mode.

    Returns ``(loss, (data_loss, correct))``: ``loss`` is the weighted mean cross-entropy
    (``cross_entropy(..., loss)``) plus the L2 penalty (what Keras reports as the training
    loss), ``correct`` the weighted count of correct predictions.
    """

    def loss_fn(params, hparams, images, labels, weights, dropout_key):
        if use_dropout:
            logits = model.apply(
                params, images, hparams.dropout, deterministic=False, rngs={"dropout": dropout_key}
            )
        else:
            logits = model.apply(params, images)
        per_example = cross_entropy(logits, labels, loss)
        real = weights > 0  # `where`, not a product: 0 * inf would be NaN
        data_loss = jnp.sum(jnp.where(real, weights * per_example, 0.0)) / jnp.sum(weights)
        total = data_loss + l2_penalty(params, hparams.l2, num_hidden) if use_l2 else data_loss
        correct = jnp.sum(jnp.where(real, jnp.argmax(logits, -1) == labels, False))
        return total, (data_loss, correct)

    return loss_fn
