"""Pictures of searches (records' ``compute``, ``history``, ``search``): best holdout accuracy
against compute, halving's survivors per rung, PBT's hyperparameters over time (Hyperband's
brackets: ``brackets``; which a run gets: ``plots.save_search_plots``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flaxmnist.report.curves import label
from flaxmnist.report.style import (
    PNG_DPI,
    note_under,
    place_legend,
)
from flaxmnist.report.table import varied_keys
from flaxmnist.run.records import best_config, selection_key
from flaxmnist.search.base import Strategy
from flaxmnist.search.registry import STRATEGIES
from flaxmnist.search.trials import by_config

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Records = Sequence[dict[str, Any]]
#: A zoomed y axis keeps the values down to the first gap of this many points (as the curves).
GAP_POINTS = 10.0
#: How the plots draw PBT's best configuration and the others, halving's stopped ones.
BEST, OTHER = {"color": "C3", "lw": 2.4, "zorder": 3}, {"color": "0.55", "lw": 0.9}
STOPPED = {"color": "0.6", "lw": 0.8, "marker": "o", "ms": 2.5}


def search_strategy(records: Records) -> str:
    """The strategy that searched the study of ``records``: ``"grid"`` without ``search``."""
    return records[0].get("search", {}).get("strategy", "grid")


def strategy_class(records: Records) -> type[Strategy]:
    """The class of the strategy that searched ``records`` (what it says of itself); a
    strategy this flaxmnist does not know draws as the base class says (no figure of its
    own, a point per configuration)."""
    return STRATEGIES.get(search_strategy(records), Strategy)


def mean_val_curve(group: Records) -> np.ndarray:
    """Mean over seeds of the validation accuracy per epoch (NaN where a seed has none)."""
    lanes = [[np.nan if v is None else v for v in r["history"]["val_accuracy"]] for r in group]
    return np.mean(np.array(lanes, dtype=np.float64), axis=0)


def _compute(record: dict[str, Any]) -> float:
    if record.get("compute") is None:
        where = f"study {record['study']}, #{record['config_index'] + 1}, seed {record['seed']}"
        raise ValueError(f"{where}: its record has no compute (written before it was counted)")
    return float(record["compute"])


def search_trace(records: Records) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative training FLOPs spent (every seed) and the best validation accuracy so far
    (a fraction; NaN until a configuration has a value), for one study's ``records``.

    Grid, random and quasi-random studies train their configurations one after another:
    a point per configuration in index order, the best the highest mean over seeds of a
    configuration's last-epoch accuracy (``records.selection_key``). Halving, PBT and
    Hyperband train in lockstep: a point per epoch ``e`` of the study, a lane that started at
    the study's epoch ``s`` (``search.start``: Hyperband's refilled lanes; else 0) having
    spent ``compute / epochs_trained * clip(e - s, 0, epochs_trained)``, the best the highest
    mean over seeds at any of its epochs up to ``e - s``.

    Raises:
      ValueError: no records, several studies, or a record without ``compute``.
    """
    if len({r["study"] for r in records}) != 1:
        raise ValueError("search_trace: expected the records of one study")
    groups = by_config(records)
    if not strategy_class(records).lockstep:
        spent = np.cumsum([sum(_compute(r) for r in group) for group in groups.values()])
        means = np.array([selection_key(c, group)[1] for c, group in groups.items()])
        return spent, np.fmax.accumulate(np.where(means < 0, np.nan, means))
    trained = [len(r["history"]["val_accuracy"]) for r in records]
    starts = [r.get("search", {}).get("start", 0) for r in records]
    steps = np.arange(1, max(s + n for s, n in zip(starts, trained, strict=True)) + 1)
    spent = sum(
        _compute(r) / n * np.clip(steps - s, 0, n)
        for r, n, s in zip(records, trained, starts, strict=True)
    )
    best = np.full(len(steps), np.nan)
    for group in groups.values():
        start, mean = group[0].get("search", {}).get("start", 0), mean_val_curve(group)
        curve = np.full(len(steps), np.nan)
        curve[start : start + len(mean)] = mean
        best = np.fmax(best, np.fmax.accumulate(curve))
    return spent, best


def _median_band(lines: Sequence[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    """The lowest, median and highest of step functions on the union of their points, where
    all are defined: ``(x, low, median, high)``."""
    start, end = max(x[0] for x, _ in lines), min(x[-1] for x, _ in lines)
    grid = np.unique(np.concatenate([x[(x >= start) & (x <= end)] for x, _ in lines]))
    values = np.array([y[np.searchsorted(x, grid, side="right") - 1] for x, y in lines])
    return grid, *np.quantile(values, [0.0, 0.5, 1.0], axis=0)  # undefined where a run is


def selecting_split(records: Records) -> str:
    """The split that selects in ``records``: ``"holdout"`` or ``"test"``."""
    return "holdout" if records[0]["config"].get("validate_on", "holdout") == "holdout" else "test"


def zoom_limits(values: np.ndarray) -> tuple[float, float]:
    """y limits (%) that keep ``values`` from the highest down to the first gap of more than
    ``GAP_POINTS`` between them: a run at chance would squeeze the rest into one line."""
    values = np.sort(values[np.isfinite(values)])[::-1]
    if not values.size:
        return 0.0, 100.0
    gaps = np.flatnonzero(-np.diff(values) > GAP_POINTS)
    low, high = values[gaps[0]] if gaps.size else values[-1], values[0]
    pad = max(0.3, 0.05 * (high - low))
    return max(0.0, low - pad), min(100.0, high + pad)


def zoom_to_curves(ax: Axes, curves: Sequence[np.ndarray]) -> None:
    """The y limits of ``zoom_limits`` for ``curves`` (%), and a note under the axes of how
    many curves have values below them."""
    ax.set_ylim(*zoom_limits(np.concatenate(curves)))
    below = sum(np.nanmin(curve) < ax.get_ylim()[0] for curve in curves)
    if below:
        many = f"{below} configurations have" if below > 1 else "1 configuration has"
        note_under(ax, f"{many} values below the axis")


def save_at(figure: Figure, path: str | Path | None) -> Figure:
    """``figure``, saved first to ``path`` (its format by its suffix) when given."""
    if path is not None:
        figure.savefig(path, dpi=PNG_DPI, bbox_inches="tight")
    return figure


def _compute_axis(ax: Axes, x: np.ndarray) -> None:
    """Log when ``x`` spans more than a decade (ticks at 1, 2, 5 × 10ⁿ up to three), and
    ticks such as ``20 TFLOP``."""
    from matplotlib.ticker import EngFormatter, LogLocator, NullFormatter

    if x.size and x.max() > 10 * x.min():
        ax.set_xscale("log")
        if x.max() < 1000 * x.min():
            ax.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.xaxis.set_major_formatter(EngFormatter(unit="FLOP"))


def plot_search_progress(
    traces: Mapping[str, Sequence[Records]], path: str | Path | None = None, *, title: str = ""
) -> Figure:
    """Best holdout accuracy so far (%) against the training compute spent, per run.

    ``traces`` maps a label (a strategy) to its runs, each the records of one study
    (``search_trace``). One colour per label; a label with several runs draws their median
    and, shaded, their range (step functions, where all runs are defined). The x axis is
    logarithmic when it spans more than a decade. Saved to ``path`` when given (PNG); returns
    the Figure (close it with ``plt.close``).
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    figure, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    handles, drawn = [], []
    many = any(len(runs) > 1 for runs in traces.values())
    for number, (name, runs) in enumerate(traces.items()):
        colour = f"C{number % 10}"
        lines = [search_trace(run) for run in runs]
        drawn += lines
        if len(lines) > 1:
            x, low, median, high = _median_band(lines)
            ax.fill_between(x, 100 * low, 100 * high, step="post", color=colour, alpha=0.18)
            ax.plot(x, 100 * median, drawstyle="steps-post", color=colour, linewidth=2.6)
        else:
            look = {"lw": 2.6 if many else 2} | ({} if many else {"marker": "o", "ms": 3.5})
            x, y = lines[0]
            ax.plot(x, 100 * y, drawstyle="steps-post", color=colour, **look)
        count = f"{len(runs)} run{'s' if len(runs) != 1 else ''}"
        handles.append(Line2D([], [], color=colour, linewidth=2.6, label=f"{name} ({count})"))
    x, y = np.concatenate([x for x, _ in drawn]), 100 * np.concatenate([y for _, y in drawn])
    _compute_axis(ax, x[x > 0])
    ax.set_ylim(*zoom_limits(y))
    if np.nanmin(y) < ax.get_ylim()[0]:
        note_under(ax, "lower values (early in a run) are below the axis")
    split = selecting_split(next(iter(traces.values()))[0])
    ax.set_xlabel("training compute spent (FLOP, all seeds)")
    ax.set_ylabel(f"best {split} accuracy so far (%)")
    ax.grid(alpha=0.3, which="both")
    legend_title = "line: median of a label's runs; band: their range" if many else None
    studies = {run[0]["study"] for runs in traces.values() for run in runs}
    heading = f"{studies.pop()}: " if len(studies) == 1 else "search strategies: "
    ax.set_title(title or f"{heading}best {split} accuracy against compute")
    place_legend(ax, handles=handles, title=legend_title)  # last: the layout is final
    return save_at(figure, path)


def _epoch_axis(ax: Axes, first: int, epochs: int) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlim(first - 0.3 if epochs - first < 12 else first, epochs + 0.3)


def plot_halving(records: Records, path: str | Path | None = None) -> Figure:
    """Which configurations survived each rung of successive halving: mean holdout accuracy
    over seeds (%) per epoch, a line per configuration ending where it stopped, the last
    rung's survivors in colour (``#index`` in the legend), the stopped ones grey, dotted
    lines at the rungs. Saved to ``path`` when given; returns the Figure."""
    import matplotlib.pyplot as plt

    groups = by_config(records)
    curves = {c: 100 * mean_val_curve(group) for c, group in groups.items()}
    epochs = max(len(curve) for curve in curves.values())
    rungs = sorted({len(curve) for curve in curves.values() if len(curve) < epochs})
    counts = [len(curves)] + [sum(len(c) > rung for c in curves.values()) for rung in rungs]
    survivors = [c for c, curve in curves.items() if len(curve) == epochs]
    survivors.sort(key=lambda c: -curves[c][-1])
    figure, ax = plt.subplots(figsize=(9, 5.5), layout="constrained")
    for c, curve in curves.items():
        if c not in survivors:  # grey, a dot where it stopped
            ax.plot(range(1, len(curve) + 1), curve, markevery=[-1], **STOPPED)
    keys = varied_keys(records)
    for number, c in enumerate(survivors):
        text = f"#{c + 1}: {label(groups[c][0]['config'], keys)} ({curves[c][-1]:.2f} %)"
        ax.plot(
            np.arange(1, epochs + 1),
            curves[c],
            lw=2.2,
            color=f"C{number % 10}",
            marker="o" if epochs <= 12 else None,
            ms=4,
            label=text,
            zorder=3,
        )
    for number, (rung, left) in enumerate(zip(rungs, counts[1:], strict=True)):
        ax.axvline(rung, color="0.25", linestyle=":", linewidth=1.2)
        ax.annotate(
            f"{left} go on",
            (rung, 1.0),
            xycoords=("data", "axes fraction"),
            va="top",
            xytext=(3, -3 - 11 * (number % 2)),
            textcoords="offset points",
            fontsize=8,
        )
    ax.plot([], [], label="stopped at a rung", **STOPPED)
    zoom_to_curves(ax, list(curves.values()))
    _epoch_axis(ax, 1, epochs)
    ax.set_xlabel("epoch (dotted: a rung, where the worse configurations stopped)")
    seeds = min(len(group) for group in groups.values())
    ax.set_ylabel(f"{selecting_split(records)} accuracy %, mean of {seeds} seed{'s' * (seeds > 1)}")
    ax.grid(alpha=0.3)
    ax.legend(
        loc="upper left",
        bbox_to_anchor=(0.0, -0.16),
        frameon=False,
        title="the last rung's survivors",
        alignment="left",
    )
    chain = " → ".join(map(str, counts))
    ax.set_title(f"{records[0]['study']}: successive halving: {chain} configurations")
    return save_at(figure, path)


def _first(value: Any) -> Any:
    return value[0] if isinstance(value, list) and value else value


def _lane_steps(record: dict[str, Any], key: str, epochs: int) -> tuple[list, list, list, list]:
    """Epochs and values of ``key`` (first layer's) from ``search.initial`` through each
    lineage event to ``epochs``, and the (epoch, value) of the copies."""
    xs, ys = [0], [_first(record["search"]["initial"][key])]
    copies_x, copies_y = [], []
    for event in sorted(record["search"].get("lineage", []), key=lambda e: e["epoch"]):
        if key in event:
            xs.append(event["epoch"])
            ys.append(_first(event[key]))
        copies_x.append(event["epoch"])
        copies_y.append(ys[-1])
    return [*xs, epochs], [*ys, ys[-1]], copies_x, copies_y


def _pbt_panel(ax: Axes, key: str, lanes: dict[int, dict[str, Any]], best: int, epochs: int):
    steps = {c: _lane_steps(record, key, epochs) for c, record in lanes.items()}
    values = [y for _, ys, _, _ in steps.values() for y in ys]
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)
    names = sorted({str(v) for v in values})
    for c, (xs, ys, cx, cy) in sorted(steps.items(), key=lambda item: item[0] == best):
        if not numeric:
            ys, cy = [names.index(str(y)) for y in ys], [names.index(str(y)) for y in cy]
        look = BEST if c == best else OTHER
        ax.plot(xs, ys, drawstyle="steps-post", alpha=1.0 if c == best else 0.6, **look)
        ax.plot(cx, cy, linestyle="none", marker="o", ms=4 if c == best else 3, **look)
    if not numeric:
        ax.set_yticks(range(len(names)), names)
    elif key == "learning_rate" or (min(values) > 0 and max(values) > 10 * min(values)):
        ax.set_yscale("log")
    layered = isinstance(next(iter(lanes.values()))["search"]["initial"][key], list)
    ax.set_ylabel(key.replace("_", " ") + (" (layer 1)" if layered else ""))
    ax.grid(alpha=0.3)


def plot_pbt(records: Records, path: str | Path | None = None) -> Figure:
    """Each PBT lane's hyperparameters over the epochs: a panel per searched key (a per-layer
    key's first layer; the learning rate on a log axis), a step line per configuration from
    ``search.initial`` through ``search.lineage`` (a dot: a copy), the configuration best on
    the holdout at the end highlighted. Saved to ``path`` when given; returns the Figure."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    groups = by_config(records)
    lanes = {c: group[0] for c, group in groups.items()}  # the seeds share the lineage
    keys = list(next(iter(lanes.values()))["search"]["initial"])
    epochs = max(len(r["history"]["val_accuracy"]) for r in records)
    seeds = min(len(group) for group in groups.values())
    best = best_config(records, seeds)
    figure, axes = plt.subplots(
        len(keys),
        1,
        figsize=(9, 1.4 + 2.3 * len(keys)),
        sharex=True,
        squeeze=False,
        layout="constrained",
    )
    for ax, key in zip(axes[:, 0], keys, strict=True):
        _pbt_panel(ax, key, lanes, best, epochs)
    _epoch_axis(axes[-1, 0], 0, epochs)
    axes[-1, 0].set_xlabel("epochs trained (a value holds from its step on)")
    score, split = 100 * mean_val_curve(groups[best])[-1], selecting_split(records)
    handles = [
        Line2D(
            [],
            [],
            **BEST,
            label=f"#{best + 1}: best {split} accuracy at epoch {epochs} ({score:.2f} %)",
        ),
        Line2D([], [], **OTHER, label="the other configurations"),
        Line2D(
            [],
            [],
            color="0.3",
            ls="none",
            marker="o",
            ms=4,
            label="copied a better lane's weights, then new values",
        ),
    ]
    figure.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False)
    copies = sum(len(r["search"].get("lineage", [])) for r in lanes.values())
    figure.suptitle(
        f"{records[0]['study']}: PBT, each configuration's hyperparameters over time\n"
        f"{len(lanes)} configurations × {seeds} seed{'s' * (seeds > 1)}, "
        f"{copies} cop{'ies' if copies != 1 else 'y'}"
    )
    return save_at(figure, path)
