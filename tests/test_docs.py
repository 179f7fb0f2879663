"""The documentation's examples run as written: the README's and the site's pages'
(``docs/*.md``) Python blocks, and their TOML specs are specs flaxmnist accepts.
(The docstrings' examples run in ``test_api``.)"""

import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def blocks(language):
    """``(page name, index, code)`` of every fenced block in ``language``."""
    return [
        (page.name, i, code)
        for page in PAGES
        for i, code in enumerate(re.findall(rf"```{language}\n(.*?)```", page.read_text(), re.S))
    ]


PYTHON = blocks("python")
TOML = [code for _, _, code in blocks("toml")]


def test_the_pages_have_examples():
    assert len(PYTHON) >= 2 and len(TOML) >= 3


@pytest.mark.heavy  # and run by nox -s docs
@pytest.mark.parametrize(("page", "index", "code"), PYTHON, ids=lambda x: str(x)[:20])
def test_python_example_runs(page, index, code, capsys):
    exec(compile(code, f"{page} python block {index}", "exec"), {})
    assert capsys.readouterr().out  # every example prints something


def test_the_learned_search_spec_is_a_spec_flaxmnist_runs():
    from flaxmnist.search.registry import STRATEGIES
    from flaxmnist.studies import parse_study

    (block,) = [b for b in TOML if 'strategy = "tpe"' in b]
    study = parse_study(tomllib.loads(block), "docs", "searching.md")
    STRATEGIES[study.strategy].check(study)  # as run_sweep does before anything runs
    assert (study.strategy, study.search.samples, study.search.halving) == ("tpe", 96, True)


def test_the_halving_spec_is_a_spec_flaxmnist_runs():
    from flaxmnist.studies import parse_study

    (block,) = [b for b in TOML if 'strategy = "halving"' in b]
    study = parse_study(tomllib.loads(block), "docs", "searching.md")
    assert (study.strategy, study.search.samples) == ("halving", 27)


def test_the_augmentation_keys_are_spec_keys_flaxmnist_accepts():
    from flaxmnist.specs.config import parse_spec

    (block,) = [b for b in TOML if "augment_shift" in b]
    document = {**tomllib.loads(block), "grid": {"learning_rate": [1e-3]}}
    (config,) = parse_spec(document, "docs", "specs.md").configs
    assert (config.augment_shift, config.ema_decay, config.label_smoothing) == (2, 0.999, 0.05)


def test_every_page_is_in_the_sites_table_of_contents():
    index = (ROOT / "docs" / "index.md").read_text()
    for page in sorted((ROOT / "docs").glob("*.md")):
        assert page.stem == "index" or f"\n{page.stem}\n" in index, page.name


def test_the_readme_is_a_front_page():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 200


def test_local_links_lead_somewhere():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", page.read_text()):
            if "://" not in target:
                assert (page.parent / target).exists(), f"{page.name}: {target}"


def test_the_pbt_spec_is_a_spec_flaxmnist_runs():
    from flaxmnist.studies import parse_study

    (block,) = [b for b in TOML if 'strategy = "pbt"' in b]
    study = parse_study(tomllib.loads(block), "docs", "searching.md")
    assert (study.strategy, study.search.samples) == ("pbt", 8)


def _tested_table() -> str:
    readme = (ROOT / "README.md").read_text()
    return readme.split("## Where it is tested", 1)[1].split("\n## ", 1)[0]


def test_the_readme_names_every_interpreter_of_the_matrix_and_every_lower_bound():
    """The README's "Where it is tested" says what ``noxfile.py`` runs: a session per
    interpreter of ``PYTHONS`` and ``lowest`` with each lower bound of ``pyproject.toml``."""
    import ast

    noxfile = ast.parse((ROOT / "noxfile.py").read_text())
    assignment = next(
        node
        for node in noxfile.body
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "PYTHONS"
    )
    pythons = ast.literal_eval(assignment.value)
    rows = {
        cells[0].strip("` "): cells
        for line in _tested_table().splitlines()
        if line.startswith("| `")
        for cells in [[cell.strip() for cell in line.strip("|").split("|")]]
    }
    for python in pythons:
        name = next(row for row in rows if row.startswith(f"tests-{python}"))
        assert rows[name][1] == python
    assert rows["lowest"][1] == pythons[0]
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name, bound = (part.strip() for part in requirement.split(">="))
        version = re.escape(bound) + r"(\.0)*\b"
        assert re.search(rf"\b{name} {version}", rows["lowest"][2]), requirement


#: Every Markdown page a reader follows links in: on GitHub, and (docs/) on the site.
LINKED_PAGES = sorted({*PAGES, *ROOT.glob("*.md")})


def github_slug(heading: str) -> str:
    """GitHub's anchor of a heading (github-slugger): its text lower-cased, what is neither
    a word character, a hyphen nor a space removed, each space a hyphen."""
    text = re.sub(r"`|\*\*|\[([^]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def site_slug(heading: str) -> str:
    """The site's anchor of a heading: MyST-Parser's own function where it is installed (the
    docs session), else ``github_slug``, which it mimics."""
    try:
        from myst_parser.mdit_to_docutils.base import default_slugify
    except ImportError:
        return github_slug(heading)
    text = re.sub(r"`|\*\*|\[([^]]*)\]\([^)]*\)", r"\1", heading).strip()
    return default_slugify(text)


def anchors(page: Path, slug) -> set[str]:
    """The anchors of ``page``'s headings (outside code blocks), numbered as both number
    a repeated one (``-1``, ``-2``)."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    seen: dict[str, int] = {}
    found = set()
    for heading in re.findall(r"^#{1,6} +(.+?) *#*$", text, re.M):
        anchor = slug(heading)
        found.add(anchor if anchor not in seen else f"{anchor}-{seen[anchor]}")
        seen[anchor] = seen.get(anchor, 0) + 1
    return found


@pytest.mark.parametrize("slug", [github_slug, site_slug], ids=["github", "site"])
def test_every_anchor_of_a_link_is_a_heading_there(slug):
    broken = []
    for page in LINKED_PAGES:
        text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
        for target, anchor in re.findall(r"\]\(([^)#\s]*)#([^)\s]+)\)", text):
            if "://" in target or (target and not target.endswith(".md")):
                continue
            linked = (page.parent / target).resolve() if target else page
            if slug is site_slug and ROOT / "docs" not in linked.parents:
                continue  # not on the site
            if anchor not in anchors(linked, slug):
                broken.append(f"{page.relative_to(ROOT)}: {target}#{anchor}")
    assert not broken, broken


def test_the_slugs_are_githubs():
    assert github_slug("Past 99 %: augmentation, ensembles") == "past-99--augmentation-ensembles"
    assert github_slug("`python -m flaxmnist.report`") == "python--m-flaxmnistreport"


def test_the_inventories_are_read_back_by_sphinx(tmp_path):
    """docs/inventories.py writes files Sphinx's own reader takes, every name at its page."""
    pytest.importorskip("sphinx", reason="the docs extra (nox -s docs) is not installed")
    import sys

    from sphinx.util.inventory import InventoryFile

    sys.path.insert(0, str(ROOT / "docs"))
    from inventories import PROJECTS, write_inventories

    mapping = write_inventories(tmp_path)
    for project, (base, names) in PROJECTS.items():
        with open(mapping[project][1], "rb") as handle:
            read = InventoryFile.load(handle, base, lambda base, uri: base + uri)
        found = {name: item for entries in read.values() for name, item in entries.items()}
        for name, (_, page) in names.items():
            item = found[name]
            location = item.uri if hasattr(item, "uri") else item[2]
            assert location == base + page


def test_the_built_api_pages_link_jax_numpy_and_optax():
    """After ``sphinx-build`` (the docs session builds first): the API page's types and the
    names its docstrings cite lead to their projects' documentation."""
    page = ROOT / "docs" / "_build" / "html" / "api.html"
    if not page.exists():
        pytest.skip("the site is not built here (nox -s docs builds it, then runs this)")
    html = page.read_text()
    for address in (
        "https://docs.jax.dev/en/latest/_autosummary/jax.Array.html#jax.Array",
        "https://numpy.org/doc/stable/reference/generated/numpy.ndarray.html#numpy.ndarray",
        "https://optax.readthedocs.io/en/latest/api/transformations.html#optax.ema",
    ):
        assert f'href="{address}"' in html, address
