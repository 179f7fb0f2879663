"""Does the best learning rate move with width? The answer of a width × learning-rate grid.

A study whose configurations cross the width of one hidden layer with the learning rate
(and, say, the parameterisation: ``sweeps/width-lr.toml``) gets:

- ``optima(records)``: per family (every other varied key, e.g. ``parameterization=mup``)
  and width, the learning rate of the best mean accuracy of the selecting split after the
  last epoch, and each seed's own best (seeds are paired: every configuration trains the
  same seeds);
- ``format_transfer(records)``: those optima as a table, and per family how far the best
  learning rate moves from the narrowest width to the widest (a factor, with the seeds'
  range) and over how many grid steps the optima of all widths spread;
- ``plot_transfer(records, heading)``: per family, accuracy against learning rate with one
  curve per width, and the best learning rate against width with its seeds' range.

A diverged lane counts as accuracy 0: it is never a best learning rate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from flaxmnist.report.style import note_under, place_legends

#: The keys a transfer study may vary besides ``hidden`` and ``learning_rate``: they name
#: its families.
FAMILY_KEYS = ("parameterization", "mup_base_width")


@dataclass(frozen=True)
class Optimum:
    """The best learning rate of one family at one width.

    Attributes:
      family: the family's other varied keys, e.g. ``"parameterization=mup"`` (``""``: one
        family).
      width: the hidden layer's width.
      rates: the learning rates of the grid, ascending.
      accuracy: ``(seeds, rates)``, each seed's accuracy after the last epoch at each rate.
      best: the index in ``rates`` of the best mean accuracy.
      seed_best: each seed's own best index.
    """

    family: str
    width: int
    rates: tuple[float, ...]
    accuracy: np.ndarray
    best: int
    seed_best: tuple[int, ...]

    @property
    def rate(self) -> float:
        """The learning rate of the best mean accuracy."""
        return self.rates[self.best]

    @property
    def seed_rates(self) -> tuple[float, ...]:
        """Each seed's best learning rate."""
        return tuple(self.rates[i] for i in self.seed_best)


def _varied(records: Sequence[dict[str, Any]]) -> set[str]:
    keys = {key for record in records for key in record["config"]}
    return {k for k in keys if len({repr(r["config"].get(k)) for r in records}) > 1}


def is_width_by_learning_rate(records: Sequence[dict[str, Any]]) -> bool:
    """Whether ``records`` cross one hidden layer's width (two or more) with the learning rate
    (three or more values at each width), varying nothing else but ``FAMILY_KEYS``."""
    varied = _varied(records)
    if not {"hidden", "learning_rate"} <= varied <= {"hidden", "learning_rate", *FAMILY_KEYS}:
        return False
    if any(len(r["config"]["hidden"]) != 1 for r in records):
        return False
    rates: dict[tuple, set] = {}
    for r in records:
        rates.setdefault((_family(r, varied), *r["config"]["hidden"]), set()).add(
            r["config"]["learning_rate"]
        )
    return all(len(values) >= 3 for values in rates.values())


def _family(record: dict[str, Any], varied: set[str]) -> str:
    return ", ".join(f"{k}={record['config'][k]}" for k in FAMILY_KEYS if k in varied)


def optima(records: Sequence[dict[str, Any]]) -> list[Optimum]:
    """Per family and width (in the records' order of families, widths ascending), the best
    learning rate of the selecting split's accuracy after the last epoch (see the module)."""
    varied = _varied(records)
    cells: dict[tuple[str, int], dict[float, dict[int, float]]] = {}
    for r in records:
        key = (_family(r, varied), r["config"]["hidden"][0])
        accuracy = r["val_accuracy"]
        finite = accuracy is not None and np.isfinite(accuracy) and not r.get("diverged")
        cells.setdefault(key, {}).setdefault(r["config"]["learning_rate"], {})[r["seed"]] = (
            accuracy if finite else 0.0
        )
    families = list(dict.fromkeys(family for family, _ in cells))
    result = []
    for family in families:
        for width in sorted(w for f, w in cells if f == family):
            by_rate = cells[(family, width)]
            rates = tuple(sorted(by_rate))
            seeds = sorted(by_rate[rates[0]])
            accuracy = np.array([[by_rate[rate].get(s, 0.0) for rate in rates] for s in seeds])
            best = int(np.argmax(accuracy.mean(axis=0)))
            seed_best = tuple(int(i) for i in np.argmax(accuracy, axis=1))
            result.append(Optimum(family, width, rates, accuracy, best, seed_best))
    return result


def grid_step(rates: Sequence[float]) -> float:
    """The median factor between neighbouring learning rates of the grid."""
    return float(np.exp(np.median(np.diff(np.log(rates)))))


def format_transfer(records: Sequence[dict[str, Any]]) -> str:
    """The optima as a table and, per family, how far the best learning rate moves with
    width (see the module); ``""`` for records that are not such a grid. Where the grid has
    a reference width (``reference_width``), a column says what each width loses, in
    points of mean accuracy, when it trains at the reference width's best learning rate
    instead of its own: what transferring the learning rate costs."""
    if not is_width_by_learning_rate(records):
        return ""
    found = optima(records)
    seeds = found[0].accuracy.shape[0]
    reference = reference_width(records)
    header = (
        f"{'family':<28} {'width':>6} {'best lr':>9}  {'each seed':<28} {'accuracy % at best':<18}"
    )
    if reference is not None:
        header += f"  lost at M = {reference}'s best lr"
    lines = [f"{records[0]['study']}: the best learning rate per width ({seeds} seeds)", header]
    for o in found:
        each = " ".join(f"{rate:g}" for rate in o.seed_rates)
        column = o.accuracy[:, o.best] * 100
        accuracy = f"{column.mean():.2f}" + (f" ± {column.std(ddof=1):.2f}" if seeds > 1 else "")
        line = f"{o.family or '-':<28} {o.width:>6} {o.rate:>9g}  {each:<28} {accuracy:<18}"
        if reference is not None:
            line += f"  {_lost(o, [r for r in found if r.family == o.family], reference)}"
        lines.append(line.rstrip())
    for family in dict.fromkeys(o.family for o in found):
        lines.append(_movement([o for o in found if o.family == family]))
    return "\n".join(lines)


def reference_width(records: Sequence[dict[str, Any]]) -> int | None:
    """The width the others are compared with: μP's base width (one for all records) where
    the grid trains it, else ``None``."""
    bases = {r["config"].get("mup_base_width") for r in records}
    widths = {r["config"]["hidden"][0] for r in records}
    return next(iter(bases)) if len(bases) == 1 and bases <= widths else None


def _lost(o: Optimum, family: Sequence[Optimum], reference: int) -> str:
    """Points of mean accuracy ``o``'s width loses at the reference width's best rate."""
    rate = next(r.rate for r in family if r.width == reference)
    if rate not in o.rates:
        return "-"
    lost = o.accuracy[:, o.best].mean() - o.accuracy[:, o.rates.index(rate)].mean()
    return f"{100 * lost:.2f} (at {rate:g})"


def _movement(family: Sequence[Optimum]) -> str:
    """One family's sentence: the factor from narrowest to widest, and the grid steps."""
    narrow, wide = family[0], family[-1]
    factor = wide.rate / narrow.rate
    per_seed = [w / n for n, w in zip(narrow.seed_rates, wide.seed_rates, strict=True)]
    positions = [o.best for o in family]
    span = max(positions) - min(positions)
    step = grid_step(narrow.rates)
    name = family[0].family or "the grid"
    return (
        f"{name}: the best learning rate moves by a factor {factor:.3g} from width "
        f"{narrow.width} to {wide.width} (each seed: {min(per_seed):.3g} to {max(per_seed):.3g}); "
        f"the optima of all widths span {span} grid step{'s' * (span != 1)} (x{step:.3g} each)"
    )


def plot_transfer(
    records: Sequence[dict[str, Any]], heading: str, accuracy: str = "holdout accuracy %"
) -> np.ndarray:
    """Per family (a row): the selecting split's accuracy against the learning rate, one
    curve per width (mean over seeds, the best marked), and the best learning rate against
    width (the seeds' range as a bar), on one learning-rate axis for every row; ``accuracy``
    names the selecting split's accuracy. Returns the Axes, ``(families, 2)``."""
    import matplotlib.pyplot as plt

    found, varied = optima(records), _varied(records)
    families = list(dict.fromkeys(o.family for o in found))
    size = (8, 3.2 * len(families) + 1)
    figure, axes = plt.subplots(
        len(families), 2, figsize=size, layout="constrained", squeeze=False, width_ratios=(3, 2)
    )
    low = min(o.accuracy.mean(axis=0)[o.best] for o in found) * 100 - 2
    high = max(o.accuracy.mean(axis=0)[o.best] for o in found) * 100 + 0.5
    for row, family in zip(axes, families, strict=True):
        members = [o for o in found if o.family == family]
        _draw_curves(row[0], members, (low, high), accuracy)
        _draw_optima(row[1], members)
        _mark_base_width(row[1], [r for r in records if _family(r, varied) == family])
        row[0].set_title(family.replace("=", " = ") or "all configurations", loc="left")
    axes[-1][0].set_xlabel("learning rate")
    axes[-1][1].set_xlabel("hidden width")
    figure.suptitle(heading)
    place_legends(list(axes.ravel()))
    return axes


def _draw_curves(ax, members: Sequence[Optimum], limits: tuple[float, float], name: str) -> None:
    """Accuracy against learning rate per width, the best starred; says what is below."""
    below = 0
    for position, o in enumerate(members):
        mean = o.accuracy.mean(axis=0) * 100
        colour = f"C{position % 7}"
        ax.plot(o.rates, mean, "-o", color=colour, markersize=3, label=f"M = {o.width}")
        ax.plot([o.rate], [mean[o.best]], "*", color=colour, markersize=10)
        below += int(np.sum(mean < limits[0]))
    ax.set_ylim(*limits)
    ax.set_xscale("log")
    ax.set_ylabel(f"{name}, mean")
    ax.grid(alpha=0.3)
    if below:
        note_under(ax, f"{below} of {sum(len(o.rates) for o in members)} points below the axis")


def _mark_base_width(ax, family_records: Sequence[dict[str, Any]]) -> None:
    """A dotted line at μP's base width, where a family is μP with one base width."""
    configs = [r["config"] for r in family_records]
    bases = {c.get("mup_base_width") for c in configs}
    if all(c.get("parameterization") == "mup" for c in configs) and len(bases) == 1:
        base = bases.pop()
        ax.axvline(base, linestyle=":", color="0.4", label=f"base width {base}")


def _draw_optima(ax, members: Sequence[Optimum]) -> None:
    widths = [o.width for o in members]
    rates = np.array([o.rate for o in members])
    low = rates - np.array([min(o.seed_rates) for o in members])
    high = np.array([max(o.seed_rates) for o in members]) - rates
    ax.errorbar(widths, rates, yerr=[low, high], fmt="o-", capsize=3, label="best (seeds' range)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    grid = members[0].rates
    ax.set_ylim(grid[0] / 1.3, grid[-1] * 1.3)  # the whole grid: rows compare at a glance
    ax.set_yticks(grid[::2], [f"{r:g}" for r in grid[::2]])
    ax.set_xticks(widths, [str(w) for w in widths], rotation=45)  # 1000 and 2000 are close
    ax.minorticks_off()
    ax.set_ylabel("best learning rate")
    ax.grid(alpha=0.3)
