"""Every key a spec may hold, once: ``keys.toml``, the table the rest of flaxmnist reads.

A ``Key`` (a row of the table) says what a value may be (its kind, its bounds or choices,
and the one line a spec that breaks them is told), whether it has one value per layer, how
training takes it, its default, and its documentation line. How training takes a
configuration key (``role``) is the split that lets flaxmnist train many configurations as
one program:

- ``"lane"``: an array of ``flaxmnist.core.train.Hyperparams``, one value per lane, vmapped:
  configurations that differ only in lane keys share one compiled program and one call. A
  lane key with a ``feature`` is compiled out (``TrainSpec.<feature>`` is ``False``) where
  no configuration of a program uses it, that is where every value is the default.
- ``"static"``: fixes the program (``TrainSpec.<spec_field>``): configurations that differ
  in it are different programs (groups). A static key may also be a lane array under
  another name (``lane``): each lane's own widths in a padded program, the epochs a
  schedule spans.
- ``"applies"``: read on the host when a configuration's lanes are filled in (how
  ``dropout`` rates are applied).
- ``"search"``: a search's settings (``section`` says where they are written).

From this table come ``Config``'s fields and defaults (``flaxmnist.specs.config``), the
validation of every value (``check_value`` looks the key up), the split of a configuration
into ``TrainSpec`` and ``Hyperparams`` (``flaxmnist.run.plan``), ``Hyperparams``' fields,
the keys a prior draws integers for or may not take, the keys population-based training
may change without another program, and the docs' list of every key (``markdown``, written
when the documentation is built).

Adding a lane key is one entry in ``keys.toml``, the code in ``flaxmnist.core`` that uses
``hparams.<name>`` and, with a ``feature``, that ``TrainSpec`` flag; and its tests.
"""

from __future__ import annotations

import json
import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any

ROLES = ("lane", "static", "applies", "search")
#: Where a key is written: a configuration's key goes in ``[base]``, ``[grid]``,
#: ``[[configs]]`` and ``[search]``; the others at the top of the spec or in their table.
SECTIONS = ("config", "spec", "halving", "pbt")
KINDS = ("int", "float", "choice", "str", "widths", "list", "table")


@dataclass(frozen=True)
class Key:
    """One key of a spec (see the module).

    Attributes:
      name: the key as a spec writes it.
      kind: ``"int"``, ``"float"`` (an int is accepted), ``"choice"`` (one of
        ``choices``), ``"str"`` (a name, checked where it is looked up), ``"widths"`` (a list
        of integers), ``"list"`` or ``"table"`` (checked where they are parsed).
      doc: one line for the docs.
      default: the value a spec that leaves the key out gets (``None``: required where used).
      role: how training takes it (``ROLES``; see the module).
      bounds: the allowed numbers: ``"> 0"``, ``">= 0"``, ``"[0, 1)"``, ``"(0, 1]"``…
        (each element of ``"widths"``).
      choices: the values of a ``"choice"``.
      per_layer: ``"hidden"`` (one value per hidden layer) or ``"dense"`` (per dense layer,
        output included); a spec may give one number for every layer.
      error: what a bad value is told, after ``table.key = value:``.
      feature: a lane key's ``TrainSpec`` flag: ``False`` compiles its use out.
      turns_on: whether a value other than the default turns ``feature`` on (a factor of a
        schedule that is off does not).
      spec_field: a static key's ``TrainSpec`` field (``augment.shift``: a field of the
        ``augment`` field).
      lane: the ``Hyperparams`` field that holds it per lane (a lane key's own name).
      apply: a function of ``APPLY``, ``f(value, config)``: the value training applies, where
        another key changes it.
      unsearchable: why a prior may not take this key (empty: it may).
      section: where the key is written (``SECTIONS``).
    """

    name: str
    kind: str
    doc: str
    default: Any = None
    role: str = "static"
    bounds: str = ""
    choices: tuple = ()
    per_layer: str = ""
    error: str = ""
    feature: str = ""
    turns_on: bool = True
    spec_field: str = ""
    lane: str = ""
    apply: str = ""
    unsearchable: str = ""
    section: str = "config"

    def check(self, value: Any) -> str | None:
        """What is wrong with ``value`` for this key, in one line (``None``: nothing)."""
        ok = _CHECKS[self.kind](self, value)
        return None if ok else self.error or _default_error(self)

    def in_use(self, value: Any) -> bool:
        """Whether a configuration's (applied) ``value`` needs ``feature`` compiled in."""
        values = value if isinstance(value, tuple | list) else (value,)
        return self.turns_on and any(v != self.default for v in values)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_BOUND = re.compile(r"^([\[(])(\S+), (\S+)([\])])$")


def within(bounds: str, x: float) -> bool:
    """Whether ``x`` lies within ``bounds`` (``"> 0"``, ``">= 1"``, ``"[0, 1)"``…; empty: any
    finite number).

    Example::

        >>> within("[0, 1)", 0.0), within("[0, 1)", 1), within("> 0", 0), within(">= 0", 0)
        (True, False, False, True)
    """
    if not math.isfinite(x):
        return False
    if not bounds:
        return True
    if bounds.startswith(">"):
        op, low = bounds.split()
        return x > float(low) if op == ">" else x >= float(low)
    opening, low, high, closing = _BOUND.match(bounds).groups()
    above = x >= float(low) if opening == "[" else x > float(low)
    below = x <= float(high) if closing == "]" else x < float(high)
    return above and below


def _check_number(key: Key, value: Any) -> bool:
    values = value if key.per_layer and isinstance(value, list) else [value]
    return bool(values) and all(_is_number(v) and within(key.bounds, v) for v in values)


def _check_int(key: Key, value: Any) -> bool:
    return _is_int(value) and within(key.bounds, value)


_CHECKS: dict[str, Callable[[Key, Any], bool]] = {
    "int": _check_int,
    "float": _check_number,
    "choice": lambda key, value: isinstance(value, str) and value in key.choices,
    "str": lambda key, value: isinstance(value, str),
    "widths": lambda key, value: isinstance(value, list) and all(_check_int(key, w) for w in value),
    "list": lambda key, value: isinstance(value, list),
    "table": lambda key, value: isinstance(value, dict),
}


def _default_error(key: Key) -> str:
    if key.kind == "choice":
        return f"expected one of {', '.join(map(repr, key.choices))}"
    what = {
        "int": "an integer",
        "float": "a number",
        "str": "a string",
        "widths": "a list of integers",
        "list": "a list",
        "table": "a table",
    }
    bounds = f" {key.bounds}" if key.bounds.startswith(">") else f" in {key.bounds}"
    return f"expected {what[key.kind]}{bounds if key.bounds else ''}"


def _keras1_dropout(rates: tuple[float, ...], config: Any) -> tuple[float, ...]:
    """Keras 1's ``Dropout(p)`` applied dropout only when 0 < p < 1: 1.0 trains without."""
    if config.dropout_semantics == "keras1":
        return tuple(rate if 0.0 < rate < 1.0 else 0.0 for rate in rates)
    return rates


#: The functions a key's ``apply`` names.
APPLY = {"keras1_dropout": _keras1_dropout}


def _load() -> tuple[Key, ...]:
    """The table in ``keys.toml``, checked as far as it can be without its readers."""
    document = tomllib.loads(resources.files(__package__).joinpath("keys.toml").read_text())
    table = []
    for where, entries in document.items():
        for name, fields in entries.items():
            if "choices" in fields:
                fields = {**fields, "choices": tuple(fields["choices"])}
            key = Key(name=name, section=where, **fields)
            assert key.kind in KINDS and key.role in ROLES and where in SECTIONS, key
            assert not key.apply or key.apply in APPLY, key
            table.append(key)
    return tuple(table)


#: Every key, in the order of ``keys.toml``.
KEYS: tuple[Key, ...] = _load()


def section(name: str) -> dict[str, Key]:
    """The keys written in ``name`` (``SECTIONS``), by name, in the table's order."""
    return {key.name: key for key in KEYS if key.section == name}


#: A configuration's keys, by name, in ``Config``'s order.
CONFIG: dict[str, Key] = section("config")
#: Learning-rate schedules, in the order ``Hyperparams.lr_schedule`` numbers them.
LR_SCHEDULES: tuple[str, ...] = CONFIG["lr_schedule"].choices
DROPOUT_SEMANTICS: tuple[str, ...] = CONFIG["dropout_semantics"].choices
LOSSES: tuple[str, ...] = CONFIG["loss"].choices
PARAMETERIZATIONS: tuple[str, ...] = CONFIG["parameterization"].choices


def lanes() -> dict[str, Key]:
    """``Hyperparams``' fields, in order, each with the key it comes from."""
    return {key.lane or key.name: key for key in CONFIG.values() if key.role == "lane" or key.lane}


def features() -> dict[str, tuple[Key, ...]]:
    """Each ``TrainSpec`` flag that compiles a feature out, with the lane keys it serves."""
    flags: dict[str, tuple[Key, ...]] = {}
    for key in CONFIG.values():
        if key.feature:
            flags[key.feature] = (*flags.get(key.feature, ()), key)
    return flags


def markdown() -> str:
    """Every key of the table as Markdown definition lists (MyST's ``deflist``), one per
    section: the docs' key list."""
    titles = {
        "config": "A configuration's keys: `[base]`, `[grid]` (lists), `[[configs]]`, `[search]`",
        "spec": "A search: at the top of the spec",
        "halving": "`[halving]`: successive halving (and rungs inside a learned search)",
        "pbt": "`[pbt]`: population-based training",
    }
    out = []
    for name in SECTIONS:
        out += [f"### {titles[name]}", ""]
        for key in section(name).values():
            out += [
                f"`{key.name}`",
                f": {key.doc}. Default {_shown(key.default)}; {_allowed(key)}; {_role(key)}.",
                "",
            ]
        out.append("")
    return "\n".join(out)


def _shown(value: Any) -> str:
    """A default as TOML writes it."""
    if value is None:
        return "(required)"
    return f"`{json.dumps(value)}`"


def _allowed(key: Key) -> str:
    if key.kind == "choice":
        return "one of " + ", ".join(f'`"{c}"`' for c in key.choices)
    kinds = {
        "int": "an integer",
        "float": "a number",
        "widths": "a list of integers",
        "str": "a name",
        "list": "a list",
        "table": "a table",
    }
    bounds = key.bounds if key.bounds.startswith(">") else f"in {key.bounds}"
    layers = {"hidden": ", one per hidden layer", "dense": ", one per dense layer"}
    layers = layers.get(key.per_layer, "")
    return kinds[key.kind] + (f" {bounds}" if key.bounds else "") + layers


def _role(key: Key) -> str:
    if key.role == "lane":
        return "**lane**" + (f" (compiled out unless used: `{key.feature}`)" if key.feature else "")
    if key.role == "static":
        return "**static**" + (f" (and the lane array `{key.lane}`)" if key.lane else "")
    return f"**{key.role}**"
