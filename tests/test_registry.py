"""The strategies (flaxmnist/search): one class each, registered in one place, the only place
that names them; a strategy reads nothing of the loop; a new strategy is a class and one
entry of the registry."""

import ast
from pathlib import Path

from flaxmnist import run_sweep
from flaxmnist.run.steps import Copy, Step
from flaxmnist.search.base import Strategy
from flaxmnist.search.registry import STRATEGIES
from flaxmnist.specs.config import Config
from flaxmnist.studies import parse_study

PACKAGE = Path(__file__).resolve().parent.parent / "flaxmnist"
REGISTRY = PACKAGE / "search" / "registry.py"
#: Where a strategy's own name is written: its class (``name = "..."``) and the registry.
NAMES = set(STRATEGIES)


def strings(node: ast.AST) -> set[str]:
    """The string constants of an expression: itself, or the items of a tuple, list, set."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return {node.value}
    if isinstance(node, ast.Tuple | ast.List | ast.Set):
        return set().union(*(strings(item) for item in node.elts))
    return set()


def compared_names(path: Path) -> list[str]:
    """``line: name`` for every comparison of something with a strategy's name in ``path``
    (``==``, ``!=``, ``in``, ``not in``, against a name or a collection of names)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Compare):
            for operand in (node.left, *node.comparators):
                found += [f"{node.lineno}: {name}" for name in strings(operand) & NAMES]
    return found


def test_no_module_compares_a_strategys_name_outside_the_registry():
    offenders = {
        str(path.relative_to(PACKAGE)): hits
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != REGISTRY and (hits := compared_names(path))
    }
    assert offenders == {}


def test_the_check_finds_a_comparison(tmp_path):
    probe = tmp_path / "probe.py"
    probe.write_text('if strategy == "pbt" or kind in ("tpe", "other"):\n    pass\n')
    assert compared_names(probe) == ["1: pbt", "1: tpe"]


def test_every_strategy_is_a_class_of_its_own_registered_by_its_name():
    assert list(STRATEGIES) == [
        "grid",
        "random",
        "quasi-random",
        "halving",
        "hyperband",
        "pbt",
        "tpe",
        "gp",
        "cmaes",
        "nsga2",
        "bohb",
    ]
    for name, cls in STRATEGIES.items():
        assert issubclass(cls, Strategy) and cls.name == name
    assert len(set(STRATEGIES.values())) == len(STRATEGIES)
    for cls in STRATEGIES.values():  # what a spec reader needs, said by each
        assert cls.draw in ("", "random", "quasi") and isinstance(cls.tables, tuple)
        assert not (cls.up_front and cls.proposes)


def test_strategies_read_nothing_of_the_loop():
    """search/ imports neither the loop nor the grids, and touches no device."""
    for path in sorted((PACKAGE / "search").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = node.module
                assert module.split(".")[0] not in ("jax", "flax", "optax"), (path.name, module)
                if module.startswith("flaxmnist.run"):
                    allowed = (
                        "flaxmnist.run.steps",
                        "flaxmnist.run.records",
                        "flaxmnist.run.rundir",
                    )
                    assert module in allowed, (path.name, module)


def test_a_step_crosses_processes_as_json():
    import json

    step = Step(
        add={3: Config(hidden=(8, 4), dropout=(0.1, 0.2))},
        stop=(1, 2),
        copy=(Copy(0, 5, Config(learning_rate=0.02)),),
        until=4,
        fields={3: {"strategy": "x", "round": 1}},
        forget=(7,),
        label="round 2",
        checkpoint=False,
        sampler_seconds=0.5,
    )
    assert Step.from_dict(json.loads(json.dumps(step.to_dict()))) == step


class KeepFirst(Strategy):
    """A strategy of the test's own: after one epoch only configuration 0 goes on."""

    name = "keep-first"
    lockstep = True

    def stop_after(self, epoch: int) -> int:
        return 1 if epoch < 1 else self.epochs

    def next(self, standing):
        if standing.epoch >= self.epochs:
            return Step()
        return Step(stop=tuple(c for c in standing.going if c != 0), until=self.epochs)


def test_a_new_strategy_is_its_class_and_one_entry_of_the_registry(monkeypatch, tmp_path):
    monkeypatch.setitem(STRATEGIES, KeepFirst.name, KeepFirst)
    document = {
        "strategy": "keep-first",
        "base": {"hidden": [16], "epochs": 3},
        "grid": {"learning_rate": [1e-3, 1e-2, 3e-2]},
    }
    study = parse_study(document, "mine", "mine.toml")
    records = run_sweep(study, seeds=2, limit_train=400, out=tmp_path, quiet=True)
    trained = {r["config_index"]: len(r["history"]["val_accuracy"]) for r in records}
    assert trained == {0: 3, 1: 1, 2: 1}
    assert {r["search"]["strategy"] for r in records} == {"keep-first"}
    assert (tmp_path / "models" / "mine").is_dir()


class StopAtOne(KeepFirst):
    """Asked after the first epoch, it says nothing is left: the lanes end as they are."""

    name = "stop-at-one"

    def next(self, standing):
        return Step()


def test_a_strategy_that_ends_the_search_early_leaves_lanes_recorded_as_they_are(
    monkeypatch,
):
    monkeypatch.setitem(STRATEGIES, StopAtOne.name, StopAtOne)
    document = {
        "strategy": "stop-at-one",
        "base": {"hidden": [16], "epochs": 3},
        "grid": {"learning_rate": [1e-3, 1e-2]},
    }
    records = run_sweep(parse_study(document, "s", "s.toml"), seeds=1, limit_train=400, quiet=True)
    assert [len(r["history"]["val_accuracy"]) for r in records] == [1, 1]


def test_the_report_draws_the_records_of_a_strategy_it_does_not_know():
    from flaxmnist.report.search import search_trace

    records = [
        {
            "study": "s",
            "config_index": c,
            "seed": 0,
            "val_accuracy": v,
            "compute": 10,
            "history": {"val_accuracy": [v]},
            "search": {"strategy": "someone-elses"},
        }
        for c, v in enumerate([0.5, 0.7, 0.6])
    ]
    spent, best = search_trace(records)
    assert spent.tolist() == [10, 20, 30] and best.tolist() == [0.5, 0.7, 0.7]
