"""Sweep specs: a study as data, in TOML, validated before anything runs.

A spec has an optional ``description``, a ``[base]`` table of settings shared by every
configuration, and then a ``[grid]`` table, a ``[[configs]]`` list, or both:

- ``[grid]``: lists whose Cartesian product is taken, in the order the keys are written, the
  last key varying fastest (as nested loops in the notebook would).
- ``[[configs]]``: explicit configurations, each a table of settings over ``[base]``; they
  follow the grid's configurations, in file order. The ``l2`` study is three hand-picked
  models, not a product.

::

    description = "Part 2.1: learning rates"
    [base]
    hidden = [300]        # hidden layer widths
    epochs = 10
    [grid]
    learning_rate = [1, 0.1, 0.01]

Keys, in ``[base]``, ``[grid]`` (as lists of values) and ``[[configs]]`` alike:

- ``hidden``: list of hidden layer widths (``[300]``; ``[500, 150]`` for two layers).
- ``dropout``: dropout rate after each hidden layer (a number applies to all of them).
- ``dropout_semantics``: ``"flaxmnist"`` (default: a rate is applied as it is, 1.0 drops
  every unit) or ``"keras1"`` (Keras 1's ``Dropout`` applied dropout only when 0 < p < 1,
  so a rate of exactly 1.0 trains with no dropout, as the notebook's p = 1.0 model did).
- ``loss``: ``"cross_entropy"`` (default, the exact ``log_softmax``) or ``"keras1"`` (Keras
  1's cross-entropy, which clips the softmax probabilities to [1e-7, 1 - 1e-7]).
- ``learning_rate``: Adam's step size, > 0.
- ``l2``: Keras-style coupled L2 per dense layer, hidden layers then output (a number applies
  to every layer).
- ``weight_decay``: decoupled (AdamW) weight decay of the kernels.
- ``input_dropout``: dropout rate on the input pixels, in [0, 1).
- ``max_norm``: the largest L2 norm of each hidden unit's incoming weights (Srivastava et
  al. 2014), enforced after every step; 0 (default) means none.
- ``lr_schedule``: ``"constant"`` (default), ``"cosine"`` (to 0 at the last epoch) or
  ``"exponential"`` (times ``lr_decay`` per epoch, applied step by step).
- ``lr_decay``: the exponential schedule's factor per epoch, in (0, 1].
- ``warmup_epochs``: a linear warmup of the learning rate over this many epochs (0: none).
- ``epochs``, ``batch_size``: integers >= 1.
- ``augment_shift`` (whole pixels, in [0, 28)), ``augment_rotate`` (degrees),
  ``augment_scale`` (in [0, 1)), ``augment_elastic_alpha`` and ``augment_elastic_sigma``
  (> 0): random augmentation of the training minibatches (``flaxmnist.core.augment``); 0: none.
- ``ema_decay`` (in [0, 1), 0: none): a moving average of the parameters, evaluated and
  kept. ``label_smoothing`` (in [0, 1)): the uniform's weight in the training targets.

This module knows nothing about how configurations run: it turns parsed TOML into ``Config``
values. ``flaxmnist.specs.studies`` finds the files (named studies, paths, composites).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass, fields
from typing import Any

from flaxmnist.errors import SpecError

#: The choices of the string-valued settings, defined here once.
DROPOUT_SEMANTICS = ("flaxmnist", "keras1")
LOSSES = ("cross_entropy", "keras1")
COMPUTE_DTYPES = ("float32", "bfloat16")
#: How float32 matrix products are computed on GPUs and TPUs (a CPU computes float32 in
#: all): full float32 (the default: the CPU's numbers), TensorFloat-32 or bfloat16 passes
#: (faster, fewer mantissa bits), or whatever JAX picks for the backend.
MATMUL_PRECISIONS = ("float32", "tensorfloat32", "bfloat16", "backend")
DEFAULT_PRECISION = "float32"
#: How a study's configurations are searched (``specs.space``, ``search.strategies``).
STRATEGIES = ("grid", "random", "quasi-random", "halving", "pbt", "tpe", "gp", "cmaes", "nsga2")
#: The strategies whose configurations Optuna's samplers propose, round by round, from
#: what has trained (``flaxmnist.search.sampler``).
LEARNED = ("tpe", "gp", "cmaes", "nsga2")
#: Learning-rate schedules, in the order ``train.Hyperparams.lr_schedule`` numbers them.
LR_SCHEDULES = ("constant", "cosine", "exponential")
#: The per-epoch metrics of a run, in the order records hold them.
HISTORY_KEYS = (
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "test_loss",
    "test_accuracy",
)


@dataclass(frozen=True)
class Config:
    """One fully resolved configuration of a study (plain Python values).

    Its fields are the spec keys, and its defaults the specs' defaults.

    Example::

        >>> from flaxmnist import Config
        >>> Config(hidden=(500, 150), dropout=(0.2, 0.1)).to_dict()["dropout"]
        [0.2, 0.1]
        >>> Config(dropout=(1.0,), dropout_semantics="keras1").applied_dropout()
        (0.0,)
    """

    hidden: tuple[int, ...] = (300,)
    dropout: tuple[float, ...] = (0.0,)
    learning_rate: float = 0.001
    l2: tuple[float, ...] = (0.0, 0.0)
    weight_decay: float = 0.0
    epochs: int = 10
    batch_size: int = 200
    dropout_semantics: str = "flaxmnist"
    loss: str = "cross_entropy"
    input_dropout: float = 0.0
    max_norm: float = 0.0
    lr_schedule: str = "constant"
    lr_decay: float = 1.0
    warmup_epochs: float = 0.0
    augment_shift: int = 0
    augment_rotate: float = 0.0
    augment_scale: float = 0.0
    augment_elastic_alpha: float = 0.0
    augment_elastic_sigma: float = 4.0
    ema_decay: float = 0.0
    label_smoothing: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The configuration as JSON-ready values (tuples become lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def applied_dropout(self) -> tuple[float, ...]:
        """The dropout rates training applies: under ``"keras1"``, 1.0 means no dropout."""
        if self.dropout_semantics == "keras1":
            return tuple(rate if 0.0 < rate < 1.0 else 0.0 for rate in self.dropout)
        return self.dropout


@dataclass(frozen=True)
class Study:
    """A named list of configurations, the keys that vary across them, and its file.

    ``strategy`` says how the configurations are searched (``STRATEGIES``); for every
    strategy but ``"grid"``, ``search`` holds the sampler's settings (``flaxmnist.specs.space``).

    Example::

        >>> from flaxmnist import load_study
        >>> study = load_study("lr")
        >>> study.name, len(study.configs), study.varied
        ('lr', 24, ('learning_rate',))
    """

    name: str
    description: str
    configs: tuple[Config, ...]
    varied: tuple[str, ...]
    source: str = "<memory>"
    strategy: str = "grid"
    search: Any = None


#: The spec keys, in ``Config``'s order.
CONFIG_KEYS: tuple[str, ...] = tuple(field.name for field in fields(Config))
#: Keys with one value per layer; a spec may give one number for every layer.
PER_LAYER_KEYS = ("dropout", "l2")


def _spec_defaults() -> dict[str, Any]:
    """``Config``'s defaults as a spec writes them (per-layer keys as one number)."""
    defaults = Config().to_dict()
    for key in PER_LAYER_KEYS:
        (defaults[key],) = set(defaults[key])
    return defaults


DEFAULTS: dict[str, Any] = _spec_defaults()


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def check_value(source: str, table: str, key: str, value: Any) -> None:
    """Raise ``SpecError`` if ``value`` is not acceptable for ``key`` (found in ``table``)."""

    def bad(why: str) -> SpecError:
        return SpecError(f"{source}: {table}.{key} = {value!r}: {why}")

    if key == "hidden":
        if not isinstance(value, list) or not all(isinstance(w, int) for w in value):
            raise bad("expected a list of integer widths, e.g. [300]")
        if any(isinstance(w, bool) or w < 1 for w in value):
            raise bad("every width must be >= 1")
    elif key in ("epochs", "batch_size"):
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad("expected an integer")
        if value < 1:
            raise bad("must be >= 1")
    elif key == "learning_rate":
        if not _is_number(value):
            raise bad("expected a number")
        if not value > 0:
            raise bad("must be > 0")
    elif key == "augment_shift":
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 28:
            raise bad("expected a whole number of pixels in [0, 28)")
    elif key in ("augment_scale", "ema_decay", "label_smoothing"):
        if not _is_number(value) or not 0 <= value < 1:
            raise bad("expected a number in [0, 1)")
    elif key == "augment_elastic_sigma":
        if not _is_number(value) or not value > 0:
            raise bad("expected a number of pixels > 0")
    elif key in ("weight_decay", "max_norm", "warmup_epochs", "augment_rotate",
                 "augment_elastic_alpha"):  # fmt: skip
        if not _is_number(value):
            raise bad("expected a number")
        if value < 0:
            raise bad("must be >= 0")
    elif key == "input_dropout":
        if not _is_number(value) or not 0 <= value < 1:
            raise bad("expected a rate in [0, 1)")
    elif key == "lr_decay":
        if not _is_number(value) or not 0 < value <= 1:
            raise bad("expected a per-epoch factor in (0, 1]")
    elif key == "lr_schedule":
        if value not in LR_SCHEDULES:
            raise bad(f"expected one of {', '.join(map(repr, LR_SCHEDULES))}")
    elif key == "loss":
        if value not in LOSSES:
            raise bad(f"expected one of {', '.join(map(repr, LOSSES))}")
    elif key == "dropout_semantics":
        if value not in DROPOUT_SEMANTICS:
            raise bad(f"expected one of {', '.join(map(repr, DROPOUT_SEMANTICS))}")
    elif key in ("dropout", "l2"):
        values = value if isinstance(value, list) else [value]
        if not values or not all(_is_number(v) for v in values):
            raise bad("expected a number or a list of numbers")
        if key == "dropout" and not all(0 <= v <= 1 for v in values):
            raise bad("dropout rates must lie in [0, 1]")
        if key == "l2" and any(v < 0 for v in values):
            raise bad("must be >= 0")
    else:
        raise SpecError(f"{source}: unknown key {table}.{key} (known: {', '.join(DEFAULTS)})")


def _per_layer(source: str, key: str, value: Any, count: int) -> tuple[float, ...]:
    if isinstance(value, list):
        if len(value) != count:
            raise SpecError(
                f"{source}: {key} = {value!r}: expected {count} values (one per layer) or a number"
            )
        return tuple(float(v) for v in value)
    return (float(value),) * count


def _resolve(source: str, settings: dict[str, Any]) -> Config:
    """Every ``Config`` field from ``settings``: per-layer values broadcast, floats as floats."""
    values = {key: settings[key] for key in CONFIG_KEYS}
    hidden = values["hidden"] = tuple(values["hidden"])
    layers = {"dropout": len(hidden), "l2": len(hidden) + 1}
    for key in PER_LAYER_KEYS:
        values[key] = _per_layer(source, key, values[key], layers[key])
    for field in fields(Config):
        if field.type == "float":
            values[field.name] = float(values[field.name])
    return Config(**values)


def _table(source: str, name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError(f"{source}: {name} must be a table")
    return value


def parse_spec(
    document: dict[str, Any], name: str, source: str, allow_empty: bool = False
) -> Study:
    """Validate a parsed TOML document and expand it into a ``Study``.

    ``allow_empty``: no ``[grid]`` nor ``[[configs]]`` is allowed (a search space supplies
    the configurations; ``flaxmnist.specs.space``).

    Raises:
      SpecError: naming ``source``, the offending key and its value.
    """
    unknown = set(document) - {"description", "base", "grid", "configs"}
    if unknown:
        raise SpecError(f"{source}: unknown top-level key {sorted(unknown)[0]!r}")
    description = document.get("description", "")
    if not isinstance(description, str):
        raise SpecError(f"{source}: description = {description!r}: expected a string")
    base = _table(source, "[base]", document.get("base", {}))
    grid = _table(source, "[grid]", document.get("grid", {}))
    explicit = document.get("configs", [])
    if not isinstance(explicit, list):
        raise SpecError(f"{source}: configs must be a list of tables ([[configs]])")
    for key, value in base.items():
        check_value(source, "base", key, value)
    for key, values in grid.items():
        if key not in DEFAULTS:
            raise SpecError(f"{source}: unknown key grid.{key} (known: {', '.join(DEFAULTS)})")
        if not isinstance(values, list) or not values:
            raise SpecError(f"{source}: grid.{key} = {values!r}: expected a non-empty list")
        for value in values:
            check_value(source, "grid", key, value)
    for number, entry in enumerate(explicit, 1):
        for key, value in _table(source, f"configs[{number}]", entry).items():
            check_value(source, f"configs[{number}]", key, value)
    if not grid and not explicit and not allow_empty:
        raise SpecError(f"{source}: nothing to sweep: [grid] and [[configs]] are both empty")

    settings = {**DEFAULTS, **base}
    combinations = [dict(zip(grid, c, strict=True)) for c in itertools.product(*grid.values())]
    configs = tuple(
        _resolve(source, {**settings, **combination})
        for combination in (combinations if grid else []) + explicit
    )
    varied = list(grid)
    for entry in explicit:
        varied += [key for key in entry if key not in varied]
    return Study(
        name=name, description=description, configs=configs, varied=tuple(varied), source=source
    )
