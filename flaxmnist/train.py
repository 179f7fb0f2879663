"""Training as one pure function, built from static settings (the purejaxrl pattern).

``make_train(spec)`` returns ``train(hparams, key, data) -> (params, history)``. Everything
that changes array *shapes* (layer widths, epochs, batch size, and the data sizes, read off
the arrays at trace time) is static and lives in ``TrainSpec``; every hyperparameter that does
not (learning rate, L2, weight decay, dropout rates) is an array in ``Hyperparams``. So a
whole batch of configurations is ``jax.jit(jax.vmap(train, in_axes=(0, 0, None)))``: one
compile, one call, one lane per configuration and seed.

The data is an argument, not a closure: a jitted function that closes over arrays bakes them
into the program as constants (47 MB of MNIST, seconds of compile time).

Inside ``train``: parameters are initialised from the key; every epoch reshuffles the
training set with a key folded from the epoch number; ``lax.scan`` runs the minibatch steps;
Adam comes from ``optax.inject_hyperparams`` so its learning rate is an array; dropout draws
a fresh key per step; at the end of every epoch the train, validation and test loss and
accuracy are recorded.

Two regularisers, both named, both on kernels only (biases are never decayed):

- ``l2``: Keras-style coupled L2, ``loss += l2 * sum(W**2)`` per layer. Its gradient
  ``2 * l2 * W`` goes through Adam's normalisation, as in Keras' ``W_regularizer=l2(w)``.
- ``weight_decay``: decoupled weight decay (AdamW, Loshchilov & Hutter):
  ``W -= lr * weight_decay * W`` after the Adam step, outside the normalisation.

Partial last batch: when the training set size is not a multiple of the batch size, the
epoch's permutation is padded with repeated indices to whole batches and the padding gets
weight 0, so the last step is a mean over the remaining real examples only, which is what
Keras does when it trains on a smaller last batch. Every training image is used once per
epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from flaxmnist.data import DataSplits
from flaxmnist.models import MLP, layer_names

#: Adam's constants as in Keras 1 (``keras.optimizers.Adam`` defaults).
ADAM_B1, ADAM_B2, ADAM_EPS = 0.9, 0.999, 1e-8

HISTORY_KEYS = (
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "test_loss",
    "test_accuracy",
)


@dataclass(frozen=True)
class TrainSpec:
    """Static settings: everything that fixes the shapes of the compiled program.

    Attributes:
      hidden: widths of the hidden layers, e.g. ``(300,)`` or ``(500, 150)``.
      epochs: passes over the training split.
      batch_size: minibatch size (the reference study uses 200).
      eval_batch_size: chunk size for evaluation (bounds memory; does not change results).
      num_classes: width of the output layer.
      loss: ``"cross_entropy"`` (exact) or ``"keras1"`` (Keras 1's clipped probabilities);
        see ``cross_entropy``.
    """

    hidden: tuple[int, ...] = (300,)
    epochs: int = 10
    batch_size: int = 200
    eval_batch_size: int = 1000
    num_classes: int = 10
    loss: str = "cross_entropy"

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(w) for w in self.hidden))
        if any(w < 1 for w in self.hidden):
            raise ValueError(f"hidden widths must be >= 1, got {self.hidden}")
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1 or self.eval_batch_size < 1:
            raise ValueError("batch sizes must be >= 1")
        if self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {LOSSES}, got {self.loss!r}")

    @property
    def num_layers(self) -> int:
        """Dense layers, output included (the length of ``Hyperparams.l2``)."""
        return len(self.hidden) + 1


class Hyperparams(NamedTuple):
    """Array hyperparameters of one run; stack them along a leading axis to vmap.

    Attributes:
      learning_rate: Adam's step size, shape ``()``.
      l2: Keras-style coupled L2 coefficient per dense layer (hidden layers, then the output
        layer), shape ``(num_layers,)``.
      weight_decay: decoupled (AdamW) weight decay of all kernels, shape ``()``.
      dropout: dropout rate after each hidden layer, shape ``(num_hidden,)``.
    """

    learning_rate: jax.Array
    l2: jax.Array
    weight_decay: jax.Array
    dropout: jax.Array


def make_hyperparams(
    spec: TrainSpec,
    learning_rate: float,
    l2: float | Sequence[float] = 0.0,
    weight_decay: float = 0.0,
    dropout: float | Sequence[float] = 0.0,
) -> Hyperparams:
    """Build ``Hyperparams`` for ``spec``; a scalar ``l2`` or ``dropout`` applies to every layer."""
    l2_array = np.broadcast_to(np.asarray(l2, np.float32), (spec.num_layers,))
    dropout_array = np.broadcast_to(np.asarray(dropout, np.float32), (len(spec.hidden),))
    return Hyperparams(
        learning_rate=jnp.asarray(learning_rate, jnp.float32),
        l2=jnp.asarray(l2_array),
        weight_decay=jnp.asarray(weight_decay, jnp.float32),
        dropout=jnp.asarray(dropout_array),
    )


def stack_hyperparams(hparams: Sequence[Hyperparams]) -> Hyperparams:
    """Stack runs along a new leading (lane) axis, ready for ``jax.vmap``."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *hparams)


def _is_kernel(params):
    return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == "kernel", params)


def make_optimizer(hparams: Hyperparams) -> optax.GradientTransformation:
    """Adam (Keras 1 constants) with decoupled weight decay on kernels, lr as an array."""
    # ``mask`` is a function; without static_args inject_hyperparams would call it as a schedule.
    return optax.inject_hyperparams(optax.adamw, static_args="mask")(
        learning_rate=hparams.learning_rate,
        b1=ADAM_B1,
        b2=ADAM_B2,
        eps=ADAM_EPS,
        weight_decay=hparams.weight_decay,
        mask=_is_kernel,
    )


def l2_penalty(params, l2: jax.Array, num_hidden: int) -> jax.Array:
    """Keras-style penalty ``sum_i l2[i] * sum(W_i**2)`` over the dense kernels."""
    layers = params["params"]
    return sum(
        l2[i] * jnp.sum(jnp.square(layers[name]["kernel"]))
        for i, name in enumerate(layer_names(num_hidden))
    )


#: Keras 1's ``K.epsilon()``: its cross-entropy clips probabilities to [eps, 1 - eps].
KERAS1_EPSILON = 1e-7
LOSSES = ("cross_entropy", "keras1")


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


def make_loss(model: MLP, num_hidden: int, loss: str = "cross_entropy"):
    """``loss(params, hparams, images, labels, weights, dropout_key)``, training mode.

    Returns ``(loss, (data_loss, correct))``: ``loss`` is the weighted mean cross-entropy
    (``cross_entropy(..., loss)``) plus the L2 penalty (what Keras reports as the training
    loss), ``correct`` the weighted count of correct predictions.
    """

    def loss_fn(params, hparams, images, labels, weights, dropout_key):
        logits = model.apply(
            params, images, hparams.dropout, deterministic=False, rngs={"dropout": dropout_key}
        )
        per_example = cross_entropy(logits, labels, loss)
        real = weights > 0  # `where`, not a product: 0 * inf would be NaN
        data_loss = jnp.sum(jnp.where(real, weights * per_example, 0.0)) / jnp.sum(weights)
        total = data_loss + l2_penalty(params, hparams.l2, num_hidden)
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


def _all_finite(tree) -> jax.Array:
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in jax.tree.leaves(tree)]))


def make_train(
    spec: TrainSpec, on_epoch: Callable[[Any, Any], None] | None = None
) -> Callable[[Hyperparams, jax.Array, DataSplits], tuple[dict, dict]]:
    """Build the pure training function for ``spec``.

    Args:
      spec: static settings (shapes).
      on_epoch: optional host callback ``on_epoch(epoch_index, val_accuracy)``, called as
        each epoch ends (0-based index), for progress reporting. Under ``vmap`` it is called
        once per lane and epoch, each call with that lane's accuracy.

    Returns:
      ``train(hparams, key, data) -> (params, history)``: pure and jit-able. ``key`` is a
      PRNG key (``jax.random.key(seed)``); ``data`` a ``DataSplits`` of device arrays.
      ``history`` maps each of ``HISTORY_KEYS`` to an array of shape ``(epochs,)``, plus
      ``nonfinite``: whether, in that epoch, a training loss, a parameter or the validation
      or test loss became NaN or infinite.
    """
    model = MLP(hidden=spec.hidden, num_classes=spec.num_classes)
    num_hidden = len(spec.hidden)
    loss_and_grad = jax.value_and_grad(make_loss(model, num_hidden, spec.loss), has_aux=True)
    evaluate = make_evaluate(model, spec.eval_batch_size, spec.loss)

    def train(hparams: Hyperparams, key: jax.Array, data: DataSplits):
        num_train = data.train_images.shape[0]
        if spec.batch_size > num_train:
            raise ValueError(
                f"batch_size {spec.batch_size} is larger than the training set ({num_train})"
            )
        num_batches = math.ceil(num_train / spec.batch_size)
        pad = num_batches * spec.batch_size - num_train
        init_key, shuffle_key, dropout_key = jax.random.split(key, 3)

        params = model.init(init_key, data.train_images[:1])
        optimizer = make_optimizer(hparams)
        opt_state = optimizer.init(params)
        example_weights = (jnp.arange(num_batches * spec.batch_size) < num_train).astype(
            jnp.float32
        )
        batch_weights = example_weights.reshape(num_batches, spec.batch_size)

        def step(carry, batch):
            params, opt_state = carry
            indices, weights, step_key = batch
            images = data.train_images[indices]
            labels = data.train_labels[indices]
            (loss, (_, correct)), grads = loss_and_grad(
                params, hparams, images, labels, weights, step_key
            )
            updates, opt_state = optimizer.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            return (params, opt_state), (loss, correct)

        def epoch(carry, epoch_index):
            perm = jax.random.permutation(jax.random.fold_in(shuffle_key, epoch_index), num_train)
            indices = jnp.concatenate([perm, perm[:pad]]).reshape(num_batches, spec.batch_size)
            step_keys = jax.random.split(jax.random.fold_in(dropout_key, epoch_index), num_batches)
            carry, (losses, corrects) = jax.lax.scan(
                step, carry, (indices, batch_weights, step_keys)
            )
            batch_counts = jnp.sum(batch_weights, axis=1)
            params = carry[0]
            # Like Keras, the reported losses include the L2 penalty; accuracies do not care.
            penalty = l2_penalty(params, hparams.l2, num_hidden)
            val_loss, val_accuracy = evaluate(params, data.val_images, data.val_labels)
            test_loss, test_accuracy = evaluate(params, data.test_images, data.test_labels)
            val_loss, test_loss = val_loss + penalty, test_loss + penalty
            metrics = {
                "train_loss": jnp.sum(losses * batch_counts) / num_train,
                "train_accuracy": jnp.sum(corrects) / num_train,
                "val_loss": val_loss,
                "val_accuracy": val_accuracy,
                "test_loss": test_loss,
                "test_accuracy": test_accuracy,
                "nonfinite": ~(
                    jnp.all(jnp.isfinite(losses))
                    & _all_finite(params)
                    & jnp.isfinite(val_loss)
                    & jnp.isfinite(test_loss)
                ),
            }
            if on_epoch is not None:
                # Passing a metric makes the callback wait for the epoch's results; without
                # a data dependence XLA may run it as the epoch starts.
                jax.debug.callback(on_epoch, epoch_index, val_accuracy)
            return carry, metrics

        (params, _), history = jax.lax.scan(epoch, (params, opt_state), jnp.arange(spec.epochs))
        return params, history

    return train
