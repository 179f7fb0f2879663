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

Every key, its default, its range and how training takes it (a lane array or static) is
one entry of ``flaxmnist/specs/keys.toml`` (``flaxmnist.specs.keys``); ``Config``'s fields
and the checks here are read from it, and so is the docs' list of keys ("Writing specs").

This module knows nothing about how configurations run: it turns parsed TOML into ``Config``
values. ``flaxmnist.studies`` finds the files (named studies, paths, composites).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, make_dataclass
from typing import Any

from flaxmnist.errors import SpecError
from flaxmnist.specs.keys import (  # noqa: F401  (the choices, public here too)
    APPLY,
    CONFIG,
    DROPOUT_SEMANTICS,
    LOSSES,
    LR_SCHEDULES,
    PARAMETERIZATIONS,
    Key,
)

COMPUTE_DTYPES = ("float32", "bfloat16")
#: How float32 matrix products are computed on GPUs and TPUs (a CPU computes float32 in
#: all): full float32 (the default: the CPU's numbers), TensorFloat-32 or bfloat16 passes
#: (faster, fewer mantissa bits), or whatever JAX picks for the backend.
MATMUL_PRECISIONS = ("float32", "tensorfloat32", "bfloat16", "backend")
DEFAULT_PRECISION = "float32"
#: The per-epoch metrics of a run, in the order records hold them.
HISTORY_KEYS = (
    "train_loss",
    "train_accuracy",
    "val_loss",
    "val_accuracy",
    "test_loss",
    "test_accuracy",
)


def _to_dict(self) -> dict[str, Any]:
    """The configuration as JSON-ready values (tuples become lists)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _applied(self, name: str) -> Any:
    """The value of key ``name`` as training applies it (``keys.Key.apply``)."""
    key, value = CONFIG[name], getattr(self, name)
    return APPLY[key.apply](value, self) if key.apply else value


def _applied_dropout(self) -> tuple[float, ...]:
    """The dropout rates training applies: under ``"keras1"``, 1.0 means no dropout."""
    return self.applied("dropout")


def _layers(key: Key, hidden: Sequence[int]) -> int:
    """How many values a per-layer key has for a network of ``hidden`` widths."""
    return len(hidden) + (key.per_layer == "dense")


def _config_field(key: Key) -> tuple[str, Any, Any]:
    """A ``Config`` field: the key's name, type and default (per-layer keys as tuples for
    the default widths, lists as tuples)."""
    types = {"int": int, "float": float, "choice": str, "widths": tuple[int, ...]}
    default = key.default
    if key.per_layer:
        default = (float(default),) * _layers(key, CONFIG["hidden"].default)
        return key.name, tuple[float, ...], field(default=default)
    if isinstance(default, list):
        default = tuple(default)
    return key.name, types[key.kind], field(default=default)


def _config_doc() -> str:
    lines = [f"      {key.name}: {key.doc}." for key in CONFIG.values()]
    return CONFIG_DOC.format(attributes="\n".join(lines))


CONFIG_DOC = """One fully resolved configuration of a study (plain Python values).

    Its fields are the spec keys and its defaults the specs' defaults, in the order of
    ``flaxmnist/specs/keys.toml``, the table it is made from (``flaxmnist.specs.keys``).

    Attributes:
{attributes}

    Example::

        >>> from flaxmnist import Config
        >>> Config(hidden=(500, 150), dropout=(0.2, 0.1)).to_dict()["dropout"]
        [0.2, 0.1]
        >>> Config(dropout=(1.0,), dropout_semantics="keras1").applied_dropout()
        (0.0,)
    """

Config = make_dataclass(
    "Config",
    [_config_field(key) for key in CONFIG.values()],
    frozen=True,
    namespace={
        "to_dict": _to_dict,
        "applied": _applied,
        "applied_dropout": _applied_dropout,
        "__doc__": _config_doc(),
        "__module__": __name__,
    },
)


@dataclass(frozen=True)
class Study:
    """A named list of configurations, the keys that vary across them, and its file.

    ``strategy`` says how the configurations are searched (a name of
    ``flaxmnist.search.registry``); ``search`` holds a search's settings
    (``flaxmnist.specs.space``), ``None`` for a plain grid spec.

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
CONFIG_KEYS: tuple[str, ...] = tuple(CONFIG)
#: Keys with one value per layer; a spec may give one number for every layer.
PER_LAYER_KEYS = tuple(key.name for key in CONFIG.values() if key.per_layer)
#: Every key's default as a spec writes it (per-layer keys as one number).
DEFAULTS: dict[str, Any] = {key.name: key.default for key in CONFIG.values()}


def config_from_dict(values: dict[str, Any]) -> Config:
    """A ``Config`` from its ``to_dict`` form (other keys, e.g. data settings, ignored)."""
    return Config(
        **{k: tuple(v) if isinstance(v, list) else v for k, v in values.items() if k in CONFIG}
    )


def check_value(source: str, table: str, key: str, value: Any, keys=CONFIG) -> None:
    """Raise ``SpecError`` if ``value`` is not acceptable for ``key`` (found in ``table``;
    top-level keys have none), looked up in ``keys`` (a configuration's, by default)."""
    where = f"{table}.{key}" if table else key
    if key not in keys:
        raise SpecError(f"{source}: unknown key {where} (known: {', '.join(keys)})")
    problem = keys[key].check(value)
    if problem:
        raise SpecError(f"{source}: {where} = {value!r}: {problem}")


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
    values = {name: settings[name] for name in CONFIG_KEYS}
    values["hidden"] = tuple(values["hidden"])
    for key in CONFIG.values():
        if key.per_layer:
            count = _layers(key, values["hidden"])
            values[key.name] = _per_layer(source, key.name, values[key.name], count)
        elif key.kind == "float":
            values[key.name] = float(values[key.name])
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
