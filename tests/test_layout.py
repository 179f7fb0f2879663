"""The house rules: data flows one way, report trains nothing, small modules, small functions."""

import ast
import io
import re
import textwrap
import tokenize
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "flaxmnist"

#: The packages, bottom to top: a module may import from its own package and from those
#: below (``errors`` and ``cli`` are shared by all; the top-level commands sit above all).
PACKAGE_RANK = {
    "errors": 0,
    "interrupts": 0,
    "cli": 0,
    "specs": 1,  # what a sweep trains, as data
    "core": 2,  # training's pure core
    "devices": 2,  # where the lanes run
    "run": 3,  # a study run, and its run directory
    "search": 4,  # the strategies: configurations proposed, not listed; no JAX
    "studies": 4.5,  # spec files -> studies, read with what their strategies say
    "report": 5,  # reads results, trains nothing
    "preflight": 6,
    "runner": 7,
    "sweep": 8,
    "evaluate": 8,
}
#: Within the packages, each module may import only modules of a lower rank (report's
#: modules import each other).
RANK = {
    "errors": 0,
    "interrupts": 0,
    "cli": 1,
    "specs.keys": 0,
    "specs.config": 1,
    "specs.objectives": 1,
    "specs.space": 2,
    "core.data": 1,
    "core.models": 1,
    "core.optimizer": 1,
    "core.augment": 1,
    "core.losses": 2,
    "core.mup": 2,
    "core.sources": 2,
    "core.train": 3,
    "devices.machine": 1,
    "devices.host": 3,
    "devices.cluster": 3,
    "devices.placement": 3,
    "devices.compile_cache": 3,
    "devices._watch_stderr": 0,
    "run.progress": 1,
    "run.plan": 4,
    "run.programs": 4,
    "run.grid": 5,
    "run.rundir": 4,
    "run.records": 4,
    "run.attempt": 5,
    "run.checkpoint": 5,
    "run.ensemble": 5,
    "run.evaluation": 6,
    "run.steps": 2,
    "run.keeper": 6,
    "run.search_state": 6,
    "run.stepped": 7,
    "run.loop": 8,
    "search.trials": 2,
    "search.sampler": 3,
    "search.optuna_db": 5,
    "search.base": 5,
    "search.halving": 6,
    "search.listed": 6,
    "search.pbt": 7,
    "search.learned": 7,
    "search.hyperband": 7.5,
    "search.warm": 6,
    "search.registry": 8,
    "studies": 9,
    "report": 10,
    "preflight": 11,
    "runner": 12,
    "sweep": 13,
    "evaluate": 13,
}
#: Modules that must not import JAX: what reads results never trains.
NO_JAX = (
    "errors",
    "interrupts",
    "cli",
    "specs",
    "devices.machine",
    "devices._watch_stderr",
    "run.progress",
    "run.rundir",
    "run.records",
    "run.attempt",
    "run.ensemble",
    "run.steps",
    "report",
    "search",
    "studies",
)
#: The code lines a module may have (``code_lines``: docstrings, comments and blank lines do
#: not count; code counts as the formatter lays it out). The largest modules hold about 270
#: (report/search.py, sweep.py), the median about 100: 300 leaves the largest room for a
#: few functions more, and a module that takes in another concern of a typical size crosses
#: it. It flags a module to split by concern; it is no reason to pack code or cut its docs.
MAX_CODE_LINES = 300
#: The lines a function's body may span, docstring aside.
MAX_FUNCTION_LINES = 60


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
        if name != "__init__":
            yield name.removesuffix(".__init__").removesuffix(".__main__"), path


def imports(tree):
    """The flaxmnist modules (dotted, below ``flaxmnist.``) and other top-level packages a
    module imports; ``from flaxmnist.devices import cluster`` imports ``devices.cluster``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("flaxmnist"):
            inside = node.module.removeprefix("flaxmnist").removeprefix(".")
            for alias in node.names:
                dotted = f"{inside}.{alias.name}".lstrip(".")
                yield f"flaxmnist.{dotted if dotted in RANK else inside}".rstrip(".")
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


def ranked(name):
    """The key of ``RANK`` a module falls under: report's modules are ``report``."""
    return "report" if name.split(".")[0] == "report" else name


def test_every_module_is_ranked():
    packages = {"core", "specs", "devices", "run", "search"}
    assert {ranked(name) for name, _ in modules()} - packages == set(RANK)


@pytest.mark.parametrize(("name", "path"), list(modules()), ids=lambda x: str(x))
def test_data_flows_one_way(name, path):
    if name in PACKAGE_RANK.keys() - RANK.keys():
        return  # a package's __init__: its docstring only
    me = ranked(name)
    for module in imports(ast.parse(path.read_text())):
        if any(me == k or me.startswith(f"{k}.") for k in NO_JAX):
            assert module.split(".")[0] not in ("jax", "flax", "optax"), (name, module)
        if module.startswith("flaxmnist.") and module != "flaxmnist.":
            imported = ranked(module.removeprefix("flaxmnist."))
            if imported == me:
                continue
            mine, theirs = me.split(".")[0], imported.split(".")[0]
            if mine != theirs:
                assert PACKAGE_RANK[theirs] < PACKAGE_RANK[mine], f"{name} reaches up to {module}"
            assert RANK[imported] < RANK[me], f"{name} reaches up to {module}"


def docstring_lines(tree):
    """The line numbers of the docstrings of a module and of its classes and functions."""
    documented = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    for node in ast.walk(tree):
        if isinstance(node, documented) and ast.get_docstring(node, clean=False) is not None:
            yield from range(node.body[0].lineno, node.body[0].end_lineno + 1)


def code_lines(text):
    """How many lines of ``text`` hold code: not blank, not only a comment, not a docstring's
    (a string that spans lines, other than a docstring, counts every line)."""
    layout = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT}
    layout.add(tokenize.ENDMARKER)
    code = set()
    for token in tokenize.generate_tokens(io.StringIO(text).readline):
        if token.type not in layout:
            code.update(range(token.start[0], token.end[0] + 1))
    return len(code - set(docstring_lines(ast.parse(text))))


def test_code_lines_count_code_alone():
    text = textwrap.dedent('''\
    """A module.

    Its docstring.
    """

    # A comment.
    X = (  # a comment after code
        1,
    )
    HELP = """two
    lines"""


    class A:
        """A class."""

        def f(self):
            """A method,
            documented."""
            return 1
    ''')
    assert code_lines(text) == 8  # X's 3, HELP's 2, class, def, return


@pytest.mark.parametrize(("name", "path"), list(modules()), ids=lambda x: str(x))
def test_small_modules_and_functions(name, path):
    text = path.read_text()
    assert code_lines(text) <= MAX_CODE_LINES, f"{name}: {code_lines(text)} code lines"
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef):
            body = node.body
            if ast.get_docstring(node) is not None:
                body = body[1:]
            lines = body[-1].end_lineno - body[0].lineno + 1 if body else 0
            assert lines <= MAX_FUNCTION_LINES, f"{name}.{node.name}: {lines} lines"


def test_documented_names_stand_one_per_entry():
    """An ``Args:`` or ``Attributes:`` entry names one thing: ``a, b: ...`` renders as one
    name in the API pages (``use_dropout, use_l2, …``), and says less about each."""
    grouped = []
    for name, path in modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.FunctionDef | ast.ClassDef | ast.AsyncFunctionDef):
                continue
            doc = ast.get_docstring(node) or ""
            sections = re.findall(r"^(?:Args|Attributes):\n((?:(?: {2}.*)?\n?)+)", doc, re.M)
            for section in sections:
                grouped += [
                    f"{name}.{node.name}: {line.strip()[:40]}"
                    for line in section.splitlines()
                    if re.match(r"^ {2}\w+(?:, \w+)+:", line)
                ]
    assert not grouped, grouped
