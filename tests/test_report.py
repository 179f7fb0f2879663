import csv
import json
import math

import pytest

import flaxmnist
from flaxmnist.report import (
    best_row,
    format_table,
    load_results,
    plot_accuracy,
    save_plots,
    summarize,
    varied_keys,
    write_summary_csv,
)
from flaxmnist.report.__main__ import main


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
        "history": {
            "val_accuracy": [None if val is None else val - 0.01, val],
            "test_accuracy": [test, test],
        },
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


def test_best_epoch_is_the_argmax_of_the_mean_curve():
    rows = summarize(RECORDS)
    assert rows[1]["best_epoch"] == 2
    late = [record(0, 0, 0.001, 0.9, 0.9)]
    late[0]["history"]["val_accuracy"] = [0.5, 0.95, 0.9]
    assert summarize(late)[0]["best_epoch"] == 2


def test_summary_csv_has_a_row_per_config_of_every_study(tmp_path):
    other = [dict(r, study="u") for r in RECORDS[2:4]]
    path = write_summary_csv(RECORDS + other, tmp_path / "summary.csv")
    rows = list(csv.DictReader(path.open()))
    assert [(r["study"], r["config"]) for r in rows] == [
        ("t", "1"),
        ("t", "2"),
        ("t", "3"),
        ("u", "2"),
    ]
    assert rows[1]["learning_rate"] == "0.001" and rows[1]["hidden"] == "300"
    assert float(rows[1]["val_mean"]) == pytest.approx(0.975)
    assert rows[0]["diverged"] == "1" and rows[0]["at_chance"] == "1"
    assert rows[1]["best_epoch"] == "2"


def test_tables_per_study():
    other = [dict(r, study="u") for r in RECORDS[2:4]]
    table = format_table(RECORDS + other)
    assert "study t:" in table and "study u:" in table
    assert table.index("study t:") < table.index("study u:")


def test_plots_are_written_and_drawable_into_given_axes(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, ax = plt.subplots()
    assert plot_accuracy(RECORDS, ax=ax) is ax
    assert ax.get_xscale() == "log"  # learning rates
    plt.close("all")
    grid = []
    for i, (hidden, dropout) in enumerate(
        [(h, d) for h in ([300, 150], [500, 150]) for d in ([0.0, 0.0], [0.1, 0.2])]
    ):
        rec = record(i, 0, 0.001, 0.98 + i / 1000, 0.98)
        rec["config"] = dict(rec["config"], hidden=hidden, dropout=dropout)
        grid.append(rec)
    paths = save_plots(RECORDS + [dict(r, study="grid") for r in grid], tmp_path)
    assert sorted(p.name for p in paths) == [
        "grid-accuracy.png",
        "grid-curves.png",
        "grid-grid.png",
        "t-accuracy.png",
        "t-curves.png",
    ]
    assert all(p.stat().st_size > 5_000 for p in paths)


def test_report_command(tmp_path, capsys):
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "study t:" in out and "summary.csv" in out
    assert (tmp_path / "summary.csv").exists() and (tmp_path / "t-accuracy.png").exists()
    assert main([str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "results.jsonl").write_text('{"study": "t"}\n{"stu')
    assert main([str(tmp_path)]) == 2
    assert "not JSON lines" in capsys.readouterr().err


def test_load_results_reads_a_run_directory_or_a_file(tmp_path):
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    assert load_results(tmp_path) == RECORDS == load_results(tmp_path / "results.jsonl")
    assert flaxmnist.load_results is load_results
    with pytest.raises(FileNotFoundError, match="no results file"):
        load_results(tmp_path / "empty")


def test_loss_and_dropout_semantics_count_as_varied():
    a, b = record(0, 0, 0.01, 0.9, 0.9), record(1, 0, 0.01, 0.9, 0.9)
    a["config"] = dict(a["config"], loss="cross_entropy")
    b["config"] = dict(b["config"], loss="keras1")
    assert varied_keys([a, b]) == ["loss"]
    assert "keras1" in format_table([a, b])
