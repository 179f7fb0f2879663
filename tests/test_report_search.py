"""The pictures of search strategies (flaxmnist.report.search) and ``report --compare``, on
records built by hand."""

import json
import math

import pytest

import flaxmnist.report
from flaxmnist.report import (
    plot_brackets,
    plot_halving,
    plot_pbt,
    plot_search_progress,
    save_plots,
    search_strategy,
    search_trace,
)
from flaxmnist.report.__main__ import main
from flaxmnist.run.rundir import RECORD_KEYS

NAN = float("nan")


def rec(index, seed, val, test=None, compute=10, study="s", search=None, **config):
    """A record of configuration ``index`` whose per-epoch holdout accuracy is ``val`` (None:
    diverged) and test accuracy ``test`` (default: ``val``), which spent ``compute`` FLOPs."""
    test = val if test is None else test
    config = {"hidden": [300], "dropout": [0.0], "learning_rate": 0.001 * (index + 1),
              "epochs": len(val), "validate_on": "holdout", **config}  # fmt: skip
    record = {
        "study": study,
        "config": config,
        "config_index": index,
        "seed": seed,
        "history": {
            "val_accuracy": list(val),
            "test_accuracy": list(test),
            "train_loss": [0.3] * len(val),
        },  # fmt: skip
        "val_accuracy": val[-1],
        "test_accuracy": test[-1],
        "diverged": val[-1] is None,
        "at_chance": False,
        "compute": compute,
    }
    if search is not None:
        record["search"] = search
    assert set(RECORD_KEYS) <= set(record)
    return record


def one_by_one(study="s", search=None):
    """Three configurations × 2 seeds trained one after another: #1 has a diverged seed
    (no mean), #2 a mean of 0.91, #3 0.95 (its test accuracy: 0.94)."""
    return [
        rec(0, 0, [0.5], compute=100, study=study, search=search),
        rec(0, 1, [None], compute=100, study=study, search=search),
        rec(1, 0, [0.90], test=[0.99], compute=200, study=study, search=search),
        rec(1, 1, [0.92], test=[0.99], compute=200, study=study, search=search),
        rec(2, 0, [0.96], test=[0.93], compute=100, study=study, search=search),
        rec(2, 1, [0.94], test=[0.95], compute=100, study=study, search=search),
    ]


def halving(study="h", strategy="halving"):
    """Four configurations × 2 seeds in lockstep, 10 FLOPs per lane-epoch: #1 stopped after
    epoch 1, #4 after epoch 2, #2 and #3 trained 3 epochs (#2 best at epoch 2, #3 at 3)."""
    curves = {
        0: ([0.80], [0.82]),
        1: ([0.85, 0.90, 0.88], [0.85, 0.92, 0.90]),
        2: ([0.70, 0.80, 0.93], [0.72, 0.80, 0.91]),
        3: ([0.83, 0.87], [0.83, 0.89]),
    }
    search = {"strategy": strategy}
    return [
        rec(c, seed, val, compute=10 * len(val), study=study, search=search)
        for c, pair in curves.items()
        for seed, val in enumerate(pair)
    ]


def test_trace_one_configuration_after_another():
    for records in (one_by_one(), one_by_one(search={"strategy": "random"})):
        spent, best = search_trace(records)
        assert spent.tolist() == [200, 600, 800]
        assert best.tolist() == pytest.approx([NAN, 0.91, 0.95], nan_ok=True)
    assert search_strategy(one_by_one()) == "grid"


def test_trace_in_lockstep_counts_the_epochs_each_lane_trained():
    for strategy in ("halving", "pbt"):
        spent, best = search_trace(halving(strategy=strategy))
        # epoch 1: 8 lanes × 10; epoch 2: #1's two lanes stopped; epoch 3: #4's too
        assert spent.tolist() == pytest.approx([80, 140, 180])
        # the best so far at any epoch: #2 at epoch 1 and 2 (0.91 stays after it drops), #3
        assert best.tolist() == pytest.approx([0.85, 0.91, 0.92])


def test_trace_places_a_refilled_lane_at_the_epoch_it_started():
    """Hyperband: #1 and #2 start at epoch 0 (#1 stops after 1), #3 takes #1's lane at 1."""
    curves = {0: (0, [0.80]), 1: (0, [0.85, 0.86, 0.87]), 2: (1, [0.70, 0.95])}
    records = [
        rec(c, 0, val, compute=10 * len(val), search={"strategy": "hyperband", "start": start})
        for c, (start, val) in curves.items()
    ]
    spent, best = search_trace(records)
    assert spent.tolist() == pytest.approx([20, 40, 60])  # two lanes every epoch
    assert best.tolist() == pytest.approx([0.85, 0.86, 0.95])


def test_trace_refuses_several_studies_and_records_without_compute():
    with pytest.raises(ValueError, match="one study"):
        search_trace(one_by_one() + one_by_one(study="t"))
    old = [dict(r, compute=None) for r in one_by_one()]
    with pytest.raises(ValueError, match="no compute"):
        search_trace(old)


@pytest.fixture
def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def test_progress_plot_a_median_a_band_and_a_legend_with_counts(plt, tmp_path):
    random = one_by_one(search={"strategy": "random"})
    other = [dict(r, val_accuracy=0.97) for r in one_by_one(search={"strategy": "random"})]
    path = tmp_path / "progress.png"
    cheap = [dict(r, compute=r["compute"] / 2) for r in halving()]  # 40 to 90 FLOPs
    figure = plot_search_progress({"random": [random, other], "halving": [cheap]}, path)
    assert path.stat().st_size > 5_000
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "random (2 runs)",
        "halving (1 run)",
    ]
    median, single = ax.get_lines()  # random's median of its 2 runs, halving's one run
    # the median of the two step functions: none yet (#1 diverged), (0.91 + 0.97) / 2, ...
    assert median.get_xdata().tolist() == [200, 600, 800]
    assert median.get_ydata().tolist() == pytest.approx([NAN, 94.0, 96.0], nan_ok=True)
    (band,) = ax.collections  # random's range: 91 to 97 % at 600 FLOPs
    heights = band.get_paths()[0].vertices[:, 1]
    assert {91.0, 97.0} <= set(heights.round(6).tolist())
    assert ax.get_xscale() == "log"  # 40 to 800 FLOPs: more than a decade
    assert "FLOP" in ax.get_xlabel() and "%" in ax.get_ylabel()
    figure = plot_search_progress({"halving": [halving()]})
    assert figure.axes[0].get_xscale() == "linear"  # 80 to 180
    assert figure.axes[0].get_title() == "h: best holdout accuracy against compute"


def twenty_seven():
    """Successive halving of 27 configurations, 1 seed, rungs at epochs 1 and 3 of 9."""
    records = []
    for c in range(27):
        epochs = 9 if c < 3 else 3 if c < 9 else 1
        curve = [0.9 + 0.01 * e - 0.001 * c for e in range(epochs)]
        records.append(rec(c, 0, curve, compute=epochs, study="h", search={"strategy": "halving"}))
    return records


def test_halving_plot_names_the_rungs_and_the_survivors(plt, tmp_path):
    path = tmp_path / "halving.png"
    ax = plot_halving(twenty_seven(), path).axes[0]
    assert path.stat().st_size > 5_000
    assert ax.get_title() == "h: successive halving: 27 → 9 → 3 configurations"
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert [text.split(":")[0] for text in labels[:3]] == ["#1", "#2", "#3"]
    assert labels[3] == "stopped at a rung"
    rungs = [line for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert sorted(line.get_xdata()[0] for line in rungs) == [1, 3]
    ends = sorted(len(line.get_xdata()) for line in ax.get_lines() if line.get_linestyle() == "-")
    assert ends == [0] + [1] * 18 + [3] * 6 + [9] * 3  # the legend's key, then each configuration


def pbt():
    """Three configurations × 2 seeds, 4 epochs: #3 copied #2 after epoch 2 and is best."""
    starts = ((0.1, 0.5), (0.01, 0.2), (0.001, 0.0))
    initial = [{"learning_rate": lr, "dropout": [p]} for lr, p in starts]
    lineage = {2: [{"epoch": 2, "copied_from": 1, "learning_rate": 0.0125, "dropout": [0.16]}]}
    records = []
    for c, final in enumerate((0.90, 0.95, 0.97)):
        search = {"strategy": "pbt", "initial": initial[c], "lineage": lineage.get(c, [])}
        for seed in range(2):
            records.append(rec(c, seed, [0.8, 0.85, 0.9, final], study="p", search=search))
    return records


def test_pbt_plot_steps_each_lane_from_its_lineage(plt, tmp_path):
    path = tmp_path / "pbt.png"
    figure = plot_pbt(pbt(), path)
    assert path.stat().st_size > 5_000
    rate, dropout = figure.axes[:2]
    assert rate.get_yscale() == "log" and dropout.get_yscale() == "linear"
    assert rate.get_ylabel() == "learning rate" and dropout.get_ylabel() == "dropout (layer 1)"
    best = [line for line in rate.get_lines() if line.get_color() == "C3"]
    steps, copies = best
    assert steps.get_xdata().tolist() == [0, 2, 4]
    assert steps.get_ydata().tolist() == [0.001, 0.0125, 0.0125]
    assert copies.get_xdata().tolist() == [2] and copies.get_marker() == "o"
    texts = [t.get_text() for t in figure.legends[0].get_texts()]
    assert texts[0] == "#3: best holdout accuracy at epoch 4 (97.00 %)"
    assert "3 configurations × 2 seeds, 1 copy" in figure.get_suptitle()


def packed(strategy="hyperband", say_first_rung=True):
    """Hyperband with rungs at 1 and 3 epochs in 4 lanes, 1 seed: bracket 1 (first rung at
    1 epoch) starts #1-#3 and keeps #3; bracket 2 (no rung) #4; at epoch 1 bracket 3 (rung
    at 1 again) takes the 2 freed lanes with #5, #6 and keeps #6, the best."""
    lanes = {  # index: (bracket, start, first rung, holdout per epoch)
        0: (0, 0, 1, [0.80]),
        1: (0, 0, 1, [0.70]),
        2: (0, 0, 1, [0.85, 0.90, 0.92]),
        3: (1, 0, 3, [0.60, 0.80, 0.91]),
        4: (2, 1, 1, [0.75]),
        5: (2, 1, 1, [0.88, 0.93, 0.95]),
    }
    records = []
    for c, (bracket, start, first_rung, val) in lanes.items():
        search = {"strategy": strategy, "bracket": bracket, "start": start}
        search |= {"first_rung": first_rung} if say_first_rung else {}
        records.append(rec(c, 0, val, compute=len(val), study="hb", search=search))
    return records


@pytest.mark.parametrize("say_first_rung", [True, False], ids=["recorded", "derived"])
def test_brackets_plot_places_each_lane_and_stacks_the_lanes_training(
    plt, tmp_path, say_first_rung
):
    path = tmp_path / "brackets.png"
    figure = plot_brackets(packed(say_first_rung=say_first_rung), path)
    assert path.stat().st_size > 5_000
    top, bottom = figure.axes
    assert top.get_title() == "hb: hyperband, 3 brackets, 6 configurations, 3 trained all 3 epochs"
    starts = sorted((line.get_xdata()[0], len(line.get_xdata())) for line in top.get_lines())
    assert starts == [(1, 1), (1, 1), (1, 3), (1, 3), (2, 1), (2, 3), (2, 3)]  # #6 twice: best
    (best,) = [line for line in top.get_lines() if line.get_color() == "black"]
    assert best.get_xdata().tolist() == [2, 3, 4] and best.get_ydata()[-1] == pytest.approx(95)
    # the study's epochs 1-4: lanes training per first rung (1 epoch: blue, none: orange)
    heights = {}
    for bar in bottom.patches:
        heights.setdefault(bar.get_facecolor(), []).append(round(bar.get_height()))
    assert sorted(heights.values()) == [[1, 1, 1, 0], [3, 3, 2, 1]]
    texts = [t.get_text() for t in figure.legends[0].get_texts()]
    assert texts[0].startswith("selected: #6 (bracket 3): ") and texts[0].endswith("(95.00 %)")
    assert texts[1:] == [
        "stopped at a rung",
        "2 brackets from a first rung at 1 epoch",
        "1 bracket without a rung (all 3 epochs)",
    ]


def test_save_plots_adds_the_search_plots_of_search_studies_only(plt, tmp_path):
    records = one_by_one("g") + one_by_one("r", {"strategy": "random"}) + halving() + pbt()
    records += packed("bohb")
    names = [p.name for p in save_plots(records, tmp_path, formats=["png"])]
    assert names == [
        "g-accuracy.png", "g-curves.png",
        "r-accuracy.png", "r-curves.png", "r-search.png",
        "h-accuracy.png", "h-curves.png", "h-search.png", "h-halving.png",
        "p-accuracy.png", "p-curves.png", "p-search.png", "p-pbt.png",
        "hb-accuracy.png", "hb-curves.png", "hb-search.png", "hb-brackets.png",
    ]  # fmt: skip
    assert all((tmp_path / name).stat().st_size > 5_000 for name in names)
    assert not plt.get_fignums()  # every figure closed


def write_run(directory, records):
    directory.mkdir()
    (directory / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return directory


def test_compare_prints_the_selected_accuracy_and_compute_per_label(tmp_path, capsys):
    random = {"strategy": "random"}
    one = write_run(tmp_path / "r0", one_by_one("r", random))  # selects #3: 0.95, test 0.94
    best = [rec(0, s, [0.97], test=[0.96], compute=200, study="r", search=random) for s in (0, 1)]
    two = write_run(tmp_path / "r1", best)
    three = write_run(tmp_path / "h0", halving())  # most epochs first: #3, 0.92; 180 FLOPs
    out = tmp_path / "compare.png"
    argv = ["--compare", str(out), f"random={one}", f"halving={three}", f"random={two}"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:2] == ["label", "runs"]
    # holdout (0.95 + 0.97) / 2, test (0.94 + 0.96) / 2, sample std 0.02 / √2; (800 + 400) / 2
    # ... the bootstrap interval of the test mean; the compute to random's median best
    # holdout, 96 %: run 2 reached it at 400 FLOPs, run 1 never (95 %), so the median not
    assert lines[1].split() == [
        "random", "2", "96.00", "±", "1.41", "95.00", "±", "1.41", "94.00-96.00", "600",
        "not", "reached", "(1", "of", "2)",
    ]  # fmt: skip
    assert lines[2].split() == ["halving", "1", "92.00", "92.00", "-", "180", "not", "reached",
                                "(0", "of", "1)"]  # fmt: skip
    written = [tmp_path / f"compare.{kind}" for kind in ("png", "pdf", "svg")]
    assert lines[-3:] == [f"wrote {path}" for path in written]
    assert all(path.stat().st_size > 5_000 for path in written)
    assert math.isclose(100 * 0.02 / math.sqrt(2), 1.41, abs_tol=0.005)


def test_compare_tests_each_label_against_the_first_run_by_run(tmp_path, capsys):
    """Two repeats of two labels on 1,000 test images. Repeat 0: B gets 30 images right that
    A gets wrong and 5 the other way (the binomial test, by hand below); repeat 1: 12
    against 8. B is 2.5 and 0.4 points better, 1.45 on average: more than one standard error
    (0.63 points at A's 95.9 %), but significant in one repeat of two: not significant."""
    from scipy.stats import binom

    def run(name, study, errors):
        records = [rec(0, 0, [0.96], test=[1 - len(errors) / 1000], study=study)]
        directory = write_run(tmp_path / name, records)
        (directory / "models" / study).mkdir(parents=True)
        model = {"test_errors": sorted(errors), "test_images": 1000}
        (directory / "models" / study / "model.json").write_text(json.dumps(model))
        return directory

    common = set(range(500, 520))
    a0, b0 = common | set(range(30)), common | set(range(100, 105))
    a1, b1 = common | set(range(12)), common | set(range(100, 108))
    argv = ["--compare", str(tmp_path / "c.png")]
    argv += [f"a={run('a0', 's', a0)}", f"b={run('b0', 's', b0)}"]
    argv += [f"a={run('a1', 's', a1)}", f"b={run('b1', 's', b1)}"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    p0 = 2 * binom.cdf(5, 35, 0.5)
    p1 = min(1.0, 2 * binom.cdf(8, 20, 0.5))
    assert f"p = {p0:.2g} {p1:.2g}" in out
    assert "b: +1.45 points (mean of 2)" in out and "(0.63 points at 95.90 %)" in out
    assert "better in 1, worse in 0 (p < 0.05): not significant" in out


def test_compare_errors_are_one_line_and_exit_2(tmp_path, capsys):
    run = write_run(tmp_path / "two", one_by_one("a") + one_by_one("b"))
    cases = {
        (f"x={tmp_path / 'missing'}",): "missing/results.jsonl: no such file",
        (str(run),): "expected LABEL=DIR",
        (f"x={run}",): "holds the studies a, b: pick one with --study NAME",
        (f"x={run}", "--study", "c"): "no study c (it holds a, b)",
    }
    for items, message in cases.items():
        assert main(["--compare", str(tmp_path / "c.png"), *items]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert main(["--compare", str(tmp_path / "c.png"), "--study", "b", f"x={run}"]) == 0
    assert main([str(run), str(run)]) == 2  # several directories need --compare
    assert "with LABEL=DIR" in capsys.readouterr().err


def test_exported():
    names = ("search_trace", "plot_search_progress", "plot_halving", "plot_pbt", "plot_brackets")
    for name in names:
        assert name in flaxmnist.report.__all__


def test_a_paired_difference_under_one_standard_error_is_no_difference():
    """Significant by McNemar (60 discordant images, 40 to 20), but 0.02 points on 100,000
    images at 99 %: under one standard error (0.03 points), so no difference."""
    from flaxmnist.report.compare import Run, _paired

    def run(errors):
        return Run(
            [rec(0, 0, [0.99], test=[0.99])], {"test_errors": errors, "test_images": 100_000}
        )

    common = list(range(1000, 1980))
    a = run(common + list(range(40)))
    b = run(common + list(range(100, 120)))
    line = _paired("b", [a], [b])
    assert "b: +0.02 points (mean of 1)" in line and "better in 1" in line
    assert line.endswith(": no difference")
