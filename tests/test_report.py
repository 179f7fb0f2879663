import csv
import json
import math
from pathlib import Path

import pytest

import flaxmnist
from flaxmnist.report import (
    best_row,
    format_table,
    load_results,
    plot_accuracy,
    plot_curves,
    save_plots,
    study_description,
    summarize,
    varied_keys,
    write_summary_csv,
)
from flaxmnist.report.__main__ import main
from flaxmnist.report.style import FORMATS


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
    records = [record(i, 0, lr, 0.98, 0.98, validate_on="test") for i, lr in enumerate([1, 2])]
    table = format_table(records)
    assert "TEST set" in table and "optimistic" in table
    # One configuration: nothing was selected, so nothing is optimistic.
    table = format_table(records[:1])
    assert "TEST set" in table and "optimistic" not in table


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
    assert rows[1]["learning_rate"] == "0.001"
    assert rows[1]["best_epoch"] == "2"
    assert rows[0]["diverged"] == "1" and rows[0]["at_chance"] == "1"


def test_summary_csv_accuracies_are_percent_and_lists_are_json(tmp_path):
    path = write_summary_csv(RECORDS, tmp_path / "summary.csv")
    rows = list(csv.DictReader(path.open()))
    assert "val_mean" not in rows[0] and "test_std_pct" in rows[0]
    assert float(rows[1]["val_mean_pct"]) == pytest.approx(97.5)  # as in the table
    assert float(rows[1]["val_std_pct"]) == pytest.approx(0.7071, abs=1e-3)
    assert float(rows[1]["test_mean_pct"]) == pytest.approx(96.5)
    assert rows[0]["val_mean_pct"] == ""  # a seed without a value: no mean
    assert json.loads(rows[1]["hidden"]) == [300]
    assert json.loads(rows[1]["l2"]) == [0.0, 0.0] and json.loads(rows[1]["dropout"]) == [0.0]
    assert "[0.0, 0.0]" in path.read_text()  # quoted, one cell


def test_tables_per_study():
    other = [dict(r, study="u") for r in RECORDS[2:4]]
    table = format_table(RECORDS + other)
    assert "study t, ran:" in table and "study u, ran:" in table
    assert table.index("study t,") < table.index("study u,")


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
    figures = ["grid-accuracy", "grid-curves", "grid-grid", "t-accuracy", "t-curves"]
    assert sorted(p.name for p in paths) == [f"{f}.{k}" for f in figures for k in sorted(FORMATS)]
    assert all(p.stat().st_size > 5_000 for p in paths)
    assert [p.name for p in save_plots(RECORDS, tmp_path / "png", formats=["png"])] == [
        "t-accuracy.png",
        "t-curves.png",
    ]


def test_report_command(tmp_path, capsys):
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in RECORDS))
    assert main([str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "study t, ran:" in out and "summary.csv" in out
    assert (tmp_path / "summary.csv").exists() and (tmp_path / "t-accuracy.png").exists()
    assert main([str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().err
    (tmp_path / "results.jsonl").write_text('{"study": "t"}\n{"stu\n{"study": "t"}\n')
    assert main([str(tmp_path)]) == 2
    assert "results.jsonl line 2: not JSON" in capsys.readouterr().err
    (tmp_path / "results.jsonl").write_text('{"study": "t"}\n')
    assert main([str(tmp_path)]) == 2
    assert "record 1: not a flaxmnist result (no config" in capsys.readouterr().err


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


def curve_record(index, seed, lr, curve, validate_on="holdout", study="t", **flags):
    """A record whose per-epoch holdout accuracy is ``curve`` (None: diverged)."""
    rec = record(index, seed, lr, curve[-1], curve[-1], validate_on=validate_on, **flags)
    rec["history"] = {"val_accuracy": list(curve), "test_accuracy": list(curve)}
    rec["config"] = dict(rec["config"], epochs=len(curve))
    return dict(rec, study=study)


def figure_text(figure):
    from matplotlib.text import Text

    return "\n".join(t.get_text() for t in figure.findobj(Text))


@pytest.fixture
def axes():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt.figure().gca()
    plt.close("all")


def legend_labels(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


def test_one_epoch_curves_are_visible_points(axes):
    records = [
        curve_record(i, seed, lr, [0.9 + i / 100 + seed / 1000])
        for i, lr in enumerate([0.001, 0.002, 0.003])
        for seed in range(2)
    ]
    plot_curves(records, ax=axes)
    handles, _ = axes.get_legend_handles_labels()
    assert len(handles) == 3
    xs = []
    for handle in handles:
        line = handle.lines[0]  # an errorbar: the point, with its min-max bar
        assert line.get_marker() not in (None, "None", "", " ")
        assert len(line.get_xdata()) == 1
        low, high = axes.get_ylim()
        assert low < line.get_ydata()[0] < high
        xs.append(line.get_xdata()[0])
    assert len(set(xs)) == 3  # spread sideways, not on top of each other
    assert [t for t in axes.get_xticks()] == [1]
    assert "min–max" in axes.get_legend().get_title().get_text()


def test_curves_have_integer_epoch_ticks_and_a_seed_band(axes):
    records = [
        curve_record(i, seed, lr, [0.5 + e / 50 + seed / 100 for e in range(n)])
        for n in (3, 25)
        for i, lr in enumerate([0.001, 0.002])
        for seed in range(3)
    ]
    plot_curves(records[:6], ax=axes)
    assert list(axes.get_xticks()) == [1, 2, 3]
    assert axes.collections, "a band over the seeds"
    assert "mean of 3 seeds" in axes.get_legend().get_title().get_text()
    long = flaxmnist.plot_curves(records[6:])
    ticks = [t for t in long.get_xticks() if long.get_xlim()[0] <= t <= long.get_xlim()[1]]
    assert ticks and all(float(t).is_integer() for t in ticks)
    assert all(line.get_marker() in (None, "None", "") for line in long.get_lines())


def test_curves_legend_has_each_configuration_once(axes):
    # The lr study lists 0.001 twice: with paired seeds the same run, drawn once.
    records = [
        curve_record(i, seed, lr, [0.9, 0.95])
        for i, lr in enumerate([0.001, 0.01, 0.001])
        for seed in range(2)
    ]
    plot_curves(records, ax=axes)
    labels = legend_labels(axes)
    assert len(labels) == len(set(labels)) == 2
    assert labels[0].startswith("lr=0.001") and "×2" in labels[0]


def test_curves_name_every_line_off_the_axis(axes):
    good = [curve_record(i, 0, lr, [0.95, 0.97]) for i, lr in enumerate([0.001, 0.002])]
    records = good + [
        curve_record(2, 0, 1.0, [0.1, 0.1], at_chance=True),
        curve_record(3, 0, 0.5, [None, None], diverged=True),
    ]
    plot_curves(records, ax=axes)
    low, _ = axes.get_ylim()
    assert low > 50  # zoomed on the good ones
    text = " ".join(figure_text(axes.figure).split())  # the note is wrapped
    assert "2 of 4 configurations partly off the axis, which zooms on the best" in text
    assert "lr=1 (at chance)" in text and "lr=0.5 (diverged" in text
    assert "lr=0.001 (" not in text  # visible lines are not listed


def test_curves_y_label_names_the_selecting_split(axes):
    plot_curves([curve_record(0, 0, 0.001, [0.9, 0.95])], ax=axes)
    assert axes.get_ylabel() == "holdout accuracy %"
    axes.clear()
    plot_curves([curve_record(0, 0, 0.001, [0.9, 0.95], validate_on="test")], ax=axes)
    assert axes.get_ylabel() == "test accuracy % (selects)"
    axes.clear()
    records = [record(0, 0, 0.001, 0.98, 0.98, validate_on="test")]
    plot_accuracy(records, ax=axes)
    assert legend_labels(axes) == ["test (selects)"]  # not twice the same numbers


def test_many_curves_get_panels():
    lrs = [0.001 * (i + 1) for i in range(14)]
    records = [curve_record(i, 0, lr, [0.9, 0.9 + lr]) for i, lr in enumerate(lrs)]
    panels = flaxmnist.plot_curves(records)
    assert len(panels) == 3
    assert sum(len(legend_labels(p)) for p in panels) == 14
    assert all(len(legend_labels(p)) <= 6 for p in panels)
    assert "t: learning curves" in panels[0].figure.get_suptitle()


def test_descriptions_show_in_tables_and_plots(axes):
    table = format_table(RECORDS, descriptions={"t": "a toy study"})
    assert table.splitlines()[0].startswith('study t ("a toy study"), ran: 3 configs')
    assert "toy" not in format_table(RECORDS)  # unknown spec: no description, no failure
    packaged = [dict(record(i, 0, lr, 0.9, 0.9), study="lr") for i, lr in enumerate([1.0, 0.1])]
    assert study_description("lr", packaged).startswith("Part 2.1")
    assert "Part 2.1" in format_table(packaged).splitlines()[0]
    other = [dict(record(0, 0, 0.5, 0.9, 0.9), study="lr")]  # a spec file named lr.toml
    assert study_description("lr", other) == ""
    plot_curves(RECORDS, ax=axes, description="a toy study")
    assert "a toy study" in axes.get_title()
    axes.clear()
    plot_accuracy(packaged, ax=axes)
    assert "Part 2.1" in axes.get_title()


def test_table_header_names_the_epochs():
    assert "ran: 3 configs x 2 seeds, 2 epochs, 50000 training images;" in format_table(RECORDS)


def test_table_and_titles_say_what_ran_when_the_description_says_otherwise(axes):
    # The packaged lr study says 10 epochs; --epochs 1 --limit-train 2000 ran.
    ran = "ran: 2 configs x 1 seed, 1 epoch, 2000 training images"
    packaged = [curve_record(i, 0, lr, [0.9], study="lr") for i, lr in enumerate([1.0, 0.1])]
    for rec in packaged:
        rec["config"]["train_size"] = 2000
    header = format_table(packaged).splitlines()[0]
    assert "10 epochs" in header and f"), {ran};" in header
    plot_accuracy(packaged, ax=axes)
    assert "Part 2.1" in axes.get_title() and axes.get_title().endswith(ran)
    axes.clear()
    plot_curves(packaged, ax=axes)
    assert axes.get_title().splitlines()[1:] == [study_description("lr", packaged), ran]
    # A search trains some configurations fewer epochs, some with fewer seeds.
    early = [curve_record(0, s, 0.1, [0.9]) for s in range(3)] + [
        curve_record(1, 0, 0.2, [0.9] * 3)
    ]
    assert "ran: 2 configs x 1–3 seeds, 1–3 epochs," in format_table(early)
    assert "\nran: 2 configs x 1–3 seeds, 1–3 epochs," in plot_accuracy(early).get_title()


def grid_records(epochs):
    """The three-layer study's 36 configurations (4 widths x 9 dropouts), one seed."""
    widths = [(h, d) for h in (300, 500) for d in (150, 300)]
    rates = [(a, b) for a in (0.0, 0.1, 0.2) for b in (0.0, 0.1, 0.2)]
    records = []
    for i, (hidden, rate) in enumerate((w, r) for w in widths for r in rates):
        rec = curve_record(i, 0, 0.001, [0.85 + (i % 7) / 200 + e / 100 for e in range(epochs)])
        rec["config"] = dict(rec["config"], hidden=list(hidden), dropout=list(rate))
        records.append(rec)
    return records


@pytest.mark.parametrize("epochs", [1, 3])
def test_curves_of_36_configurations_leave_every_panel_room(epochs):
    import warnings

    import matplotlib.pyplot as plt
    import numpy as np

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Python 3.13 warns of an earlier test's sqlite connections when they are collected.
        warnings.simplefilter("ignore", ResourceWarning)
        panels = np.ravel(plot_curves(grid_records(epochs)))
        figure = panels[0].figure
        figure.canvas.draw()
    assert not [str(w.message) for w in caught]  # no "axes sizes collapsed to zero"
    assert len(panels) == (1 if epochs == 1 else 4)  # one epoch: one panel of points
    for panel in panels:
        box = panel.get_window_extent()
        assert box.width > 2 * figure.dpi and box.height > 2 * figure.dpi  # inches
        legend = panel.get_legend().get_window_extent()
        assert legend.y0 >= 0 and legend.height <= box.height  # beside its panel, whole
    plt.close("all")


def test_panels_zoom_each_on_its_own_curves():
    lrs = [0.001 * (i + 1) for i in range(12)]  # two panels of 6
    low = [curve_record(i, 0, lr, [0.6, 0.65 + i / 100]) for i, lr in enumerate(lrs[:6])]
    high = [curve_record(i + 6, 0, lr, [0.95, 0.97 + i / 1000]) for i, lr in enumerate(lrs[6:])]
    panels = flaxmnist.plot_curves(low + high)
    assert len(panels) == 2
    (a, b), (c, d) = (p.get_ylim() for p in panels)
    assert b < c  # not one range from 60 to 100 % for both
    assert b - a < 15 and d - c < 5
    for panel in panels:
        bottom, top = panel.get_ylim()
        values = [y for line in panel.get_lines() for y in line.get_ydata()]
        assert values and all(bottom <= y <= top for y in values)
    assert "off the axis" not in figure_text(panels[0].figure)


def test_long_labels_become_the_tables_numbers_and_mixed_epochs_are_said():
    """Hyperband over ten keys (a committed run): a label per configuration would be 150
    characters long; the figures number the configurations as the table does."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    root = Path(__file__).resolve().parent.parent
    records = load_results(root / "reproduction/search-benchmark/out/tenth/hyperband-0")
    ax = plot_accuracy(records)
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks == [f"#{i + 1}" for i in sorted({r["config_index"] for r in records})]
    assert "numbered as in the table" in ax.get_xlabel()
    assert ax.get_ylabel() == "accuracy % after its last epoch (1–9)"  # halved early: 1 to 9
    axes = plot_curves(records)
    entries = [t.get_text() for panel in axes for t in panel.get_legend().get_texts()]
    assert sorted(entries, key=lambda e: int(e[1:])) == ticks
    plt.close("all")
