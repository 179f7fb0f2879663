"""The house rules: data flows one way, report trains nothing, small modules, small functions."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "flaxmnist"

#: Each module may import only modules of a lower rank (report's modules import each other).
RANK = {
    "errors": 0,
    "data": 1,
    "models": 1,
    "specs": 1,
    "objectives": 1,
    "progress": 1,
    "cli": 2,
    "machine": 1,
    "losses": 2,
    "optimizer": 1,
    "augment": 1,
    "sources": 2,
    "studies": 3,
    "space": 2,
    "trials": 2,
    "sampler": 3,
    "optuna_db": 5,
    "train": 3,
    "compile_cache": 3,
    "host": 3,
    "cluster": 3,
    "placement": 3,
    "plan": 4,
    "grid": 4,
    "rundir": 4,
    "records": 4,
    "attempt": 5,
    "report": 6,
    "checkpoint": 5,
    "loop": 6,
    "search_state": 6,
    "search": 7,
    "learned": 8,
    "ensemble": 5,
    "preflight": 9,
    "runner": 10,
    "sweep": 11,
    "evaluate": 11,
}
#: Modules that must not import JAX: what reads results never trains.
NO_JAX = (
    "errors", "specs", "space", "cli", "progress", "machine", "rundir", "records", "attempt",
    "report", "trials", "sampler", "optuna_db", "objectives", "ensemble",
)  # fmt: skip
#: Lines a module may have (train.py holds the whole training function and its docs).
MAX_MODULE_LINES = {"train": 420}


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        name = path.relative_to(PACKAGE).with_suffix("").as_posix().replace("/", ".")
        if name != "__init__":
            yield name.removesuffix(".__init__").removesuffix(".__main__"), path


def imports(tree):
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module == "flaxmnist":
            # ``from flaxmnist import cluster`` imports a module as surely as its dotted form
            yield from (f"flaxmnist.{alias.name}" for alias in node.names if alias.name in RANK)
        elif isinstance(node, ast.ImportFrom) and node.module:
            yield node.module
        elif isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)


@pytest.mark.parametrize(("name", "path"), list(modules()), ids=lambda x: str(x))
def test_data_flows_one_way(name, path):
    top = name.split(".")[0]
    for module in imports(ast.parse(path.read_text())):
        if top in NO_JAX:
            assert module.split(".")[0] not in ("jax", "flax", "optax"), (name, module)
        if module.startswith("flaxmnist."):
            imported = module.split(".")[1]
            if imported != top:
                assert RANK[imported] < RANK[top], f"{name} reaches up to {module}"


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
