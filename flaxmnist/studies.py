"""Finding and loading studies: packaged names, spec files, and composites of them.

A name (``lr``) is a study shipped with flaxmnist; anything with a ``/`` or a ``.toml``
suffix is a spec file (``./lr.toml``), so a local file never shadows a packaged study. A
composite spec lists studies, by name or by path relative to itself, and runs them one after
another::

    description = "the whole notebook"
    studies = ["lr", "hidden", "l2", "dropout", "three-layer"]

A spec that names a strategy is read with what that strategy says of itself
(``flaxmnist.search.registry``), which is why loading studies sits above the strategies.
"""

from __future__ import annotations

import os
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from flaxmnist.errors import SpecError
from flaxmnist.search.registry import STRATEGIES
from flaxmnist.specs.config import Study, parse_spec
from flaxmnist.specs.space import is_search_spec, parse_search_spec


def parse_study(document: dict[str, Any], name: str, source: str) -> Study:
    """A parsed spec (one study, not a composite) as a ``Study``: a grid
    (``specs.parse_spec``) or, where it names a strategy or a space, a search
    (``specs.space.parse_search_spec``, with every registered strategy).

    Raises:
      SpecError: naming ``source``, the offending key and its value.
    """
    if is_search_spec(document):
        return parse_search_spec(document, name, source, STRATEGIES)
    return parse_spec(document, name=name, source=source)


def builtin_sweeps_dir() -> Path:
    """Where the named studies' TOML files live (installed package or source tree)."""
    # pyproject.toml maps the top-level sweeps/ folder to the package flaxmnist.sweeps; run
    # from a source tree without installing, that package does not exist.
    try:
        return Path(str(resources.files("flaxmnist.sweeps")))
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / "sweeps"


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
        return [parse_study(document, name, str(path))]
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
