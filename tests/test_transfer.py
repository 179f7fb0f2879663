"""The answer of a width × learning-rate grid (flaxmnist.report.transfer), on made-up records
whose optima are known."""

import matplotlib
import numpy as np
import pytest

from flaxmnist.report import format_table
from flaxmnist.report.plots import save_plots
from flaxmnist.report.style import covered
from flaxmnist.report.transfer import format_transfer, is_width_by_learning_rate, optima

matplotlib.use("Agg")
RATES = [1e-4, 3e-4, 1e-3, 3e-3, 1e-2]
WIDTHS = [10, 100, 1000]


def accuracy(width_index, rate_index, seed, family):
    """A peak at rate index 3 - width index (standard: it moves one step per width) or at 2
    (mup: it stays), seed 2 of the narrowest standard width one step off."""
    peak = 3 - width_index if family == "standard" else 2
    if family == "standard" and width_index == 0 and seed == 2:
        peak = 4
    return 0.97 - 0.01 * abs(rate_index - peak) - 0.001 * seed + 0.001 * width_index


def records(families=("standard", "mup"), seeds=(0, 1, 2)):
    out, index = [], 0
    for w, width in enumerate(WIDTHS):
        for r, rate in enumerate(RATES):
            for family in families:
                config = {"hidden": [width], "learning_rate": rate, "parameterization": family}
                config |= {"mup_base_width": 100, "epochs": 2, "validate_on": "holdout"}
                for seed in seeds:
                    val = accuracy(w, r, seed, family)
                    history = {"val_accuracy": [val - 0.01, val], "test_accuracy": [val, val]}
                    history |= {k: [0.1, 0.1] for k in ("train_loss", "val_loss", "test_loss")}
                    history["train_accuracy"] = [val, val]
                    record = {"study": "width-lr", "config": config, "config_index": index}
                    record |= {"seed": seed, "history": history, "val_accuracy": val}
                    record |= {"test_accuracy": val, "diverged": False, "at_chance": False}
                    out.append(record)
                index += 1
    return out


def test_the_optima_are_the_peaks_of_the_means_and_of_each_seed():
    found = optima(records())
    standard = [o for o in found if o.family == "parameterization=standard"]
    mup = [o for o in found if o.family == "parameterization=mup"]
    assert [o.width for o in standard] == WIDTHS
    assert [o.rate for o in standard] == [3e-3, 1e-3, 3e-4]
    assert standard[0].seed_rates == (3e-3, 3e-3, 1e-2)
    assert [o.rate for o in mup] == [1e-3] * 3
    assert standard[0].accuracy.shape == (3, len(RATES))


def test_the_text_says_how_far_the_optimum_moves_and_over_how_many_steps():
    text = format_transfer(records())
    assert (
        "parameterization=standard: the best learning rate moves by a factor 0.1 from width 10 "
        "to 1000 (each seed: 0.03 to 0.1); the optima of all widths span 2 grid steps (x3.16 each)"
    ) in text
    assert "parameterization=mup: the best learning rate moves by a factor 1 " in text
    assert "span 0 grid steps" in text
    assert text in format_table(records())  # printed under the study's table
    # Trained at the base width's (100's) best rate, 1e-3, width 10 loses one step's point.
    rows = {tuple(line.split()[:2]): line for line in text.splitlines()[2:8]}
    assert rows[("parameterization=standard", "10")].endswith("1.00 (at 0.001)")
    assert rows[("parameterization=mup", "1000")].endswith("0.00 (at 0.001)")
    assert "lost at M = 100's best lr" in text.splitlines()[1]


def test_a_diverged_lane_is_never_a_best_learning_rate():
    rows = records(families=("standard",))
    for row in rows:
        if row["config"]["learning_rate"] == 1e-2:
            row["val_accuracy"], row["diverged"] = None, True
    assert all(o.rate != 1e-2 for o in optima(rows))
    assert optima(rows)[0].seed_rates == (3e-3, 3e-3, 3e-3)


@pytest.mark.parametrize(
    "change",
    [
        lambda c: c.update(hidden=[c["hidden"][0], 5]),  # two hidden layers
        lambda c: c.update(dropout=[0.1] if c["learning_rate"] == 1e-3 else [0.0]),
    ],
)
def test_only_a_width_by_learning_rate_grid_gets_the_answer(change):
    rows = records()
    assert is_width_by_learning_rate(rows)
    for row in rows:
        change(row["config"])
    assert not is_width_by_learning_rate(rows)
    assert format_transfer(rows) == ""
    narrow = [r for r in records() if r["config"]["hidden"] == [10]]
    assert not is_width_by_learning_rate(narrow)  # one width: nothing moves


def test_the_figure_has_a_row_per_family_and_its_legends_cover_nothing(tmp_path):
    paths = save_plots(records(), tmp_path, formats=["png"])
    assert tmp_path / "width-lr-transfer.png" in paths
    import matplotlib.pyplot as plt

    from flaxmnist.report.plots import _plot_transfer
    from flaxmnist.report.style import styled

    with styled():
        axes = _plot_transfer(records(), description="test")
        axes[0][0].figure.canvas.draw()
        assert axes.shape == (2, 2)
        assert axes[1][0].get_title(loc="left") == "parameterization = mup"
        lines = [line for line in axes[1][1].get_lines() if line.get_linestyle() == ":"]
        assert [line.get_xdata()[0] for line in lines] == [100]  # the base width
        for ax in np.ravel(axes):
            assert covered(ax, ax.get_legend()) == 0
        plt.close(axes[0][0].figure)
