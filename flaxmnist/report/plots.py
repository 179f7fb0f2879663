"""Plots from records: accuracy against the swept hyperparameter, learning curves, a
heatmap for two-layer grids, and for a width × learning-rate grid the best learning rate
against width (``transfer``). matplotlib is imported only when a plot is drawn.

Every plot names the split that selects (``holdout`` or ``test``), its study's description
when known, what ran (the records' epochs, which the description may not match), and
whatever its zoomed y axis leaves out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flaxmnist.report.brackets import plot_brackets
from flaxmnist.report.curves import (
    LABEL_MAX,
    band_text,
    collect,
    draw_curves,
    label,
    note,
    panel_axes,
    panels,
    swept_axis,
    unique_legend,
    y_range,
)
from flaxmnist.report.pareto import plot_pareto
from flaxmnist.report.search import (
    plot_halving,
    plot_pbt,
    plot_search_progress,
    search_strategy,
    strategy_class,
)
from flaxmnist.report.style import FORMATS, note_under, place_legend, save_figure, styled
from flaxmnist.report.table import (
    split_by_study,
    study_description,
    summarize,
    varied_keys,
    what_ran,
)
from flaxmnist.report.transfer import is_width_by_learning_rate, plot_transfer
from flaxmnist.search.trials import objectives_of

if TYPE_CHECKING:
    from matplotlib.axes import Axes


def _holdout(records: Sequence[dict[str, Any]]) -> bool:
    return records[0]["config"].get("validate_on", "holdout") == "holdout"


def _split_name(records: Sequence[dict[str, Any]]) -> str:
    """The y label of the selecting split's accuracy."""
    return "holdout accuracy %" if _holdout(records) else "test accuracy % (selects)"


def _heading(records: Sequence[dict[str, Any]], what: str, description: str | None) -> str:
    """The title: study and plot, the spec's description, and what the records ran."""
    if description is None:
        description = study_description(records[0]["study"], records)
    lines = [f"{records[0]['study']}: {what}", description, f"ran: {what_ran(records)}"]
    return "\n".join(line for line in lines if line)


def plot_accuracy(
    records: Sequence[dict[str, Any]], ax: Axes | None = None, *, description: str | None = None
) -> Axes:
    """Accuracy after the last epoch (mean ± std over seeds) against the swept value, on ``ax``.

    Holdout and test accuracy for a holdout run; the test accuracy alone when the test set
    selected (``validate_on="test"``). Learning rates and widths get a log axis. A study
    without one numeric swept value (hand-picked models, grids) gets a column per
    configuration instead, each series a point with error bars. The y axis is fitted to the
    means ± stds; rows at chance or diverged are left off it and named under it.
    ``description`` as in ``plot_curves``. Returns the Axes.

    Example::

        >>> import matplotlib; matplotlib.use("Agg")
        >>> import flaxmnist
        >>> records = flaxmnist.run_sweep("lr", epochs=1, seeds=2, limit_train=400)
        >>> ax = flaxmnist.plot_accuracy(records)
        >>> ax.get_xscale(), [t.get_text() for t in ax.get_legend().get_texts()]
        ('log', ['holdout', 'test'])
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    rows = summarize(records)
    series = [("val_mean", "val_std", "holdout"), ("test_mean", "test_std", "test")]
    if not _holdout(records):
        series = [("val_mean", "val_std", "test (selects)")]
    axis = swept_axis(records)
    if axis is not None:
        _accuracy_lines(ax, rows, axis, series)
    else:
        _accuracy_points(ax, rows, varied_keys(records), series)
    trained = {len(record["history"]["val_accuracy"]) for record in records}
    low, high = min(trained), max(trained)
    after = f"epoch {low}" if low == high else f"its last epoch ({low}–{high})"
    ax.set_ylabel(f"accuracy % after {after}")
    seeds = rows[0]["seeds"]
    spread = f"mean ± std over {seeds} seeds" if seeds > 1 else "1 seed"
    ax.set_title(_heading(records, f"accuracy, {spread}", description))
    ax.grid(alpha=0.3)
    place_legend(ax)
    return ax


def _accuracy_lines(ax: Axes, rows, axis, series) -> None:
    key, value_of = axis
    order = sorted(range(len(rows)), key=lambda i: value_of(rows[i]["config"]))
    x = [value_of(rows[i]["config"]) for i in order]
    for mean, std, name in series:
        ax.errorbar(
            x,
            [100 * rows[i][mean] for i in order],
            yerr=[100 * np.nan_to_num(rows[i][std]) for i in order],
            marker="o",
            capsize=3,
            label=name,
        )
    if key in ("learning_rate", "hidden"):
        ax.set_xscale("log")
    # Keep the interesting range readable: rows at chance or diverged are named under the
    # axis instead of stretching it down to 10 %.
    _fit_y(ax, rows, series, [label(row["config"], [key]) for row in rows])
    ax.set_xlabel(key.replace("_", " "))


def _row_state(row: dict[str, Any]) -> str:
    parts = ["no value" if np.isnan(row["val_mean"]) else f"{100 * row['val_mean']:.1f}%"]
    parts += [
        f"{key.replace('_', ' ')} {row[key]}/{row['seeds']}"
        for key in ("diverged", "at_chance")
        if row[key]
    ]
    return ", ".join(parts)


def _accuracy_points(ax: Axes, rows, keys, series) -> None:
    """One column per configuration: each series' mean ± std as a point with error bars,
    side by side, on a y axis fitted to them (``_fit_y``); never bars from a floor."""
    positions = np.arange(len(rows), dtype=np.float64)
    width = 0.3 if len(series) > 1 else 0.0
    for number, (mean, std, name) in enumerate(series):
        ax.errorbar(
            positions + (number - (len(series) - 1) / 2) * width,
            [100 * row[mean] for row in rows],
            yerr=[100 * np.nan_to_num(row[std]) for row in rows],
            marker="o",
            markersize=4,
            linestyle="none",
            capsize=3,
            label=name,
        )
    names = [f"#{row['config_index'] + 1}: {label(row['config'], keys)}" for row in rows]
    numbers = [f"#{row['config_index'] + 1}" for row in rows]
    if max(len(n) for n in names) > LABEL_MAX:  # too long to read: numbers, as in the table
        ax.set_xlabel("configuration (numbered as in the table and summary.csv)")
        shown = numbers
    else:
        shown = names
    # Rotated as little as the labels allow: level, slanted, or upright when crowded.
    crowd = max(len(n) for n in shown) * len(rows)
    rotation = 0 if crowd <= 90 else 30 if len(rows) <= 8 else 90
    ax.set_xticks(positions, shown, rotation=rotation, ha="right" if rotation == 30 else "center")
    ax.tick_params(axis="x", labelsize=6 if len(rows) > 12 else 8)
    ax.set_xlim(-0.6, len(rows) - 0.4)
    _fit_y(ax, rows, series, numbers if shown is numbers else names)


def _fit_y(ax: Axes, rows, series, names: Sequence[str]) -> None:
    """The y axis from the lowest mean − std to the highest mean + std of the rows with a
    value, neither at chance nor diverged, with a margin; the others are named under it."""
    bad = [r["at_chance"] or r["diverged"] or np.isnan(r["val_mean"]) for r in rows]
    ends = [
        100 * (row[m] + sign * np.nan_to_num(row[d]))
        for row, out in zip(rows, bad, strict=True)
        if not out
        for m, d, _ in series
        for sign in (-1, 1)
        if np.isfinite(row[m])
    ]
    if ends:
        low, high = min(ends), max(ends)
        margin = max(0.1, 0.08 * (high - low))
        ax.set_ylim(max(0.0, low - margin), min(100.0, high + margin))
    dropped = [f"{n} ({_row_state(r)})" for n, r, out in zip(names, rows, bad, strict=True) if out]
    if dropped:
        note_under(ax, note(dropped, len(rows)))


def plot_curves(
    records: Sequence[dict[str, Any]], ax: Axes | None = None, *, description: str | None = None
) -> Axes | np.ndarray:
    """Accuracy per epoch on the selecting split: mean over seeds, band from min to max.

    One curve per distinct configuration (one the study lists twice is drawn once), told
    apart by colour, line style and, up to 12 epochs, a marker; one epoch gives a point per
    configuration, spread sideways. The y axis zooms on the best curves (down to the first
    gap of 10 points between final accuracies); the curves it leaves out are named under
    the plot ("off the axis: lr=1 (diverged)"). Into ``ax`` goes every curve; without
    ``ax`` a figure is made, split into panels when more than 8 configurations have more
    than one epoch, each panel's y axis zoomed on its own curves (the figure grows with the
    tallest legend). ``description`` (default: the packaged study's, see
    ``study_description``; ``""`` for none) goes under the title, and what ran under it.

    Returns ``ax`` (or the new Axes), or with several panels an array of them.

    Example::

        >>> import matplotlib; matplotlib.use("Agg")
        >>> import flaxmnist
        >>> records = flaxmnist.run_sweep("lr", epochs=2, seeds=2, limit_train=400)
        >>> axes = flaxmnist.plot_curves(records)  # 22 distinct learning rates: 4 panels
        >>> len(axes), axes[0].get_ylabel(), axes[0].get_xticks().tolist()
        (4, 'holdout accuracy %', [1, 2])
        >>> import matplotlib.pyplot as plt
        >>> ax = flaxmnist.plot_curves(records, ax=plt.figure().gca())
        >>> len(ax.get_legend().get_texts())
        22
    """
    axis = swept_axis(records)
    curves = collect(records, axis[1] if axis is not None else None)
    epochs = max(len(curve.mean) for curve in curves)
    # One epoch gives one point per configuration: they fit one panel, spread sideways.
    groups = panels(curves, records, split=ax is None and epochs > 1)
    axes = [ax] if ax is not None else panel_axes([len(group) for _, _, group in groups])
    seeds = max(curve.seeds for curve in curves)
    for panel, (title, keys, group) in zip(axes, groups, strict=True):
        draw_curves(panel, group, keys, epochs, y_range(group))
        panel.legend(
            *unique_legend(panel),
            title=band_text(seeds, epochs),
            loc="upper left",
            bbox_to_anchor=(1.02, 1.0),
            frameon=False,
            alignment="left",
        )
        panel.set_title(title)
        if panel.get_subplotspec() is None or panel.get_subplotspec().is_first_col():
            panel.set_ylabel(_split_name(records))
    heading = _heading(records, "learning curves", description)
    if len(axes) > 1:
        axes[0].figure.suptitle(heading)
        return np.array(axes)
    axes[0].set_title(heading)
    return axes[0]


def is_grid_of_two_layers(records: Sequence[dict[str, Any]]) -> bool:
    """Whether ``records`` sweep widths and dropout of two hidden layers (a heatmap fits)."""
    return set(varied_keys(records)) == {"hidden", "dropout"} and all(
        len(r["config"]["hidden"]) == 2 for r in records
    )


def plot_grid(
    records: Sequence[dict[str, Any]], ax: Axes | None = None, *, description: str | None = None
) -> Axes:
    """Heatmap of the selecting split's mean accuracy: widths (rows) × dropout (columns)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    rows = summarize(records)
    widths = sorted({tuple(r["config"]["hidden"]) for r in rows})
    rates = sorted({tuple(r["config"]["dropout"]) for r in rows})
    grid = np.full((len(widths), len(rates)), np.nan)
    for row in rows:
        i = widths.index(tuple(row["config"]["hidden"]))
        j = rates.index(tuple(row["config"]["dropout"]))
        grid[i, j] = 100 * row["val_mean"]
    image = ax.imshow(grid, cmap="viridis", aspect="auto")
    for i in range(len(widths)):
        for j in range(len(rates)):
            ax.text(
                j,
                i,
                f"{grid[i, j]:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if grid[i, j] < np.nanmean(grid) else "black",
            )
    ax.set_yticks(range(len(widths)), ["-".join(map(str, w)) for w in widths])
    ax.set_xticks(
        range(len(rates)), ["/".join(f"{r:g}" for r in rate) for rate in rates], rotation=45
    )
    ax.set_ylabel("hidden widths M-N")
    ax.set_xlabel("dropout p1/p2")
    seeds = rows[0]["seeds"]
    what = f"{_split_name(records)}, mean over {seeds} seed{'s' if seeds > 1 else ''}"
    ax.set_title(_heading(records, what, description))
    ax.figure.colorbar(image, ax=ax)
    return ax


def _plot_transfer(records: Sequence[dict[str, Any]], *, description: str | None) -> np.ndarray:
    heading = "does the best learning rate move with width?"
    return plot_transfer(records, _heading(records, heading, description), _split_name(records))


def save_plots(
    records: Sequence[dict[str, Any]],
    directory: str | Path,
    descriptions: Mapping[str, str] | None = None,
    formats: Sequence[str] = FORMATS,
) -> list[Path]:
    """Save every study's plots in ``directory``, each as a file of every one of ``formats``
    (``style.save_figure``: PNG, PDF and SVG), in the report's look (``style.styled``);
    returns their paths. A study searched by a strategy gets ``save_search_plots``'s too.

    ``descriptions`` maps study names to the descriptions shown under the titles (default:
    the packaged studies', see ``study_description``).

    Example::

        >>> import tempfile, flaxmnist
        >>> records = flaxmnist.run_sweep("lr", epochs=1, seeds=1, limit_train=400)
        >>> [p.name for p in flaxmnist.save_plots(records, tempfile.mkdtemp(), formats=["png"])]
        ['lr-accuracy.png', 'lr-curves.png']
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for study, study_records in split_by_study(records).items():
        description = study_description(study, study_records, descriptions)
        plots = [("accuracy", plot_accuracy), ("curves", plot_curves)]
        if is_grid_of_two_layers(study_records):
            plots.append(("grid", plot_grid))
        if is_width_by_learning_rate(study_records):
            plots.append(("transfer", _plot_transfer))
        for name, plot in plots:
            with styled():
                figure = np.ravel(plot(study_records, description=description))[0].figure
                paths += save_figure(figure, directory / f"{study}-{name}", formats)
            plt.close(figure)
        paths += save_search_plots(study_records, directory, formats)  # none for a grid study
    return paths


#: The report's figures a strategy may name as its own (``Strategy.figure``).
FIGURES = {"halving": plot_halving, "pbt": plot_pbt, "brackets": plot_brackets}


def save_search_plots(
    records: Sequence[dict[str, Any]], directory: str | Path, formats: Sequence[str] = FORMATS
) -> list[Path]:
    """For one study searched by a strategy other than the grid, ``<study>-search``
    (``plot_search_progress``), and its strategy's own figure (``<study>-halving``, ``-pbt``
    or ``-brackets``: ``FIGURES``) and ``-pareto`` (two objectives) where they apply, in
    ``directory``, each in every one of ``formats`` (``style.save_figure``), in the report's
    look; returns their paths."""
    import matplotlib.pyplot as plt

    kind, strategy = search_strategy(records), strategy_class(records)
    plots = {"search": lambda r, p: plot_search_progress({kind: [r]}, p)}
    plots |= {strategy.figure: FIGURES[strategy.figure]} if strategy.figure else {}
    plots |= {"pareto": plot_pareto} if len(objectives_of(records)) > 1 else {}
    paths = []
    for name, plot in plots.items() if strategy.searches else ():
        with styled():
            figure = plot(records, None)
            paths += save_figure(figure, Path(directory) / f"{records[0]['study']}-{name}", formats)
        plt.close(figure)
    return paths
