"""Sphinx configuration: MyST Markdown pages, the API reference from the docstrings
(autodoc, napoleon for their Google style) and the command-line reference from the argparse
parsers themselves (sphinx-argparse), so neither can drift from the code."""

import sys
from pathlib import Path

# The source tree, whether or not flaxmnist is installed (nox -s docs installs it too).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import flaxmnist  # noqa: E402
from flaxmnist.specs import keys  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from inventories import write_inventories  # noqa: E402

# The list of every spec key, from the table the code reads (flaxmnist/specs/keys.toml),
# written at every build so that the page cannot drift from it.
GENERATED = Path(__file__).resolve().parent / "_generated"
GENERATED.mkdir(exist_ok=True)
(GENERATED / "keys.md").write_text(keys.markdown() + "\n")

project = "flaxmnist"
author = "the flaxmnist authors"
copyright = "2026, the flaxmnist authors"
release = version = flaxmnist.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "sphinxarg.ext",
    "sphinx_copybutton",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "_generated"]  # _generated: included by pages, not pages
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options: dict = {}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
nitpicky = False
# Links to jax, numpy, optax and Python from inventories written here (inventories.py): the
# build downloads nothing.
intersphinx_mapping = write_inventories(GENERATED / "inventories")

html_theme = "sphinx_book_theme"
html_title = "flaxmnist"
html_theme_options = {
    "repository_url": "https://github.com/flaxmnist/flaxmnist",
    "use_repository_button": False,
    "show_toc_level": 2,
}
