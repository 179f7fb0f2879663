"""The training losses, and the other pure per-step rules of training.

- ``cross_entropy``: softmax cross-entropy, exact (``log_softmax``) or Keras 1's clipped.
- ``smoothed_cross_entropy``: the same against labels smoothed towards the uniform.
- ``l2_penalty``: Keras-style coupled L2, ``sum_i l2[i] * sum(W_i**2)`` over the kernels.
- ``make_loss``: the training objective of a model: weighted mean cross-entropy plus L2.
- ``make_evaluate``: a model's mean cross-entropy and accuracy on a split, in chunks.
- ``make_probabilities``: a model's softmax probabilities on a split, in chunks.
- ``schedule_factor``: the learning rate's multiplier at a step (warmup times decay).
- ``apply_max_norm``: Keras' ``max_norm`` constraint on the hidden units' incoming weights.
- ``make_update``: one optimizer step with both of them.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from flaxmnist.core.models import MLP, layer_names
from flaxmnist.specs.config import LOSSES, LR_SCHEDULES

#: The fold that derives the input dropout's key from the step's dropout key.
INPUT_DROPOUT_FOLD = 1


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


def smoothed_cross_entropy(
    logits: jax.Array, labels: jax.Array, smoothing: jax.Array, loss: str = "cross_entropy"
) -> jax.Array:
    """Per-example cross-entropy against smoothed labels (Szegedy et al. 2016): the target
    puts ``1 - smoothing`` on the label and ``smoothing`` spread evenly over all classes
    (``optax.smooth_labels``), so the loss is ``(1 - s) * -log p_y + s * mean_k(-log p_k)``.
    ``loss`` picks the log-probabilities as ``cross_entropy`` does (``"keras1"``: clipped).
    """
    if loss == "cross_entropy":
        log_probs = jax.nn.log_softmax(logits)
    elif loss == "keras1":
        log_probs = jnp.log(jnp.clip(jax.nn.softmax(logits), KERAS1_EPSILON, 1 - KERAS1_EPSILON))
    else:
        raise ValueError(f"loss must be one of {LOSSES}, got {loss!r}")
    label_term = -jnp.take_along_axis(log_probs, labels[:, None].astype(jnp.int32), 1)[:, 0]
    return (1.0 - smoothing) * label_term + smoothing * -jnp.mean(log_probs, axis=-1)


def make_loss(
    model: MLP,
    num_hidden: int,
    loss: str = "cross_entropy",
    use_dropout: bool = True,
    use_l2: bool = True,
    use_input_dropout: bool = True,
    use_label_smoothing: bool = False,
):
    """``loss(params, hparams, images, labels, weights, dropout_key)``, training mode.

    Returns ``(loss, (data_loss, correct))``: ``loss`` is the weighted mean cross-entropy
    (``cross_entropy(..., loss)``) plus the L2 penalty (what Keras reports as the training
    loss), ``correct`` the weighted count of correct predictions. ``use_input_dropout``
    passes ``hparams.input_dropout`` to the model, with the key ``fold_in(dropout_key,
    INPUT_DROPOUT_FOLD)``. ``use_label_smoothing`` trains against labels smoothed by
    ``hparams.label_smoothing`` (``smoothed_cross_entropy``).
    """

    def loss_fn(params, hparams, images, labels, weights, dropout_key):
        rngs = {"dropout": dropout_key} if use_dropout else {}
        rates = (hparams.dropout,) if use_dropout else ()
        extra = {}
        if use_input_dropout:
            # A key of its own: the hidden layers keep the draws they had without it.
            rngs["input_dropout"] = jax.random.fold_in(dropout_key, INPUT_DROPOUT_FOLD)
            extra["input_dropout"] = hparams.input_dropout
        if rngs:
            logits = model.apply(params, images, *rates, deterministic=False, rngs=rngs, **extra)
        else:
            logits = model.apply(params, images)
        if use_label_smoothing:
            per_example = smoothed_cross_entropy(logits, labels, hparams.label_smoothing, loss)
        else:
            per_example = cross_entropy(logits, labels, loss)
        real = weights > 0  # `where`, not a product: 0 * inf would be NaN
        data_loss = jnp.sum(jnp.where(real, weights * per_example, 0.0)) / jnp.sum(weights)
        total = data_loss + l2_penalty(params, hparams.l2, num_hidden) if use_l2 else data_loss
        correct = jnp.sum(jnp.where(real, jnp.argmax(logits, -1) == labels, False))
        return total, (data_loss, correct)

    return loss_fn


def make_evaluate(model: MLP, eval_batch_size: int, loss: str = "cross_entropy"):
    """``evaluate(params, images, labels) -> (mean loss, accuracy)``, in chunks, no dropout."""

    def evaluate(params, images, labels):
        count = images.shape[0]
        chunk = min(eval_batch_size, count)
        num_chunks = math.ceil(count / chunk)
        pad = num_chunks * chunk - count
        images = jnp.pad(images, [(0, pad)] + [(0, 0)] * (images.ndim - 1))
        labels = jnp.pad(labels, (0, pad))
        weights = jnp.arange(num_chunks * chunk) < count

        def body(totals, chunk_data):
            x, y, w = chunk_data
            logits = model.apply(params, x)
            ce = cross_entropy(logits, y, loss)
            correct = (jnp.argmax(logits, -1) == y) & w
            # `where`, not a product: the padding's loss may be inf, and 0 * inf is NaN.
            return (totals[0] + jnp.sum(jnp.where(w, ce, 0.0)), totals[1] + jnp.sum(correct)), None

        def chunked(a):
            return a.reshape(num_chunks, chunk, *a.shape[1:])

        (loss_sum, correct_sum), _ = jax.lax.scan(
            body,
            (jnp.float32(0), jnp.int32(0)),
            (chunked(images), chunked(labels), chunked(weights)),
        )
        return loss_sum / count, correct_sum / count

    return evaluate


def schedule_factor(hparams, step: jax.Array | int, steps_per_epoch: int) -> jax.Array:
    """The learning rate's multiplier at global training ``step``: ``warmup * decay``.

    With ``e = step / steps_per_epoch`` epochs elapsed, ``decay`` is, by
    ``hparams.lr_schedule`` (an index into ``specs.LR_SCHEDULES``): 1 (``"constant"``),
    ``0.5 * (1 + cos(pi * min(e / schedule_epochs, 1)))`` (``"cosine"``) or ``lr_decay ** e``
    (``"exponential"``); ``warmup`` is ``min(1, (step + 1) / (warmup_epochs *
    steps_per_epoch))`` when ``warmup_epochs > 0``, else 1. The constant schedule without
    warmup gives exactly 1. Every choice is a ``jnp.where``, so ``hparams`` may be vmapped.
    """
    t = jnp.asarray(step, jnp.float32)
    epochs = t / steps_per_epoch
    progress = jnp.minimum(epochs / hparams.schedule_epochs, 1.0)
    cosine = 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    kind = hparams.lr_schedule
    decay = jnp.where(
        kind == LR_SCHEDULES.index("cosine"),
        cosine,
        jnp.where(kind == LR_SCHEDULES.index("exponential"), hparams.lr_decay**epochs, 1.0),
    )
    warming = hparams.warmup_epochs > 0
    warmup_steps = jnp.where(warming, hparams.warmup_epochs * steps_per_epoch, 1.0)
    return jnp.where(warming, jnp.minimum(1.0, (t + 1.0) / warmup_steps), 1.0) * decay


def apply_max_norm(params, max_norm: jax.Array, num_hidden: int):
    """``params`` with every hidden unit's incoming weights rescaled as Keras' ``max_norm``.

    Each row ``w`` of each hidden kernel (``(out, in)``: a row is one unit's fan-in) becomes
    ``w * clip(|w|, 0, max_norm) / (1e-7 + |w|)``; the output layer and the biases are left
    alone. ``max_norm = 0`` means no constraint and returns the kernels exactly unchanged.
    """

    def constrain(kernel):
        norms = jnp.sqrt(jnp.sum(jnp.square(kernel), axis=1, keepdims=True))
        scaled = kernel * (jnp.clip(norms, 0.0, max_norm) / (KERAS1_EPSILON + norms))
        return jnp.where(max_norm > 0, scaled, kernel)

    layers = dict(params["params"])
    for name in layer_names(num_hidden)[:-1]:
        layers[name] = {**layers[name], "kernel": constrain(layers[name]["kernel"])}
    return {**params, "params": layers}


def make_update(num_hidden: int, use_schedule: bool = True, use_max_norm: bool = True):
    """``update(optimizer, state, grads, hparams, step, steps_per_epoch) -> (params,
    opt_state)``: one step of ``optimizer`` (``train.make_optimizer``) from ``state``'s
    ``params`` and ``opt_state``.

    ``use_schedule``: the step's learning rate is ``hparams.learning_rate *
    schedule_factor(hparams, step, steps_per_epoch)``, set in the optimizer state, where
    :func:`optax.inject_hyperparams`' update reads it (so AdamW's decay is scheduled too).
    ``use_max_norm``: ``apply_max_norm`` after the update. ``False`` leaves either out.
    """

    def update(optimizer, state, grads, hparams, step, steps_per_epoch):
        opt_state = state.opt_state
        if use_schedule:
            factor = schedule_factor(hparams, step, steps_per_epoch)
            rate = {"learning_rate": hparams.learning_rate * factor}
            opt_state = opt_state._replace(hyperparams={**opt_state.hyperparams, **rate})
        updates, opt_state = optimizer.update(grads, opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        if use_max_norm:
            params = apply_max_norm(params, hparams.max_norm, num_hidden)
        return params, opt_state

    return update


def make_probabilities(model: MLP, eval_batch_size: int):
    """``probabilities(params, images) -> (count, classes)``: the model's softmax, in chunks
    (what an ensemble averages), no dropout."""

    def probabilities(params, images):
        count = images.shape[0]
        chunk = min(eval_batch_size, count)
        num_chunks = math.ceil(count / chunk)
        pad = num_chunks * chunk - count
        images = jnp.pad(images, [(0, pad)] + [(0, 0)] * (images.ndim - 1))
        chunks = images.reshape(num_chunks, chunk, *images.shape[1:])
        probs = jax.lax.map(lambda x: jax.nn.softmax(model.apply(params, x)), chunks)
        return probs.reshape(num_chunks * chunk, -1)[:count]

    return probabilities
