"""The house rules: data flows one way, report trains nothing, small modules, small functions."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "flaxmnist"

#: The packages, bottom to top: a module may import from its own package and from those
#: below (``errors`` and ``cli`` are shared by all; the top-level commands sit above all).
PACKAGE_RANK = {
    "errors": 0, "interrupts": 0, "cli": 0,
    "specs": 1,  # what a sweep trains, as data
    "core": 2,  # training's pure core
    "devices": 2,  # where the lanes run
    "run": 3,  # a study run, and its run directory
    "search": 4,  # configurations proposed, not listed
    "report": 5,  # reads results, trains nothing
    "preflight": 6, "runner": 7, "sweep": 8, "evaluate": 8,
}  # fmt: skip
#: Within the packages, each module may import only modules of a lower rank (report's
#: modules import each other).
RANK = {
    "errors": 0,
    "interrupts": 0,
    "cli": 1,
    "specs.config": 1,
    "specs.objectives": 1,
    "specs.space": 2,
    "specs.studies": 3,
    "core.data": 1,
    "core.models": 1,
    "core.optimizer": 1,
    "core.augment": 1,
    "core.losses": 2,
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
    "run.loop": 6,
    "search.trials": 2,
    "search.sampler": 3,
    "search.optuna_db": 5,
    "search.state": 6,
    "search.strategies": 7,
    "search.learned": 8,
    "report": 6,
    "preflight": 9,
    "runner": 10,
    "sweep": 11,
    "evaluate": 11,
}
#: Modules that must not import JAX: what reads results never trains.
NO_JAX = (
    "errors", "interrupts", "cli", "specs", "devices.machine", "devices._watch_stderr",
    "run.progress", "run.rundir", "run.records", "run.attempt", "run.ensemble", "report",
    "search.trials", "search.sampler", "search.optuna_db",
)  # fmt: skip
#: Lines a module may have (train.py holds the whole training function and its docs).
MAX_MODULE_LINES = {"core.train": 420}


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
    assert {ranked(name) for name, _ in modules()} - {"core", "specs", "devices", "run",
                                                      "search"} == set(RANK)  # fmt: skip


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


@pytest.mark.parametrize(("name", "path"), list(modules()), ids=lambda x: str(x))
def test_small_modules_and_functions(name, path):
    text = path.read_text()
    assert len(text.splitlines()) <= MAX_MODULE_LINES.get(name, 320), name
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.FunctionDef):
            body = node.body
            if ast.get_docstring(node) is not None:
                body = body[1:]
            lines = body[-1].end_lineno - body[0].lineno + 1 if body else 0
            assert lines <= 60, f"{name}.{node.name}: {lines} lines"
