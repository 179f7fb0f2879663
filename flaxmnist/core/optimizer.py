"""Adam as Keras 1 had it, with decoupled weight decay, its hyperparameters as arrays.

``make_optimizer(hparams)`` builds it from a lane's ``train.Hyperparams``;
``with_hyperparams`` sets a state's learning rate and weight decay (the update reads them
from the state, so they may change between epochs, and be vmapped). ``ema_step`` and
``debiased`` keep a moving average of the parameters (:func:`optax.ema`).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax

#: Adam's constants as in Keras 1 (``keras.optimizers.Adam`` defaults).
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8


def _is_kernel(params):
    return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == "kernel", params)


def make_optimizer(
    hparams: Any, use_weight_decay: bool = True, step_multipliers: Any = None
) -> optax.GradientTransformation:
    """Adam (Keras 1 constants) with decoupled weight decay on kernels, lr as an array.

    :func:`optax.inject_hyperparams` keeps the hyperparameters in the optimizer state (Adam's
    constants as float32, as Keras 1 held them), and its update reads them from there, not
    from ``hparams``: ``with_hyperparams`` writes ``hparams`` into a state.
    ``use_weight_decay=False`` gives plain Adam, which is what AdamW does with a decay of 0.
    ``step_multipliers`` (a tree like the parameters, e.g. ``mup.adam_step_multipliers``)
    multiplies Adam's step on each leaf before the decay and the learning rate: per-layer
    learning rates that leave each layer's decay step ``lr * weight_decay * W`` as it is.
    Without it the optimizer is :func:`optax.adamw` (:func:`optax.adam`) itself.
    """
    if step_multipliers is not None:
        return optax.inject_hyperparams(_adamw_per_leaf, static_args=("mask", "multipliers"))(
            learning_rate=hparams.learning_rate,
            b1=ADAM_B1,
            b2=ADAM_B2,
            eps=ADAM_EPS,
            weight_decay=hparams.weight_decay if use_weight_decay else None,
            mask=_is_kernel,
            multipliers=step_multipliers,
        )
    if not use_weight_decay:
        return optax.inject_hyperparams(optax.adam)(
            learning_rate=hparams.learning_rate, b1=ADAM_B1, b2=ADAM_B2, eps=ADAM_EPS
        )
    # ``mask`` is a function; without static_args inject_hyperparams would call it as a schedule.
    return optax.inject_hyperparams(optax.adamw, static_args="mask")(
        learning_rate=hparams.learning_rate,
        b1=ADAM_B1,
        b2=ADAM_B2,
        eps=ADAM_EPS,
        weight_decay=hparams.weight_decay,
        mask=_is_kernel,
    )


def _adamw_per_leaf(learning_rate, b1, b2, eps, weight_decay, mask, multipliers):
    """:func:`optax.adamw`'s chain with Adam's step multiplied leaf by leaf by
    ``multipliers`` (``weight_decay=None``: no decay, :func:`optax.adam`'s chain)."""
    scale = optax.GradientTransformation(
        lambda params: optax.EmptyState(),
        lambda updates, state, params=None: (
            jax.tree.map(jnp.multiply, updates, multipliers),
            state,
        ),
    )
    decay = [] if weight_decay is None else [optax.add_decayed_weights(weight_decay, mask)]
    return optax.chain(
        optax.scale_by_adam(b1=b1, b2=b2, eps=eps),
        scale,
        *decay,
        optax.scale_by_learning_rate(learning_rate),
    )


def with_hyperparams(opt_state, hparams: Any):
    """``opt_state`` (of ``make_optimizer``) set to train with ``hparams``' learning rate and
    weight decay: the update reads them from the state, which ``init`` filled once."""
    stored = dict(opt_state.hyperparams)
    stored["learning_rate"] = hparams.learning_rate
    if "weight_decay" in stored:
        stored["weight_decay"] = hparams.weight_decay
    return opt_state._replace(hyperparams=stored)


def ema_step(ema_state: optax.EmaState, params: Any, decay: Any) -> optax.EmaState:
    """:func:`optax.ema`'s state moved one step towards ``params``: ``ema = decay * ema + (1 -
    decay) * params``, ``count + 1``; ``decay`` may be an array (vmapped). Not debiased:
    that costs a pass over the parameters, which ``debiased`` makes once an epoch."""
    return optax.ema(decay, debias=False).update(params, ema_state)[1]


def debiased(ema_state: optax.EmaState, decay: Any) -> Any:
    """The average without its bias towards the zeros it started from, ``ema / (1 -
    decay**count)``: what ``optax.ema(decay, debias=True)`` returns. ``decay = 0`` gives
    the last parameters exactly."""
    correction = 1.0 - decay**ema_state.count
    return jax.tree.map(lambda m: m / correction, ema_state.ema)
