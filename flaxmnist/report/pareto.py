"""The picture of a search with two objectives: holdout accuracy against a cost, the
Pareto front drawn through the configurations no other beats on both."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flaxmnist.report.style import PNG_DPI, note_under, place_legend
from flaxmnist.report.table import COST_HEADERS
from flaxmnist.search.trials import COMPLETE, by_config, objectives_of, outcome, pareto_front

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

Records = Sequence[dict[str, Any]]
#: How the front is drawn, and the other configurations.
FRONT, OTHER = {"color": "C3", "zorder": 3}, {"color": "0.55", "zorder": 2}


def plot_pareto(records: Records, path: str | Path | None = None) -> Figure:
    """Each complete configuration of a two-objective study as a point, its seed-mean
    holdout accuracy (%) against its cost (``trials.cost``; a log axis when it spans more
    than a decade), the Pareto front (``trials.pareto_front``) as a red step line with each
    of its configurations named (``#index``), the kept model (the most accurate) ringed.
    Pruned and failed configurations have no point. Saved to ``path`` when given (PNG);
    returns the Figure (close it with ``plt.close``).

    Raises:
      ValueError: the records are of a study with one objective.
    """
    import matplotlib.pyplot as plt

    objectives = objectives_of(records)
    if len(objectives) < 2:
        raise ValueError("plot_pareto: the study has one objective")
    points = {
        index: result.values
        for index, group in by_config(records).items()
        if (result := outcome(group, objectives)).state == COMPLETE
    }
    figure, ax = plt.subplots(figsize=(8, 5), layout="constrained")
    _draw_points(ax, points, pareto_front(records))
    costs = np.array([c for _, c in points.values()], dtype=float)
    if costs.size and costs.max() > 10 * costs.min() > 0:
        ax.set_xscale("log")
    failed = len(by_config(records)) - len(points)
    if failed:
        note_under(ax, f"{failed} configurations pruned or failed: no point")
    split = records[0]["config"].get("validate_on", "holdout")
    ax.set_xlabel(COST_HEADERS[objectives[1]] + " (lower is better)")
    ax.set_ylabel(f"{split} accuracy %, mean over seeds (higher is better)")
    ax.grid(alpha=0.3, which="both")
    ax.set_title(
        f"{records[0]['study']}: {split} accuracy against {objectives[1]}, the Pareto front"
    )
    place_legend(ax)  # last: the layout is final
    if path is not None:
        figure.savefig(path, dpi=PNG_DPI, bbox_inches="tight")
    return figure


def _draw_points(ax: Axes, points: dict[int, Sequence[float]], front: Sequence[int]) -> None:
    """``points`` (configuration: (accuracy, cost)) on ``ax``: the front's as a red step line,
    each named, the first of them (the most accurate, the kept model) ringed; the others
    grey."""
    others = [v for i, v in points.items() if i not in front]
    if others:
        ax.scatter(
            [c for _, c in others],
            [100 * a for a, _ in others],
            s=14,
            **OTHER,
            label=f"the other {len(others)} configurations",
        )
    line = sorted((points[i][1], 100 * points[i][0], i) for i in front)
    xs, ys = [x for x, _, _ in line], [y for _, y, _ in line]
    ax.plot(
        xs,
        ys,
        drawstyle="steps-post",
        marker="o",
        ms=5,
        lw=1.8,
        **FRONT,
        label=f"Pareto front ({len(front)} configurations)",
    )
    for x, y, index in line:
        ax.annotate(
            f"#{index + 1}",
            (x, y),
            xytext=(4, -10),
            textcoords="offset points",
            fontsize=8,
            color="C3",
        )
    if front:
        best = points[front[0]]
        ax.scatter(
            [best[1]],
            [100 * best[0]],
            s=140,
            facecolors="none",
            edgecolors="k",
            zorder=4,
            label=f"kept: #{front[0] + 1}, the most accurate",
        )
