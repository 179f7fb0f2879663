"""Plots from records: accuracy against the swept hyperparameter, learning curves, and a
heatmap for two-layer grids. matplotlib is imported only when a plot is drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flaxmnist.report.table import format_value, mean_curve, split_by_study, summarize, varied_keys


def _label(config: dict[str, Any], keys: Sequence[str]) -> str:
    return ", ".join(f"{_SHORT.get(k, k)}={format_value(config.get(k))}" for k in keys)


_SHORT = {"learning_rate": "lr", "weight_decay": "wd", "batch_size": "batch"}


def _swept_axis(records: Sequence[dict[str, Any]]) -> tuple[str, Callable[[dict], float]] | None:
    """The one numeric hyperparameter a study sweeps, as (name, value getter), if any."""
    keys = varied_keys(records)
    if len(keys) != 1:
        return None
    key = keys[0]
    values = [r["config"].get(key) for r in records]
    if all(isinstance(v, int | float) for v in values):
        return key, lambda config: float(config[key])
    if all(isinstance(v, list) and len(v) == 1 for v in values):
        return key, lambda config: float(config[key][0])
    return None


def plot_accuracy(records: Sequence[dict[str, Any]], ax=None):
    """Accuracy (mean ± std over seeds) against the swept hyperparameter, on ``ax``.

    Learning rates and widths get a log axis. A study without one numeric swept value
    (hand-picked models, grids) gets one bar per configuration instead. Returns the Axes.

    Example::

        >>> import matplotlib; matplotlib.use("Agg")
        >>> import flaxmnist
        >>> records = flaxmnist.run_sweep("lr", epochs=1, seeds=2, limit_train=400)
        >>> flaxmnist.plot_accuracy(records).get_xscale()
        'log'
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    rows = summarize(records)
    holdout = records[0]["config"].get("validate_on", "holdout") == "holdout"
    series = (
        ("val_mean", "val_std", "holdout" if holdout else "validation (= test)"),
        ("test_mean", "test_std", "test"),
    )
    axis = _swept_axis(records)
    if axis is not None:
        _accuracy_lines(ax, rows, axis, series)
    else:
        _accuracy_bars(ax, rows, varied_keys(records), series)
    ax.set_ylabel("accuracy % (last epoch)")
    ax.set_title(f"{records[0]['study']}: accuracy, mean ± std over {rows[0]['seeds']} seed(s)")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def _accuracy_lines(ax, rows, axis, series) -> None:
    key, value_of = axis
    order = sorted(range(len(rows)), key=lambda i: value_of(rows[i]["config"]))
    x = [value_of(rows[i]["config"]) for i in order]
    for mean, std, label in series:
        ax.errorbar(
            x,
            [100 * rows[i][mean] for i in order],
            yerr=[100 * np.nan_to_num(rows[i][std]) for i in order],
            marker="o",
            capsize=3,
            label=label,
        )
    if key in ("learning_rate", "hidden"):
        ax.set_xscale("log")
    # Keep the interesting range readable: rows at chance or diverged are named below the
    # axis instead of stretching it down to 10 %.
    kept = [100 * r["val_mean"] for r in rows if not (r["at_chance"] or r["diverged"])]
    kept = [v for v in kept if not np.isnan(v)]
    if kept and len(kept) < len(rows):
        ax.set_ylim(max(0.0, min(kept) - 2.0), min(100.0, max(kept) + 1.0))
        dropped = [
            f"{format_value(r['config'][key])}: {100 * r['val_mean']:.1f}%"
            for r in rows
            if r["at_chance"] or r["diverged"]
        ]
        ax.text(
            0.01,
            0.02,
            "off the axis (at chance or diverged): " + ", ".join(dropped),
            transform=ax.transAxes,
            fontsize=7,
        )
    ax.set_xlabel(key.replace("_", " "))


def _accuracy_bars(ax, rows, keys, series) -> None:
    positions = np.arange(len(rows))
    for offset, (mean, std, label) in zip((-0.2, 0.2), series, strict=True):
        ax.bar(
            positions + offset,
            [100 * row[mean] for row in rows],
            width=0.4,
            yerr=[100 * np.nan_to_num(row[std]) for row in rows],
            capsize=2,
            label=label,
        )
    ax.set_xticks(positions, [_label(row["config"], keys) for row in rows], rotation=75, fontsize=7)
    finite = [100 * row["val_mean"] for row in rows if not np.isnan(row["val_mean"])]
    if finite:
        ax.set_ylim(max(0.0, min(finite) - 2.0), 100.0)


def plot_curves(records: Sequence[dict[str, Any]], ax=None):
    """Validation accuracy per epoch (mean over seeds), one line per configuration.

    Example::

        >>> import matplotlib; matplotlib.use("Agg")
        >>> import flaxmnist
        >>> records = flaxmnist.run_sweep("lr", epochs=2, seeds=1, limit_train=400)
        >>> len(flaxmnist.plot_curves(records).get_lines())
        24
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    keys = varied_keys(records)
    by_index: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        by_index.setdefault(record["config_index"], []).append(record)
    axis = _swept_axis(records)
    order = sorted(by_index)
    if axis is not None:  # colour by the swept value, low to high
        order = sorted(order, key=lambda i: axis[1](by_index[i][0]["config"]))
    colours = plt.get_cmap("viridis")(np.linspace(0, 0.95, len(order)))
    for colour, index in zip(colours, order, strict=True):
        group = by_index[index]
        curve = 100 * mean_curve(group)
        ax.plot(
            np.arange(1, len(curve) + 1),
            curve,
            label=_label(group[0]["config"], keys),
            linewidth=1,
            color=colour,
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation accuracy %")
    finals = [c for c in (100 * mean_curve(g)[-1] for g in by_index.values()) if c > 50]
    if finals:
        ax.set_ylim(min(finals) - 3.0, 100.0)
    ax.set_title(f"{records[0]['study']}: learning curves")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, ncol=2 if len(by_index) > 12 else 1)
    return ax


def is_grid_of_two_layers(records: Sequence[dict[str, Any]]) -> bool:
    """Whether ``records`` sweep widths and dropout of two hidden layers (a heatmap fits)."""
    return set(varied_keys(records)) == {"hidden", "dropout"} and all(
        len(r["config"]["hidden"]) == 2 for r in records
    )


def plot_grid(records: Sequence[dict[str, Any]], ax=None):
    """Heatmap of mean validation accuracy: widths (rows) × dropout rates (columns)."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(8, 4.5))
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
    ax.set_title(f"{records[0]['study']}: validation accuracy % (mean over seeds)")
    ax.figure.colorbar(image, ax=ax)
    return ax


def save_plots(records: Sequence[dict[str, Any]], directory: str | Path) -> list[Path]:
    """Save every study's plots as PNG files in ``directory``; returns their paths.

    Example::

        >>> import tempfile, flaxmnist
        >>> records = flaxmnist.run_sweep("lr", epochs=1, seeds=1, limit_train=400)
        >>> [p.name for p in flaxmnist.save_plots(records, tempfile.mkdtemp())]
        ['lr-accuracy.png', 'lr-curves.png']
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for study, study_records in split_by_study(records).items():
        plots = [("accuracy", plot_accuracy), ("curves", plot_curves)]
        if is_grid_of_two_layers(study_records):
            plots.append(("grid", plot_grid))
        for name, plot in plots:
            figure, ax = plt.subplots(figsize=(8, 5))
            plot(study_records, ax=ax)
            figure.tight_layout()
            path = directory / f"{study}-{name}.png"
            figure.savefig(path, dpi=100)
            plt.close(figure)
            paths.append(path)
    return paths
