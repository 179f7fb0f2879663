"""Intersphinx inventories of the outside names the API pages use, written at every build.

The site links ``jax.Array``, ``numpy.ndarray``, ``optax.ema`` and the rest to their own
documentation with Sphinx's intersphinx, which reads each project's ``objects.inv``. The
documentation builds offline (no download at build time, as everywhere in flaxmnist), so
instead of fetching those files it writes small ones here: per project, the names this
site refers to, each with the address of its entry in that project's pages. A name not
listed stays plain text, as before. ``conf.py`` calls ``write_inventories``.
"""

import zlib
from pathlib import Path

#: Per project: its documentation's base address, and ``name: (role, page#anchor)``. Each
#: address was looked up in the project's own documentation sources.
PROJECTS = {
    "python": (
        "https://docs.python.org/3/",
        {
            "pathlib.Path": ("class", "library/pathlib.html#pathlib.Path"),
            **{
                f"collections.abc.{name}": (
                    "class",
                    f"library/collections.abc.html#collections.abc.{name}",
                )
                for name in ("Callable", "Iterable", "Iterator", "Mapping", "Sequence")
            },
        },
    ),
    "numpy": (
        "https://numpy.org/doc/stable/",
        {"numpy.ndarray": ("class", "reference/generated/numpy.ndarray.html#numpy.ndarray")},
    ),
    "jax": (
        "https://docs.jax.dev/en/latest/",
        {
            "jax.Array": ("class", "_autosummary/jax.Array.html#jax.Array"),
            # What an annotation ``jax.Array`` evaluates to, as autodoc names it.
            "jax.jaxlib._jax.Array": ("class", "_autosummary/jax.Array.html#jax.Array"),
            "jax.sharding.Mesh": ("class", "jax.sharding.html#jax.sharding.Mesh"),
            "jax.distributed": ("module", "jax.distributed.html"),
            **{
                f"jax.{name}": ("function", f"_autosummary/jax.{name}.html#jax.{name}")
                for name in ("vmap", "jit", "device_put", "device_get", "value_and_grad")
            },
            "jax.distributed.initialize": (
                "function",
                "_autosummary/jax.distributed.initialize.html#jax.distributed.initialize",
            ),
        },
    ),
    "optax": (
        "https://optax.readthedocs.io/en/latest/",
        {
            "optax.ema": ("function", "api/transformations.html#optax.ema"),
            "optax.EmaState": ("class", "api/transformations.html#optax.EmaState"),
            "optax.GradientTransformation": (
                "class",
                "api/transformations.html#optax.GradientTransformation",
            ),
            "optax.inject_hyperparams": (
                "function",
                "api/optimizer_schedules.html#optax.schedules.inject_hyperparams",
            ),
        },
    ),
}


def inventory(project: str, names: dict[str, tuple[str, str]]) -> bytes:
    """An ``objects.inv`` (Sphinx's version 2 format) of ``names``."""
    header = (
        "# Sphinx inventory version 2\n"
        f"# Project: {project}\n"
        "# Version: \n"
        "# The remainder of this file is compressed using zlib.\n"
    )
    lines = "".join(f"{name} py:{role} 1 {uri} -\n" for name, (role, uri) in names.items())
    return header.encode() + zlib.compress(lines.encode())


def write_inventories(folder: Path) -> dict[str, tuple[str, str]]:
    """Write each project's inventory into ``folder``; the ``intersphinx_mapping``."""
    folder.mkdir(parents=True, exist_ok=True)
    mapping = {}
    for project, (base, names) in PROJECTS.items():
        path = folder / f"{project}.inv"
        path.write_bytes(inventory(project, names))
        mapping[project] = (base, str(path))
    return mapping
