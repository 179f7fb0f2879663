"""Hyperband's and BOHB's own picture: every configuration's holdout curve placed at the
study's epochs when its bracket started, and the configurations training at each epoch,
stacked by bracket kind: what packing and lane refill did, from records alone."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flaxmnist.report.curves import label
from flaxmnist.report.search import (
    STOPPED,
    mean_val_curve,
    save_at,
    selecting_split,
    zoom_to_curves,
)
from flaxmnist.report.table import varied_keys
from flaxmnist.run.records import best_config
from flaxmnist.search.trials import by_config

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Records = Sequence[dict[str, Any]]


def bracket_lanes(records: Records) -> dict[int, dict[str, Any]]:
    """Per configuration index: its ``bracket``, the study's epoch ``start`` when the bracket
    started, its ``curve`` (mean holdout accuracy over seeds per epoch it trained, %) and its
    bracket's ``first_rung`` in epochs (Hyperband's kind of bracket), from ``search``.

    Records written before they said their first rung get it from the order brackets start
    in: bracket ``b`` is kind ``b mod (K + 1)`` of the rungs, which are taken to be the
    distinct numbers of epochs the configurations trained (each rung stops some, in all but
    the smallest searches)."""
    groups = by_config(records)
    rungs = sorted({len(r["history"]["val_accuracy"]) for r in records})
    lanes = {}
    for c, group in groups.items():
        search = group[0]["search"]
        bracket = search.get("bracket", 0)
        lanes[c] = {
            "bracket": bracket,
            "start": search.get("start", 0),
            "curve": 100 * mean_val_curve(group),
            "first_rung": search.get("first_rung", rungs[bracket % len(rungs)]),
        }
    return lanes


def training_counts(lanes: dict[int, dict[str, Any]]) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """The study's epochs ``1 … E`` and, per first rung, how many configurations trained in
    each (a configuration that started at ``s`` and trained ``n`` epochs trains in ``s + 1 …
    s + n``)."""
    last = max(lane["start"] + len(lane["curve"]) for lane in lanes.values())
    epochs = np.arange(1, last + 1)
    counts: dict[int, np.ndarray] = {}
    for lane in lanes.values():
        going = (epochs > lane["start"]) & (epochs <= lane["start"] + len(lane["curve"]))
        counts[lane["first_rung"]] = counts.get(lane["first_rung"], 0) + going.astype(int)
    return epochs, dict(sorted(counts.items()))


def _kind(first_rung: int, epochs: int, brackets: int) -> str:
    many = f"{brackets} bracket{'s' * (brackets > 1)}"
    if first_rung == epochs:
        return f"{many} without a rung (all {epochs} epochs)"
    return f"{many} from a first rung at {first_rung} epoch{'s' * (first_rung > 1)}"


def _lanes_training(ax: Axes, lanes: dict[int, dict[str, Any]], colours: dict[int, str]):
    """Bars of the configurations training at each of the study's epochs, by first rung."""
    epochs = max(len(lane["curve"]) for lane in lanes.values())
    study_epochs, counts = training_counts(lanes)
    stacked = np.zeros(len(study_epochs))
    for rung, count in counts.items():
        brackets = {lane["bracket"] for lane in lanes.values() if lane["first_rung"] == rung}
        label = _kind(rung, epochs, len(brackets))
        ax.bar(study_epochs, count, 0.9, stacked, color=colours[rung], label=label)
        stacked += count
    ax.plot([], [], label="stopped at a rung", **STOPPED)
    ax.set_ylabel("configurations\ntraining")
    ax.set_xlabel("the study's epoch (a bracket's configurations start together)")


def _curves(ax: Axes, lanes: dict[int, dict[str, Any]], colours: dict[int, str], epochs: int):
    """Each configuration's curve at its study epochs; a dot where a rung stopped it."""
    for lane in lanes.values():
        x = lane["start"] + np.arange(1, len(lane["curve"]) + 1)
        colour = colours[lane["first_rung"]]
        if len(lane["curve"]) < epochs:
            ax.plot(x, lane["curve"], **(STOPPED | {"color": colour, "alpha": 0.7}))
        else:
            ax.plot(x, lane["curve"], color=colour, lw=1.4)
    zoom_to_curves(ax, [lane["curve"] for lane in lanes.values()])


def _selected(ax: Axes, records: Records, lanes: dict[int, dict[str, Any]]) -> None:
    """Draws, in black, the configuration the run selects (``records.best_config``)."""
    groups = by_config(records)
    best = best_config(records, min(len(group) for group in groups.values()))
    lane, config = lanes[best], groups[best][0]["config"]
    text = f"selected: #{best + 1} (bracket {lane['bracket'] + 1}): " + label(
        config, varied_keys(records)
    )
    x = lane["start"] + np.arange(1, len(lane["curve"]) + 1)
    text = textwrap.fill(f"{text} ({lane['curve'][-1]:.2f} %)", 60)
    ax.plot(x, lane["curve"], color="black", lw=2.4, zorder=4, label=text)


def plot_brackets(records: Records, path: str | Path | None = None) -> Figure:
    """Hyperband's or BOHB's brackets over the study's epochs. Above: each configuration's
    mean holdout accuracy over seeds (%) from the study's epoch its bracket started (a dot
    where a rung stopped it), coloured by its bracket's first rung, the configuration the run
    selects in black. Below: how many configurations trained at each of the
    study's epochs, stacked by the same colours; with lane refill it stays at a call's
    lanes ÷ seeds while configurations are left. Saved to ``path`` when given; returns the
    Figure."""
    import matplotlib.pyplot as plt

    lanes = bracket_lanes(records)
    epochs = max(len(lane["curve"]) for lane in lanes.values())
    kinds = sorted({lane["first_rung"] for lane in lanes.values()})
    colours = {rung: f"C{number % 10}" for number, rung in enumerate(kinds)}
    figure, (top, bottom) = plt.subplots(
        2, 1, figsize=(9, 7), sharex=True, height_ratios=(3, 1.3), layout="constrained"
    )
    _curves(top, lanes, colours, epochs)
    _selected(top, records, lanes)
    top.set_ylabel(f"{selecting_split(records)} accuracy %, mean over seeds")
    _lanes_training(bottom, lanes, colours)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    handles = top.get_legend_handles_labels()[0] + bottom.get_legend_handles_labels()[0]
    figure.legend(handles=handles, loc="outside lower center", ncols=2, frameon=False)
    strategy = records[0]["search"].get("strategy", "hyperband")
    brackets = len({lane["bracket"] for lane in lanes.values()})
    full = sum(len(lane["curve"]) == epochs for lane in lanes.values())
    top.set_title(
        f"{records[0]['study']}: {strategy}, {brackets} brackets, {len(lanes)} "
        f"configurations, {full} trained all {epochs} epochs"
    )
    return save_at(figure, path)
