import math

import pytest

from flaxmnist.report import best_row, format_table, summarize, varied_keys


def record(index, seed, lr, val, test, diverged=False, validate_on="holdout", at_chance=False):
    config = {
        "hidden": [300],
        "dropout": [0.0],
        "learning_rate": lr,
        "l2": [0.0, 0.0],
        "weight_decay": 0.0,
        "epochs": 1,
        "batch_size": 200,
        "dataset": "mnist",
        "validate_on": validate_on,
        "train_size": 50000,
    }
    return {
        "study": "t",
        "config": config,
        "config_index": index,
        "seed": seed,
        "history": {},
        "val_accuracy": val,
        "test_accuracy": test,
        "diverged": diverged,
        "at_chance": at_chance,
    }


RECORDS = [
    record(0, 0, 1.0, 0.1, 0.11, diverged=True),
    record(0, 1, 1.0, None, 0.1, at_chance=True),
    record(1, 0, 0.001, 0.97, 0.96),
    record(1, 1, 0.001, 0.98, 0.97),
    record(2, 0, 0.001, 0.975, 0.99),
    record(2, 1, 0.001, 0.975, 0.99),
]


def test_summarize_means_stds_and_divergence():
    rows = summarize(RECORDS)
    assert [row["config_index"] for row in rows] == [0, 1, 2]
    assert rows[1]["val_mean"] == pytest.approx(0.975)
    assert rows[1]["val_std"] == pytest.approx(math.sqrt(0.00005))
    assert rows[2]["val_std"] == 0
    assert rows[0]["diverged"] == 1 and rows[1]["diverged"] == 0
    assert rows[0]["at_chance"] == 1
    assert math.isnan(rows[0]["val_mean"])  # a null accuracy stays visible, not dropped


def test_best_is_chosen_on_validation_not_test():
    best = best_row(summarize(RECORDS))
    assert best["config_index"] == 1  # ties on val: the first; config 2 has the better test


def test_table_lists_every_config_in_order_with_status():
    assert varied_keys(RECORDS) == ["learning_rate"]
    table = format_table(RECORDS)
    lines = table.splitlines()
    assert "holdout" in lines[0]
    assert lines[2].split()[:2] == ["1", "1"] and "diverged 1/2, at chance 1/2" in lines[2]
    assert lines[3].split()[:5] == ["2", "0.001", "97.50", "±", "0.71"]
    assert "best by holdout accuracy: #2" in table


def test_table_says_when_the_test_set_selected():
    records = [record(0, 0, 0.001, 0.98, 0.98, validate_on="test")]
    table = format_table(records)
    assert "TEST set" in table and "optimistic" in table
