"""The pieces of the learning-curves plot: one curve per distinct configuration (mean over
seeds with a min-max band), panels for many configurations, the zoomed y range and the
names of the curves it leaves out. ``plots.plot_curves`` puts them together.
"""

from __future__ import annotations

import textwrap
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from flaxmnist.report.style import note_under
from flaxmnist.report.table import format_value, varied_keys

if TYPE_CHECKING:
    from matplotlib.axes import Axes

#: Up to this many curves share one panel; more are split into panels (small multiples).
PANEL_MAX = 8
#: Curves per panel once split.
PANEL_SIZE = 6
#: With this many epochs or fewer, every epoch gets a marker and its own tick.
MARKER_EPOCHS = 12
#: Inches a legend entry takes (8 pt text; measured 0.17): a panel grows with its legend.
LEGEND_LINE = 0.18
#: The zoomed y axis keeps the best curves down to the first gap of this many points between
#: final accuracies; the curves below it are left off (and named).
GAP_POINTS = 10.0
BAND = "band: min–max over seeds"
COLOURS = [f"C{i}" for i in range(10)]
STYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">")
#: A configuration's label longer than this is shown as its number (``#7``, as in the table).
LABEL_MAX = 48
SHORT = {"learning_rate": "lr", "weight_decay": "wd", "batch_size": "batch"}


@dataclass
class Curve:
    """One distinct configuration's per-epoch accuracy in %, over its seeds."""

    config: dict[str, Any]
    mean: np.ndarray  # NaN where no seed has a value (diverged)
    low: np.ndarray
    high: np.ndarray
    seeds: int
    diverged: int
    at_chance: int
    repeats: int  # configurations of the study with this very config, drawn once
    index: int = 0  # its first configuration's index (``#index + 1`` in the table)


def label(config: dict[str, Any], keys: Sequence[str]) -> str:
    """``lr=0.001, hidden=300-150, dropout=0.1/0.2``: the values of ``keys`` in ``config``.

    Widths are joined with ``-`` (784-300-150-10 style), other per-layer values with ``/``.
    """
    parts = [f"{SHORT.get(key, key)}={format_value(config.get(key), key)}" for key in keys]
    return ", ".join(parts)


def swept_axis(records: Sequence[dict[str, Any]]) -> tuple[str, Callable[[dict], float]] | None:
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


def collect(records: Sequence[dict[str, Any]], sort_key: Callable | None) -> list[Curve]:
    """One ``Curve`` per distinct config, ordered by ``sort_key(config)`` or study order."""
    groups: dict[str, list[dict[str, Any]]] = {}
    first_index: dict[str, int] = {}
    repeats: dict[str, set[int]] = {}
    for record in sorted(records, key=lambda r: r["config_index"]):
        key = repr(sorted(record["config"].items()))
        first_index.setdefault(key, record["config_index"])
        repeats.setdefault(key, set()).add(record["config_index"])
        # A repeated config (same seeds) is the same training run: its seeds count once.
        if record["config_index"] == first_index[key]:
            groups.setdefault(key, []).append(record)
    curves = []
    for key, group in groups.items():
        values = [[np.nan if v is None else v for v in r["history"]["val_accuracy"]] for r in group]
        lanes = 100 * np.array(values, dtype=np.float64)
        with warnings.catch_warnings():  # an epoch where every seed diverged stays NaN
            warnings.simplefilter("ignore", RuntimeWarning)
            mean, low, high = np.nanmean(lanes, 0), np.nanmin(lanes, 0), np.nanmax(lanes, 0)
        curves.append(
            Curve(
                config=group[0]["config"],
                mean=mean,
                low=low,
                high=high,
                seeds=len(group),
                diverged=sum(bool(r["diverged"]) for r in group),
                at_chance=sum(bool(r["at_chance"]) for r in group),
                repeats=len(repeats[key]),
                index=first_index[key],
            )
        )
    if sort_key is not None:
        curves.sort(key=lambda c: sort_key(c.config))
    return curves


def panels(
    curves: list[Curve], records: Sequence[dict[str, Any]], split: bool
) -> list[tuple[str, list[str], list[Curve]]]:
    """``(title, legend keys, curves)`` per panel.

    Few curves, or ``split`` false: one panel. Several varied keys: one panel per value of
    the key with the fewest values (e.g. the widths of the 3-layer grid). Otherwise the
    curves in order, cut into panels of at most ``PANEL_SIZE``.
    """
    keys = varied_keys(records)
    if not split or len(curves) <= PANEL_MAX:
        return [("", keys, curves)]
    if len(keys) > 1:
        counts = {k: len({repr(c.config.get(k)) for c in curves}) for k in keys}
        facet = min(keys, key=lambda k: counts[k])
        groups: dict[str, list[Curve]] = {}
        for curve in curves:
            groups.setdefault(label(curve.config, [facet]), []).append(curve)
        rest = [k for k in keys if k != facet]
        if max(len(g) for g in groups.values()) <= 10:
            return [(title, rest, group) for title, group in groups.items()]
    count = -(-len(curves) // PANEL_SIZE)
    chunks = [list(c) for c in np.array_split(np.array(curves, dtype=object), count)]
    result = []
    for chunk in chunks:
        ends = [label(chunk[0].config, keys), label(chunk[-1].config, keys)]
        result.append((" … ".join(ends) if len(keys) == 1 else "", keys, chunk))
    return result


def y_range(curves: Sequence[Curve]) -> tuple[float, float]:
    """The y limits (in %) that show the cluster of best curves whole, bands included.

    Final accuracies, best first, join the cluster until one is more than ``GAP_POINTS``
    below the one before it (or at chance): an axis stretched to a diverged run would
    squeeze the good curves into one line.
    """
    finals = sorted(
        ((_final(c), n) for n, c in enumerate(curves) if c.at_chance < c.seeds),
        key=lambda pair: -pair[0] if not np.isnan(pair[0]) else np.inf,
    )
    kept: list[Curve] = []
    for position, (final, number) in enumerate(finals):
        if np.isnan(final) or (position and finals[position - 1][0] - final > GAP_POINTS):
            break
        kept.append(curves[number])
    if not kept:
        return 0.0, 100.0
    low = min(float(np.nanmin(c.low)) for c in kept)
    high = max(float(np.nanmax(c.high)) for c in kept)
    pad = max(0.5, 0.05 * (high - low))
    return max(0.0, low - pad), min(100.0, high + pad)


def _final(curve: Curve) -> float:
    finite = curve.mean[np.isfinite(curve.mean)]
    return float(finite[-1]) if finite.size else np.nan


def off_axis(curve: Curve, limits: tuple[float, float]) -> str | None:
    """Why ``curve`` is (partly) not visible within ``limits``, or None if it is."""
    finite = curve.mean[np.isfinite(curve.mean)]
    if not finite.size:
        return "diverged, no values"
    if finite.min() >= limits[0] and finite.max() <= limits[1]:
        return None
    if curve.diverged == curve.seeds:
        return "diverged"
    if curve.at_chance == curve.seeds:
        return "at chance"
    return f"ends at {finite[-1]:.1f}%"


def note(names: Sequence[str], total: int, width: int = 80) -> str:
    """The text that says how many of ``total`` configurations are (partly) off the axis,
    why (it zooms on the best), and names them, wrapped to ``width`` characters."""
    count = f"{len(names)} of {total} configurations" if total > 1 else "the configuration"
    why = "partly off the axis, which zooms on the best"
    return textwrap.fill(f"{count} {why}: " + "; ".join(names), width=width)


def curve_label(curve: Curve, keys: Sequence[str], numbered: bool = False) -> str:
    """The legend entry: the configuration (``numbered``: its number in the table), plus
    repeats and seeds that diverged."""
    text = f"#{curve.index + 1}" if numbered else label(curve.config, keys) or "all"
    if curve.repeats > 1:
        text += f" (×{curve.repeats} in the study)"
    if 0 < curve.diverged < curve.seeds:
        text += f" ({curve.diverged}/{curve.seeds} seeds diverged: mean of the rest)"
    return text


def style(position: int, epochs: int) -> dict[str, Any]:
    """Colour, line style and (with few epochs) marker of the ``position``-th curve."""
    kwargs: dict[str, Any] = {
        "color": COLOURS[position % len(COLOURS)],
        "linestyle": STYLES[position % len(STYLES)],
    }
    if epochs <= MARKER_EPOCHS:  # shifted every 10, so that no colour repeats its marker
        marker = MARKERS[(position + position // len(COLOURS)) % len(MARKERS)]
        kwargs |= {"marker": marker, "markersize": 5}
    return kwargs


def panel_axes(sizes: Sequence[int]) -> list[Axes]:
    """A new figure of a panel per legend of ``sizes`` entries (two columns when more than
    one), each row tall enough for its longest legend beside it: a legend taller than its
    panel would squeeze the plotting area to nothing. The y axes are not shared."""
    import matplotlib.pyplot as plt

    count = len(sizes)
    columns = 1 if count == 1 else 2
    rows = -(-count // columns)
    longest = [max(sizes[row * columns : (row + 1) * columns]) for row in range(rows)]
    figure, grid = plt.subplots(
        rows,
        columns,
        figsize=(
            8.0 if columns == 1 else 14.0,
            1.2 + sum(max(3.4, 1.0 + LEGEND_LINE * (n + 2)) for n in longest),
        ),
        squeeze=False,
        layout="constrained",
    )
    axes = list(grid.flat)
    for extra in axes[count:]:
        figure.delaxes(extra)
    return axes[:count]


def draw_curves(
    ax: Axes,
    group: Sequence[Curve],
    keys: Sequence[str],
    epochs: int,
    limits: tuple[float, float],
) -> None:
    """Draw ``group`` into ``ax`` within ``limits``, naming under it what they leave out."""
    x = np.arange(1, epochs + 1, dtype=np.float64)
    spread = epochs == 1 and len(group) > 1
    offsets = np.linspace(-0.3, 0.3, len(group)) if spread else np.zeros(len(group))
    names = []
    shade = 0.2 if len(group) <= 3 else max(0.07, 0.6 / len(group))  # overlapping bands
    numbered = max(len(label(c.config, keys)) for c in group) > LABEL_MAX
    for position, (curve, offset) in enumerate(zip(group, offsets, strict=True)):
        kwargs = style(position, epochs)
        xs = x[: len(curve.mean)] + offset
        text = curve_label(curve, keys, numbered)
        if len(xs) == 1:
            # Lists, not 1-element arrays, which matplotlib passes to math.isfinite: NumPy
            # 2 refuses that (matplotlib catches it), NumPy 1.26 warns it is deprecated.
            below, above = (curve.mean - curve.low).tolist(), (curve.high - curve.mean).tolist()
            bar = None if curve.seeds == 1 else [below, above]
            kwargs["linestyle"] = "none"
            ax.errorbar(xs, curve.mean, yerr=bar, capsize=3, label=text, **kwargs)
        else:
            ax.plot(xs, curve.mean, linewidth=1.5, label=text, **kwargs)
            if curve.seeds > 1:
                ax.fill_between(
                    xs, curve.low, curve.high, color=kwargs["color"], alpha=shade, linewidth=0
                )
        why = off_axis(curve, limits)
        if why is not None:
            name = f"#{curve.index + 1}" if numbered else label(curve.config, keys) or "all"
            names.append(f"{name} ({why})")
    ax.set_ylim(*limits)
    if epochs <= MARKER_EPOCHS:
        ax.set_xticks(range(1, epochs + 1))
        ax.set_xlim(0.5, epochs + 0.5)
    else:
        from matplotlib.ticker import MaxNLocator

        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlim(1, epochs)
    ax.set_xlabel("epoch" + (" (points spread sideways)" if spread else ""))
    ax.grid(alpha=0.3)
    if names:
        note_under(ax, note(names, len(group)))


def unique_legend(ax: Axes) -> tuple[list, list[str]]:
    """``ax``'s legend handles and labels, each label once."""
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles, strict=True))
    return list(unique.values()), list(unique)


def band_text(seeds: int, epochs: int) -> str:
    """The legend title: what a line and its band (one epoch: its bar) stand for."""
    if seeds == 1:
        return "1 seed"
    return f"mean of {seeds} seeds\n{'bar' if epochs == 1 else 'band'}: min–max over seeds"
