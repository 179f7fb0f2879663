"""Hyperband and BOHB: brackets in Hyperband's order and sizes, lanes refilled as rungs
stop configurations, the budget never cut half-way through a bracket, a model that learns
(BOHB), all checked by driving the strategy by hand; then end to end on tiny data."""

import json

import numpy as np
import pytest

from flaxmnist import run_sweep
from flaxmnist.run.steps import Standing
from flaxmnist.search.hyperband import BOHB, Hyperband, bracket_sizes
from flaxmnist.search.learned import resolve
from flaxmnist.studies import parse_study

TRAIN = 600


def study_of(strategy="hyperband", samples=30, epochs=9, eta=3, space=None, **extra):
    document = {
        "strategy": strategy,
        "samples": samples,
        "seed": 0,
        "base": {"hidden": [8], "epochs": epochs},
        "search": space
        or {
            "learning_rate": {"log_uniform": [1e-4, 1e-1]},
            "dropout": {"uniform": [0.0, 0.5]},
        },
        "halving": {"eta": eta},
        **extra,
    }
    return parse_study(document, "s", "s.toml")


def truth(config, epoch):
    """A made-up holdout accuracy: best at learning rate 1e-2, rising with the epochs."""
    return 0.9 - 0.1 * abs(np.log10(config.learning_rate) + 2) - 0.2 / epoch


class Driver:
    """Plays the loop for a strategy without training: curves from ``truth``, one seed."""

    def __init__(self, strategy, lanes, budget=None, cost=lambda config: 1):
        self.strategy, self.lanes, self.budget, self.cost = strategy, lanes, budget, cost
        self.clock, self.going, self.configs, self.records = 0, {}, {}, []
        self.widths, self.spent, self.started_at = [], 0, {}

    def standing(self):
        curves = {
            c: [{"history": {"val_accuracy": h}, "val_accuracy": h[-1]}]
            for c, h in self.going.items()
            if h
        }
        # As the loop says it: the records' compute (lanes still training not counted).
        recorded = sum(r["compute"] for r in self.records)
        left = None if self.budget is None else self.budget - recorded
        return Standing(
            epoch=self.clock,
            grids=(tuple(self.going),),
            configs=dict(self.configs),
            curves=curves,
            records=list(self.records),
            seeds=(0,),
            lanes=self.lanes,
            budget=self.budget,
            budget_left=left,
            cost=self.cost,
        )

    def record(self, config_index):
        history = self.going.pop(config_index)
        config = self.configs[config_index]
        self.records.append(
            {
                "config_index": config_index,
                "seed": 0,
                "config": config.to_dict(),
                "history": {"val_accuracy": history},
                "val_accuracy": history[-1],
                "diverged": False,
                "compute": len(history) * self.cost(config),
            }
        )

    def run(self):
        step = self.strategy.first(self.standing())
        while True:
            for c in step.stop:
                self.record(c)
            for c, config in step.add.items():
                self.configs[c], self.going[c], self.started_at[c] = config, [], self.clock
            if not self.going:
                return
            assert step.until > self.clock
            while self.clock < step.until:
                self.widths.append(len(self.going))
                for c, history in self.going.items():
                    history.append(truth(self.configs[c], len(history) + 1))
                    self.spent += self.cost(self.configs[c])
                self.clock += 1
            for c in [c for c, h in self.going.items() if len(h) >= self.configs[c].epochs]:
                self.record(c)
            step = self.strategy.next(self.standing())


def trained(driver):
    """Epochs each configuration trained, by configuration."""
    return {r["config_index"]: len(r["history"]["val_accuracy"]) for r in driver.records}


def test_bracket_sizes_follow_hyperband():
    # Li et al. 2018, Table 1 (R = 81, eta = 3): n_s = 81, 34, 15, 8, 5.
    assert bracket_sizes(5, 3) == [81, 34, 15, 8, 5]
    assert bracket_sizes(3, 2) == [4, 3, 3]


def test_brackets_start_in_order_and_halve_from_their_own_rung():
    """With lanes for every bracket at once, each bracket is successive halving from its own
    first rung: 9 configurations to 1 epoch, 3 on to 3, 1 to 9; 5 to 3, 1 to 9; 3 to 9."""
    driver = Driver(Hyperband(study_of(samples=17)), lanes=17)
    driver.run()
    epochs = trained(driver)
    assert len(epochs) == 17
    brackets = [list(range(0, 9)), list(range(9, 14)), list(range(14, 17))]
    assert sorted(epochs[c] for c in brackets[0]) == [1] * 6 + [3] * 2 + [9]
    assert sorted(epochs[c] for c in brackets[1]) == [3] * 4 + [9]
    assert sorted(epochs[c] for c in brackets[2]) == [9] * 3
    # The best at each rung go on: bracket 0's survivor has the best holdout at epoch 1.
    best = max(brackets[0], key=lambda c: truth(driver.configs[c], 1))
    assert epochs[best] == 9


def test_freed_lanes_take_the_next_bracket_so_calls_do_not_narrow():
    driver = Driver(Hyperband(study_of(samples=60)), lanes=12)
    driver.run()
    assert len(trained(driver)) == 60
    last_start = max(driver.started_at.values())
    # Until the last configuration starts, every epoch trains the full 12 lanes.
    assert driver.widths[:last_start] == [12] * last_start
    # Without refill the first bracket alone would hold the lanes: 9 of 12, then 3, then 1.
    assert min(driver.widths[:last_start]) == 12


def test_a_bracket_starts_only_with_what_the_budget_holds_to_its_end():
    """Budget: 100 lane-epochs. Every bracket started runs to its end (no configuration
    stops but at a rung), and the spend stays within the budget."""
    driver = Driver(Hyperband(study_of(samples=60)), lanes=12, budget=100)
    with pytest.warns(match=r"budget of 100 training FLOPs holds \d+ of bracket \d+'s"):
        driver.run()
    assert driver.spent <= 100
    rungs = {1, 3, 9}
    for epochs in trained(driver).values():
        assert epochs in rungs
    assert len(trained(driver)) < 60


def test_the_state_restores_the_same_decisions():
    """A strategy rebuilt from ``state()`` at any decision decides as the original does."""
    original = Hyperband(study_of(samples=40))
    driver = Driver(original, lanes=10)
    step = original.first(driver.standing())
    decisions = 0
    while step.until:
        copy = Hyperband(study_of(samples=40))
        copy.restore(json.loads(json.dumps(original.state())))
        for c in step.stop:
            driver.record(c)
        for c, config in step.add.items():
            driver.configs[c], driver.going[c] = config, []
        while driver.clock < step.until:
            for c, history in driver.going.items():
                history.append(truth(driver.configs[c], len(history) + 1))
            driver.clock += 1
        for c in [c for c, h in driver.going.items() if len(h) >= 9]:
            driver.record(c)
        standing = driver.standing()
        step, again = original.next(standing), copy.next(standing)
        assert again == step
        decisions += 1
    assert decisions > 5


def test_bohb_proposes_from_the_model_once_a_rung_has_enough_results():
    """Told that learning rates near 1e-2 do best, BOHB's proposals move there; before any
    result, all are random."""
    study = study_of("bohb", samples=200)
    bohb = BOHB(study)
    driver = Driver(bohb, lanes=20)
    blind_proposals = bohb._propose(40, driver.standing(), {})
    assert {how["proposed_by"] for _, how in blind_proposals} == {"random"}
    blind = [c for c, _ in blind_proposals]
    rng = np.random.default_rng(1)
    for index in range(60):  # 60 finished at 9 epochs, across the prior
        settings = {"learning_rate": 10 ** rng.uniform(-4, -1), "dropout": rng.uniform(0, 0.5)}
        config = resolve(study, {k: float(v) for k, v in settings.items()})
        driver.configs[index] = config
        driver.going[index] = [truth(config, e) for e in range(1, 10)]
        driver.record(index)
    proposals = bohb._propose(40, driver.standing(), {})
    informed = [c for c, _ in proposals]
    by_model = [c for c, how in proposals if how["proposed_by"] == "model"]
    assert {how.get("model_rung") for _, how in proposals} == {None, 9}

    def near(configs):  # within 0.3 decades of the best learning rate: 20 % of the prior
        return np.mean([abs(np.log10(c.learning_rate) + 2) < 0.3 for c in configs])

    assert near(blind) < 0.3
    assert near(informed) > 2 * near(blind)
    # A third (about) stays random: BOHB's rho; the model's own proposals are the informed.
    assert sum(abs(np.log10(c.learning_rate) + 2) > 1 for c in informed) >= 3
    assert 20 <= len(by_model) <= 34 and near(by_model) > near(informed)


def test_bohb_is_deterministic_and_refuses_what_optuna_would():
    study = study_of("bohb", samples=30)
    first, second = (Driver(BOHB(study), lanes=10) for _ in range(2))
    first.run()
    second.run()
    assert first.records == second.records
    # Every configuration says how it was proposed, and a resumed strategy says the same.
    bohb, resumed = first.strategy, BOHB(study)
    resumed.restore(json.loads(json.dumps(bohb.state())))
    fields = [bohb.fields(c) for c in range(30)]
    assert fields == [resumed.fields(c) for c in range(30)]
    assert {f["proposed_by"] for f in fields} == {"model", "random"}
    assert all(f["model_rung"] in bohb.rungs for f in fields if f["proposed_by"] == "model")
    from flaxmnist.errors import SpecError

    with pytest.raises(SpecError, match="sampler.nope"):
        BOHB.check(study_of("bohb", sampler={"nope": 1}))


def test_a_layers_prior_draws_depth_and_widths_and_bohb_learns_over_it():
    space = {
        "hidden": {"depth": [1, 3], "log_uniform": [32, 2048]},
        "learning_rate": {"log_uniform": [1e-4, 1e-1]},
    }
    drawn = study_of(samples=40, space=space).configs
    assert {len(c.hidden) for c in drawn} == {1, 2, 3}
    assert all(32 <= w <= 2048 and isinstance(w, int) for c in drawn for w in c.hidden)
    driver = Driver(BOHB(study_of("bohb", samples=40, space=space)), lanes=10)
    driver.run()
    assert len(trained(driver)) == 40


@pytest.mark.parametrize("strategy", ["hyperband", pytest.param("bohb", marks=pytest.mark.heavy)])
def test_end_to_end_lanes_refill_and_records_hold_their_bracket(strategy, tmp_path):
    study = study_of(strategy, samples=10, epochs=4, eta=2)
    records = run_sweep(study, seeds=2, limit_train=TRAIN, max_lanes=10, out=tmp_path, quiet=True)
    assert len(records) == 20
    epochs = {r["config_index"]: len(r["history"]["val_accuracy"]) for r in records}
    assert set(epochs.values()) <= {1, 2, 4} and 4 in epochs.values()
    brackets = {r["config_index"]: r["search"]["bracket"] for r in records}
    assert len(set(brackets.values())) >= 3  # freed lanes took later brackets
    for r in records:  # brackets start in Hyperband's order: first rungs 1, 2, 4, 1, ...
        assert r["search"]["first_rung"] == [1, 2, 4][r["search"]["bracket"] % 3]
        assert epochs[r["config_index"]] >= r["search"]["first_rung"]
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["settings"]["studies"][0]["planned"]["round_size"] == 5
    origins = {r["search"].get("proposed_by") for r in records}
    if strategy == "hyperband":
        assert origins == {None}  # drawn before the run: nothing to say
    else:
        assert "random" in origins and origins <= {"random", "model"}
    again = run_sweep(study, seeds=2, limit_train=TRAIN, max_lanes=10, quiet=True)
    assert again == records


def test_end_to_end_a_budget_ends_brackets_at_their_rungs_never_mid_way(tmp_path):
    import warnings

    from flaxmnist.run.plan import train_flops, train_spec_of

    study = study_of("hyperband", samples=30, epochs=4, eta=2)
    lane_epoch = 2 * train_flops(train_spec_of(study.configs[0]), TRAIN)  # 2 seeds
    budget = 40 * lane_epoch
    with warnings.catch_warnings(record=True) as said:
        warnings.simplefilter("always")
        records = run_sweep(study, seeds=2, limit_train=TRAIN, max_lanes=10, budget=budget)
    said = [str(w.message) for w in said]
    assert any("holds" in m and "of bracket" in m for m in said)  # the strategy says it
    assert not any("search stops after epoch" in m for m in said)  # the loop never cuts
    assert sum(r["compute"] for r in records) <= budget
    epochs = [len(r["history"]["val_accuracy"]) for r in records]
    assert set(epochs) <= {1, 2, 4} and len(records) < 60


def test_a_warm_started_bohb_models_its_first_bracket():
    """Told an earlier run's finished configurations, BOHB proposes from its model at once."""
    study = study_of("bohb", samples=100)
    earlier = Driver(BOHB(study), lanes=20)
    rng = np.random.default_rng(2)
    for index in range(40):
        settings = {"learning_rate": 10 ** rng.uniform(-4, -1), "dropout": rng.uniform(0, 0.5)}
        config = resolve(study, {k: float(v) for k, v in settings.items()})
        earlier.configs[index] = config
        earlier.going[index] = [truth(config, e) for e in range(1, 10)]
        earlier.record(index)
    cold, warm = BOHB(study), BOHB(study)
    warm.warm(earlier.records)
    standing = Driver(cold, lanes=20).standing()
    assert cold._observations(standing) is None
    rung, points = warm._observations(standing)
    assert (rung, len(points)) == (9, 40)
    warm_proposals, cold_proposals = warm._propose(9, standing, {}), cold._propose(9, standing, {})
    assert [c.learning_rate for c, _ in warm_proposals] != [
        c.learning_rate for c, _ in cold_proposals
    ]
    assert {how["proposed_by"] for _, how in cold_proposals} == {"random"}
    modelled = [how for _, how in warm_proposals if how["proposed_by"] == "model"]
    assert modelled and all(how["model_rung"] == 9 and how["model_told"] == 40 for how in modelled)


class Killed(Exception):
    """Stands for a SIGKILL at one moment of the run."""


@pytest.mark.parametrize("records", [1, pytest.param(3, marks=pytest.mark.heavy)])
def test_a_run_killed_between_its_records_and_its_checkpoint_resumes_to_the_same(
    records, tmp_path, monkeypatch
):
    """Rounds of one configuration (2 lanes, 2 seeds): a configuration that ends leaves
    the study no grid before it refills and checkpoints. Killed there (its records written,
    the next checkpoint not; ``records``: after the first, or the third, configuration),
    the rerun resumes from the checkpoint before, trains those lanes again, and ends as an
    uninterrupted run: not skipped as finished, nothing counted twice."""
    import flaxmnist.run.stepped as stepped

    study = study_of("hyperband", samples=6, epochs=4, eta=2)
    settings = {"seeds": 2, "limit_train": TRAIN, "max_lanes": 2, "quiet": True}
    whole = run_sweep(study, out=tmp_path / "whole", **settings)
    save, results = stepped.save_state, tmp_path / "killed" / "results.jsonl"

    def dies(*args):
        written = results.read_text().count("\n") // 2 if results.exists() else 0
        if written >= records:
            raise Killed
        return save(*args)

    monkeypatch.setattr(stepped, "save_state", dies)
    with pytest.raises(Killed):
        run_sweep(study, out=tmp_path / "killed", **settings)
    monkeypatch.setattr(stepped, "save_state", save)
    assert (tmp_path / "killed" / "search").exists()
    again = run_sweep(study, out=tmp_path / "killed", **settings)
    assert again == whole
    assert results.read_bytes() == (tmp_path / "whole" / "results.jsonl").read_bytes()
