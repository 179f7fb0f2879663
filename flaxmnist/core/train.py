"""Training as one pure function, built from static settings (the purejaxrl pattern).

``make_train(spec)`` returns ``train(hparams, key, data) -> (params, history)``. Everything
that changes array *shapes* (layer widths, epochs, batch size, and the data sizes, read off
the arrays at trace time) is static and lives in ``TrainSpec``; every hyperparameter that does
not (learning rate and its schedule, L2, weight decay, dropout rates, max-norm) is an array in
``Hyperparams``. So a whole batch of configurations is
``jax.jit(jax.vmap(train, in_axes=(0, 0, None)))``: one compile, one call, one lane per
configuration and seed.

The data is an argument, not a closure: a jitted function that closes over arrays bakes them
into the program as constants (47 MB of MNIST, seconds of compile time).

``train`` is built from two smaller pure functions, ``make_train_fns(spec) -> (init,
run_epoch)``, which the runner calls from a host loop over epochs (progress, and a program
the persistent compilation cache can store). The key only depends on the seed, so lanes
that share a seed share their init, shuffle and dropout draws: the runner vmaps configurations
inside seeds (``in_axes=None`` for the key), and XLA then gathers and converts each minibatch
once per seed and multiplies it by all configurations' kernels in one wide matrix product.

Inside ``train``: parameters are initialised from the key; every epoch reshuffles the
training set with a key folded from the epoch number; ``lax.scan`` runs the minibatch steps;
Adam comes from :func:`optax.inject_hyperparams`, so its learning rate and weight decay are
arrays, set from ``hparams`` every epoch (the learning rate every step, times
``schedule_factor``); ``apply_max_norm`` follows each update; dropout draws a fresh key per
step; at the end of every epoch the train, validation and test loss and accuracy are recorded.

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

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from flaxmnist.core import mup
from flaxmnist.core.augment import Augment, augment_batch, step_key
from flaxmnist.core.data import DataSplits
from flaxmnist.core.losses import l2_penalty, make_evaluate, make_loss, make_update
from flaxmnist.core.losses import schedule_factor as schedule_factor  # public here too
from flaxmnist.core.models import MLP, mask_padding
from flaxmnist.core.optimizer import ADAM_B1 as ADAM_B1  # public here too
from flaxmnist.core.optimizer import ADAM_B2 as ADAM_B2
from flaxmnist.core.optimizer import ADAM_EPS as ADAM_EPS
from flaxmnist.core.optimizer import debiased, ema_step, make_optimizer, with_hyperparams
from flaxmnist.specs.config import COMPUTE_DTYPES, LOSSES, PARAMETERIZATIONS
from flaxmnist.specs.keys import Key, lanes


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
      use_dropout: ``False`` compiles a program that draws no dropout masks. Like every
        ``use_*`` flag: exact for lanes whose rate or coefficient is 0, which then train
        as with ``True`` up to float rounding (another program; tested), and cheaper.
      use_l2: ``False``: no L2 penalty in the loss (lanes with ``l2`` 0).
      use_weight_decay: ``False``: plain Adam, no decoupled weight decay (lanes with
        ``weight_decay`` 0).
      use_input_dropout: ``False``: no input masks (lanes with ``input_dropout`` 0); the
        cheapest to leave out: input dropout gives each lane its own input, so lanes of a
        seed no longer share one wide first-layer product.
      use_max_norm: ``False``: no max-norm constraint (lanes with ``max_norm`` 0).
      use_schedule: ``False``: a constant learning rate (lanes on the constant schedule
        without warmup).
      val_is_test: the validation split *is* the test set (``--validate-on test``): it is
        evaluated once per epoch and reported as both.
      compute_dtype: ``"float32"`` or ``"bfloat16"`` for activations and matrix products
        (``MLP.compute_dtype``); parameters, Adam and the loss stay float32.
      padded: ``hidden`` are padded widths, each lane's own are ``Hyperparams.widths``
        (``models.mask_padding``): one program for several widths.
      augment: the training minibatches' augmentation (``augment.Augment``; default off).
      use_ema: as the ``use_*`` flags above, for ``Hyperparams.ema_decay`` (with it, the
        average of the weights is what is evaluated and kept).
      use_label_smoothing: as the ``use_*`` flags above, for
        ``Hyperparams.label_smoothing``.
      parameterization: ``"standard"`` (the notebook's initialisation, one learning rate) or
        ``"mup"`` (``flaxmnist.core.mup``: μP's initial scales and per-layer learning rates).
      mup_base_width: the width at which ``"mup"`` equals ``"standard"``; read only under
        ``"mup"``.

    Example::

        >>> from flaxmnist import TrainSpec
        >>> spec = TrainSpec(hidden=(500, 150), epochs=2)
        >>> spec.num_layers
        3
    """

    hidden: tuple[int, ...] = (300,)
    epochs: int = 10
    batch_size: int = 200
    eval_batch_size: int = 1000
    num_classes: int = 10
    loss: str = "cross_entropy"
    use_dropout: bool = True
    use_l2: bool = True
    use_weight_decay: bool = True
    use_input_dropout: bool = True
    use_max_norm: bool = True
    use_schedule: bool = True
    val_is_test: bool = False
    compute_dtype: str = "float32"
    padded: bool = False
    augment: Augment = Augment()
    use_ema: bool = True
    use_label_smoothing: bool = True
    parameterization: str = "standard"
    mup_base_width: int = 300

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
        if self.parameterization not in PARAMETERIZATIONS:
            raise ValueError(
                f"parameterization must be one of {PARAMETERIZATIONS}, got "
                f"{self.parameterization!r}"
            )
        if self.mup_base_width < 1:
            raise ValueError(f"mup_base_width must be >= 1, got {self.mup_base_width}")
        if self.compute_dtype not in COMPUTE_DTYPES:
            raise ValueError(
                f"compute_dtype must be one of {COMPUTE_DTYPES}, got {self.compute_dtype!r}"
            )

    @property
    def num_layers(self) -> int:
        """Dense layers, output included (the length of ``Hyperparams.l2``)."""
        return len(self.hidden) + 1


def _lane_doc(name: str, key: Key) -> str:
    """A line of ``Hyperparams``' docstring: the field, its shape and where it comes from."""
    shape = {"hidden": "(num_hidden,)", "dense": "(num_layers,)"}.get(key.per_layer, "()")
    if key.kind == "widths":
        return (
            f"      {name}: int32 ``(num_hidden,)``, the widths this lane trains; below "
            "``TrainSpec.hidden`` only in a padded program."
        )
    if key.kind == "choice":
        return f"      {name}: int32 ``()``, the index of ``{key.name}`` in {key.choices}."
    if name != key.name:
        return f"      {name}: ``()``, the configuration's ``{key.name}`` as a lane array."
    return f"      {name}: ``{shape}``, {key.doc}."


#: ``Hyperparams``' fields, each with the key of ``flaxmnist/specs/keys.toml`` it holds.
LANES = lanes()

Hyperparams = NamedTuple("Hyperparams", [(name, jax.Array) for name in LANES])
Hyperparams.__module__ = __name__
Hyperparams.__doc__ = f"""Array hyperparameters of one run; stack them along a leading axis to vmap.

    One field per lane key of ``flaxmnist/specs/keys.toml`` (and per static key that is
    also a lane array), in the table's order, all float32 but where it says:

    Attributes:
{chr(10).join(_lane_doc(name, key) for name, key in LANES.items())}
    """


def _lane_array(spec: TrainSpec, key: Key, value: Any) -> jax.Array:
    """``value`` as the lane array of ``key`` in a program of ``spec``."""
    if key.kind == "choice":
        if value not in key.choices:
            raise ValueError(f"{key.name} must be one of {key.choices}, got {value!r}")
        return jnp.asarray(key.choices.index(value), jnp.int32)
    if key.kind == "widths":
        return jnp.asarray(value, jnp.int32).reshape(-1)
    if key.per_layer:
        layers = len(spec.hidden) if key.per_layer == "hidden" else spec.num_layers
        value = np.broadcast_to(np.asarray(value, np.float32), (layers,))
    return jnp.asarray(value, jnp.float32)


def make_hyperparams(spec: TrainSpec, learning_rate: float, **values: Any) -> Hyperparams:
    """Build ``Hyperparams`` for ``spec``: every field from ``values`` (by name) or, left
    out or ``None``, its default: a lane key's from ``keys.toml``, ``widths`` and
    ``schedule_epochs`` from ``spec`` (its ``hidden`` and ``epochs``). A number given to a
    per-layer field applies to every layer; ``lr_schedule`` is a name in
    ``specs.LR_SCHEDULES``.

    Raises:
      TypeError: a name that is not a field; ValueError: a schedule that does not exist.

    Example::

        >>> from flaxmnist import TrainSpec, make_hyperparams
        >>> hparams = make_hyperparams(TrainSpec(hidden=(500, 150)), 1e-3, l2=[0.002, 0, 0])
        >>> hparams.l2.tolist(), hparams.dropout.tolist()
        ([0.0020000000949949026, 0.0, 0.0], [0.0, 0.0])
    """
    unknown = sorted(set(values) - set(LANES))
    if unknown:
        raise TypeError(
            f"make_hyperparams: no field {unknown[0]!r} (the fields: {', '.join(LANES)})"
        )
    values = {**values, "learning_rate": learning_rate}
    arrays = {}
    for name, key in LANES.items():
        default = getattr(spec, key.spec_field) if name != key.name else key.default
        value = values.get(name)
        arrays[name] = _lane_array(spec, key, default if value is None else value)
    return Hyperparams(**arrays)


def stack_hyperparams(hparams: Sequence[Hyperparams]) -> Hyperparams:
    """Stack runs along a new leading (lane) axis, ready for :func:`jax.vmap`."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *hparams)


def _nonfinite(losses, params, evaluation) -> jax.Array:
    """Whether a training loss, a parameter, or the validation or test loss is NaN or infinite."""
    leaves = [losses, *jax.tree.leaves(params), evaluation["val_loss"], evaluation["test_loss"]]
    return ~jnp.all(jnp.stack([jnp.all(jnp.isfinite(leaf)) for leaf in leaves]))


class TrainState(NamedTuple):
    """What one lane carries from epoch to epoch: its parameters and Adam's state, and,
    with ``TrainSpec.use_ema``, :func:`optax.ema`'s state and the debiased average."""

    params: Any
    opt_state: Any
    ema_state: Any = None
    averaged: Any = None

    @property
    def kept(self) -> Any:
        """The parameters a run keeps and evaluates: the average where there is one."""
        return self.params if self.averaged is None else self.averaged


def _batches(num_train: int, batch_size: int, shuffle_key: jax.Array):
    """This epoch's minibatch indices and example weights, ``(num_batches, batch_size)``.

    The permutation is padded with repeated indices to whole batches; the padding weighs 0.
    """
    num_batches = math.ceil(num_train / batch_size)
    pad = num_batches * batch_size - num_train
    perm = jax.random.permutation(shuffle_key, num_train)
    indices = jnp.concatenate([perm, perm[:pad]]).reshape(num_batches, batch_size)
    weights = (jnp.arange(num_batches * batch_size) < num_train).astype(jnp.float32)
    return indices, weights.reshape(num_batches, batch_size)


def _make_evaluate_epoch(model: nn.Module, spec: TrainSpec) -> Callable:
    """``evaluate_epoch(params, hparams, data)``: validation and test loss and accuracy."""
    evaluate = make_evaluate(model, spec.eval_batch_size, spec.loss)
    num_hidden = len(spec.hidden)

    def evaluate_epoch(params, hparams: Hyperparams, data: DataSplits) -> dict[str, jax.Array]:
        val_loss, val_accuracy = evaluate(params, data.val_images, data.val_labels)
        if spec.val_is_test:
            test_loss, test_accuracy = val_loss, val_accuracy
        else:
            test_loss, test_accuracy = evaluate(params, data.test_images, data.test_labels)
        if spec.use_l2:
            # Like Keras, the reported losses include the L2 penalty; accuracies do not care.
            penalty = l2_penalty(params, hparams.l2, num_hidden)
            val_loss, test_loss = val_loss + penalty, test_loss + penalty
        return {
            "val_loss": val_loss,
            "val_accuracy": val_accuracy,
            "test_loss": test_loss,
            "test_accuracy": test_accuracy,
        }

    return evaluate_epoch


def _loss_and_grad(model: nn.Module, spec: TrainSpec) -> Callable:
    """The training loss of ``spec``'s program (its features compiled in or out) and its
    gradient: :func:`jax.value_and_grad` of ``losses.make_loss``."""
    loss_fn = make_loss(
        model,
        len(spec.hidden),
        spec.loss,
        spec.use_dropout,
        spec.use_l2,
        spec.use_input_dropout,
        spec.use_label_smoothing,
    )
    return jax.value_and_grad(loss_fn, has_aux=True)


def make_train_fns(spec: TrainSpec, model: nn.Module | None = None) -> tuple[Callable, Callable]:
    """Build the two pure pieces of training for ``spec``: ``(init, run_epoch)``.

    - ``init(hparams, key, data) -> TrainState``: parameters from the key's init draw.
    - ``run_epoch(state, hparams, key, data, epoch_index) -> (state, metrics)``: one pass
      over the training split (shuffled with a key folded from ``epoch_index``), then the
      evaluation; ``metrics`` maps each of ``specs.HISTORY_KEYS`` and ``nonfinite`` to a scalar.

    ``key`` is the lane's PRNG key (``jax.random.key(seed)``), split the same way in both;
    ``data`` a ``DataSplits`` of device arrays. ``make_train`` chains them into one function.
    ``run_epoch`` trains with the ``hparams`` it is given, so they may change between
    epochs. ``model`` replaces the ``MLP`` of ``spec`` by another linen module with the
    same call signature and parameter names (``hidden_0``, …, ``output``, each with a
    ``kernel``).

    Example::

        >>> import jax, flaxmnist
        >>> data = flaxmnist.make_splits(flaxmnist.load_mnist(), limit_train=1000)
        >>> spec = flaxmnist.TrainSpec(hidden=(32,))
        >>> init, run_epoch = flaxmnist.make_train_fns(spec)
        >>> hparams, key = flaxmnist.make_hyperparams(spec, 1e-3), jax.random.key(0)
        >>> state = init(hparams, key, data)
        >>> state, metrics = jax.jit(run_epoch)(state, hparams, key, data, 0)
        >>> sorted(metrics) == sorted([*flaxmnist.specs.config.HISTORY_KEYS, "nonfinite"])
        True
    """
    if model is None:
        model = MLP(spec.hidden, num_classes=spec.num_classes, compute_dtype=spec.compute_dtype)
    loss_and_grad = _loss_and_grad(model, spec)
    update = make_update(len(spec.hidden), spec.use_schedule, spec.use_max_norm)
    evaluate_epoch = _make_evaluate_epoch(model, spec)

    def run_epoch(state: TrainState, hparams: Hyperparams, key, data: DataSplits, epoch_index):
        num_train = data.train_images.shape[0]
        _, shuffle_key, dropout_key = jax.random.split(key, 3)
        optimizer = _optimizer(spec, hparams, state.params)
        # Train with the hyperparameters given, not those the state was created with.
        state = state._replace(opt_state=with_hyperparams(state.opt_state, hparams))
        indices, batch_weights = _batches(
            num_train, spec.batch_size, jax.random.fold_in(shuffle_key, epoch_index)
        )
        num_batches = len(indices)

        def step(state, batch):
            indices, weights, dropout_step_key, t = batch
            images = data.train_images[indices]
            labels = data.train_labels[indices]
            if spec.augment.active:
                augment_key = step_key(key, epoch_index, t - epoch_index * num_batches)
                images = augment_batch(images, augment_key, spec.augment)
            (loss, (_, correct)), grads = loss_and_grad(
                state.params, hparams, images, labels, weights, dropout_step_key
            )
            params, opt_state = update(optimizer, state, grads, hparams, t, num_batches)
            new_state = state._replace(params=params, opt_state=opt_state)
            if spec.use_ema:  # debiased once an epoch, below
                new_state = new_state._replace(
                    ema_state=ema_step(new_state.ema_state, params, hparams.ema_decay)
                )
            return new_state, (loss, correct)

        step_keys = jax.random.split(jax.random.fold_in(dropout_key, epoch_index), num_batches)
        steps = epoch_index * num_batches + jnp.arange(num_batches)  # global step numbers
        xs = (indices, batch_weights, step_keys, steps)
        state, (losses, corrects) = jax.lax.scan(step, state, xs)
        if spec.use_ema:
            state = state._replace(averaged=debiased(state.ema_state, hparams.ema_decay))
        evaluation = evaluate_epoch(state.kept, hparams, data)
        metrics = {
            "train_loss": jnp.sum(losses * jnp.sum(batch_weights, axis=1)) / num_train,
            "train_accuracy": jnp.sum(corrects) / num_train,
            **evaluation,
        }
        metrics["nonfinite"] = _nonfinite(losses, state.params, evaluation)
        return state, metrics

    return _make_init(spec, model), run_epoch


def _optimizer(spec: TrainSpec, hparams: Hyperparams, params: Any):
    """The lane's Adam: under ``"mup"`` with μP's step per layer (``mup``)."""
    multipliers = None
    if spec.parameterization == "mup":
        multipliers = mup.adam_step_multipliers(params, hparams.widths, spec.mup_base_width)
    return make_optimizer(hparams, spec.use_weight_decay, multipliers)


def _make_init(spec: TrainSpec, model: nn.Module) -> Callable:
    def init(hparams: Hyperparams, key: jax.Array, data: DataSplits) -> TrainState:
        num_train = data.train_images.shape[0]
        if spec.batch_size > num_train:
            raise ValueError(
                f"batch_size {spec.batch_size} is larger than the training set ({num_train})"
            )
        params = model.init(jax.random.split(key, 3)[0], data.train_images[:1])
        if spec.padded:
            params = {"params": mask_padding(params["params"], hparams.widths, spec.hidden)}
        if spec.parameterization == "mup":
            params = mup.rescale_init(params, hparams.widths, spec.mup_base_width)
        opt_state = _optimizer(spec, hparams, params).init(params)
        if not spec.use_ema:
            return TrainState(params, opt_state)
        return TrainState(params, opt_state, optax.ema(hparams.ema_decay).init(params), params)

    return init


def make_train(
    spec: TrainSpec,
) -> Callable[[Hyperparams, jax.Array, DataSplits], tuple[dict, dict]]:
    """Build the pure training function for ``spec``.

    Returns:
      ``train(hparams, key, data) -> (params, history)``: pure and jit-able. ``key`` is a
      PRNG key (``jax.random.key(seed)``); ``data`` a ``DataSplits`` of device arrays.
      ``history`` maps each of ``specs.HISTORY_KEYS`` to an array of shape ``(epochs,)``, plus
      ``nonfinite``: whether, in that epoch, a training loss, a parameter or the validation
      or test loss became NaN or infinite.

    Example::

        >>> import jax, flaxmnist
        >>> data = flaxmnist.make_splits(flaxmnist.load_mnist(), limit_train=1000)
        >>> spec = flaxmnist.TrainSpec(hidden=(32,), epochs=2)
        >>> train = jax.jit(flaxmnist.make_train(spec))
        >>> params, history = train(flaxmnist.make_hyperparams(spec, 1e-3), jax.random.key(0), data)
        >>> history["val_accuracy"].shape
        (2,)
    """
    init, run_epoch = make_train_fns(spec)

    def train(hparams: Hyperparams, key: jax.Array, data: DataSplits):
        def epoch(state, epoch_index):
            return run_epoch(state, hparams, key, data, epoch_index)

        state, history = jax.lax.scan(epoch, init(hparams, key, data), jnp.arange(spec.epochs))
        return state.kept, history

    return train
