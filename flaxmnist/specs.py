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

A composite spec lists other studies by name instead, and runs them one after another::

    studies = ["lr", "hidden"]

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
- ``epochs``, ``batch_size``: integers >= 1.

This module knows nothing about how configurations run: it turns files into ``Config`` values.
"""

from __future__ import annotations

import itertools
import os
import tomllib
from dataclasses import asdict, dataclass, fields
from importlib import resources
from pathlib import Path
from typing import Any

from flaxmnist.errors import SpecError

#: The choices of the string-valued settings, defined here once.
DROPOUT_SEMANTICS = ("flaxmnist", "keras1")
LOSSES = ("cross_entropy", "keras1")
COMPUTE_DTYPES = ("float32", "bfloat16")
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


def _check_value(source: str, table: str, key: str, value: Any) -> None:
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
    elif key == "weight_decay":
        if not _is_number(value):
            raise bad("expected a number")
        if value < 0:
            raise bad("must be >= 0")
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
    hidden = tuple(settings["hidden"])
    return Config(
        hidden=hidden,
        dropout=_per_layer(source, "dropout", settings["dropout"], len(hidden)),
        learning_rate=float(settings["learning_rate"]),
        l2=_per_layer(source, "l2", settings["l2"], len(hidden) + 1),
        weight_decay=float(settings["weight_decay"]),
        epochs=settings["epochs"],
        batch_size=settings["batch_size"],
        dropout_semantics=settings["dropout_semantics"],
        loss=settings["loss"],
    )


def _table(source: str, name: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError(f"{source}: {name} must be a table")
    return value


def parse_spec(document: dict[str, Any], name: str, source: str) -> Study:
    """Validate a parsed TOML document and expand it into a ``Study``.

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
        _check_value(source, "base", key, value)
    for key, values in grid.items():
        if key not in DEFAULTS:
            raise SpecError(f"{source}: unknown key grid.{key} (known: {', '.join(DEFAULTS)})")
        if not isinstance(values, list) or not values:
            raise SpecError(f"{source}: grid.{key} = {values!r}: expected a non-empty list")
        for value in values:
            _check_value(source, "grid", key, value)
    for number, entry in enumerate(explicit, 1):
        for key, value in _table(source, f"configs[{number}]", entry).items():
            _check_value(source, f"configs[{number}]", key, value)
    if not grid and not explicit:
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


def builtin_sweeps_dir() -> Path:
    """Where the named studies' TOML files live (installed package or source tree)."""
    # pyproject.toml maps the top-level sweeps/ folder to the package flaxmnist.sweeps; run
    # from a source tree without installing, that package does not exist.
    try:
        return Path(str(resources.files("flaxmnist.sweeps")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parent.parent / "sweeps"


def builtin_studies() -> list[str]:
    """Names of the studies shipped with flaxmnist, usable as ``flaxmnist.sweep NAME``."""
    return sorted(p.stem for p in builtin_sweeps_dir().glob("*.toml"))


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text())
    except OSError as err:
        raise SpecError(f"{path}: cannot read ({err.strerror})") from None
    except tomllib.TOMLDecodeError as err:
        raise SpecError(f"{path}: invalid TOML ({err})") from None


def _locate(name_or_path: str | Path, relative_to: Path | None = None) -> tuple[str, Path]:
    """``(study name, file)``: a name resolves to a packaged study, a path to a file.

    A path is anything with a directory separator or a ``.toml`` suffix (``./lr.toml``), so a
    local file named like a packaged study never shadows it. A relative path inside a
    composite spec is relative to that spec's folder.
    """
    text = str(name_or_path)
    if text.endswith(".toml") or "/" in text or os.sep in text:
        path = Path(text)
        if relative_to is not None and not path.is_absolute():
            path = relative_to / path
        return path.stem, path
    path = builtin_sweeps_dir() / f"{text}.toml"
    if not path.is_file():
        known = ", ".join(builtin_studies())
        raise SpecError(
            f"unknown study {text!r} (known: {known}; a spec file needs a path with a '/' or "
            "a .toml suffix)"
        )
    return text, path


def load_studies(name_or_path: str | Path) -> list[Study]:
    """Load a study, or the studies of a composite spec (``studies = [...]``), in order.

    A composite lists study names or spec paths; a composite may list composites. Its
    studies must have distinct names (each is a table of its own in the results).

    Raises:
      SpecError: unknown name, unreadable file, bad TOML, an invalid spec, a composite
        that includes itself (the message shows the cycle) or lists one name twice.
    """
    return _load_studies(name_or_path, chain=())


def _load_studies(
    name_or_path: str | Path, chain: tuple[Path, ...], relative_to: Path | None = None
) -> list[Study]:
    name, path = _locate(name_or_path, relative_to)
    resolved = path.resolve()
    if resolved in chain:
        cycle = " -> ".join(str(p) for p in (*chain[chain.index(resolved) :], resolved))
        raise SpecError(f"{chain[0]}: composite specs include each other: {cycle}")
    document = _read_toml(path)
    if "studies" not in document:
        return [parse_spec(document, name=name, source=str(path))]
    entries = document["studies"]
    extra = set(document) - {"studies", "description"}
    if extra:
        raise SpecError(
            f"{path}: a composite spec has only studies and description, not {sorted(extra)[0]!r}"
        )
    if not isinstance(entries, list) or not entries or not all(isinstance(n, str) for n in entries):
        raise SpecError(f"{path}: studies = {entries!r}: expected a non-empty list of names")
    studies = []
    for entry in entries:
        studies += _load_studies(entry, (*chain, resolved), relative_to=path.parent)
    names = [study.name for study in studies]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise SpecError(
            f"{path}: studies = {entries!r}: two studies are named {twice[0]!r} (results are "
            "kept per study name)"
        )
    return studies


def load_study(name_or_path: str | Path) -> Study:
    """Load a single study by name (``"lr"``) or from a TOML file path.

    Example::

        >>> import flaxmnist
        >>> [config.learning_rate for config in flaxmnist.load_study("lr").configs][:4]
        [1.0, 0.1, 0.01, 0.001]

    Raises:
      SpecError: unknown name, unreadable file, bad TOML, an invalid or a composite spec.
    """
    studies = load_studies(name_or_path)
    if len(studies) != 1:
        raise SpecError(f"{name_or_path}: is a composite of {len(studies)} studies")
    return studies[0]
