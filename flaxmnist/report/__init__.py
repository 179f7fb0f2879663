"""Tables, CSV and plots from results: one row per configuration, mean ± std over seeds.

Works from records alone (the dicts of ``results.jsonl``), so a finished run can be
re-reported without training anything: ``python -m flaxmnist.report DIR``. The plots are
also one call away in a notebook: ``plot_accuracy(records, ax=ax)``, ``plot_curves``,
``plot_grid``, or ``save_plots(records, directory)``.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

#: Config keys that are hyperparameters (the others describe the data).
HYPERPARAMETER_KEYS = (
    "hidden",
    "dropout",
    "learning_rate",
    "l2",
    "weight_decay",
    "epochs",
    "batch_size",
    "dropout_semantics",
    "loss",
)


def varied_keys(records: Sequence[dict[str, Any]]) -> list[str]:
    """Hyperparameters whose value differs between the configurations of ``records``."""
    keys = [
        key
        for key in HYPERPARAMETER_KEYS
        if len({repr(record["config"].get(key)) for record in records}) > 1
    ]
    return keys or ["learning_rate"]


def _mean_std(values: list[float | None]) -> tuple[float, float]:
    array = np.array([np.nan if v is None else v for v in values], dtype=np.float64)
    std = float(np.std(array, ddof=1)) if len(array) > 1 else float("nan")
    return float(np.mean(array)), std


def mean_curve(records: Sequence[dict[str, Any]], key: str = "val_accuracy") -> np.ndarray:
    """Per-epoch mean over ``records`` (seeds) of ``history[key]``; null counts as NaN."""
    curves = [[np.nan if v is None else v for v in r["history"][key]] for r in records]
    return np.mean(np.array(curves, dtype=np.float64), axis=0)


def _best_epoch(records: Sequence[dict[str, Any]]) -> int | None:
    curve = mean_curve(records)
    return None if np.all(np.isnan(curve)) else int(np.nanargmax(curve)) + 1


def summarize(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per configuration, in study order, with seed statistics.

    Each row has ``config_index``, ``config``, ``seeds``, ``val_mean``, ``val_std``,
    ``test_mean``, ``test_std`` (std is the sample std over seeds, NaN for one seed),
    ``best_epoch`` (1-based epoch of the highest mean validation accuracy), and
    ``diverged`` and ``at_chance`` (how many seeds did).
    """
    by_index: dict[int, list[dict[str, Any]]] = {}
    for record in records:
        by_index.setdefault(record["config_index"], []).append(record)
    rows = []
    for index in sorted(by_index):
        group = by_index[index]
        val_mean, val_std = _mean_std([r["val_accuracy"] for r in group])
        test_mean, test_std = _mean_std([r["test_accuracy"] for r in group])
        rows.append(
            {
                "config_index": index,
                "config": group[0]["config"],
                "seeds": len(group),
                "val_mean": val_mean,
                "val_std": val_std,
                "test_mean": test_mean,
                "test_std": test_std,
                "best_epoch": _best_epoch(group),
                "diverged": sum(bool(r["diverged"]) for r in group),
                "at_chance": sum(bool(r["at_chance"]) for r in group),
            }
        )
    return rows


def best_row(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The configuration with the highest mean validation accuracy (first one on ties)."""
    return max(
        rows, key=lambda row: (np.nan_to_num(row["val_mean"], nan=-1.0), -row["config_index"])
    )


def _format_value(value: Any) -> str:
    if isinstance(value, list):
        return "-".join(_format_value(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _format_accuracy(mean: float, std: float) -> str:
    if np.isnan(mean):
        return "n/a"
    if np.isnan(std):
        return f"{100 * mean:.2f}"
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def _status(row: dict[str, Any]) -> str:
    parts = [
        f"{label} {row[key]}/{row['seeds']}"
        for key, label in (("diverged", "diverged"), ("at_chance", "at chance"))
        if row[key]
    ]
    return ", ".join(parts) or "ok"


def split_by_study(records: Sequence[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Records grouped by their ``study`` field, in first-seen order."""
    studies: dict[str, list[dict[str, Any]]] = {}
    for record in records:
        studies.setdefault(record["study"], []).append(record)
    return studies


def format_table(records: Sequence[dict[str, Any]]) -> str:
    """Each study's table as text: varied hyperparameters, accuracies in %, status, best."""
    if not records:
        return "(no results)"
    return "\n\n".join(_format_study(r) for r in split_by_study(records).values())


def _format_study(records: Sequence[dict[str, Any]]) -> str:
    rows = summarize(records)
    keys = varied_keys(records)
    config = records[0]["config"]
    seeds = rows[0]["seeds"]
    holdout = config.get("validate_on", "holdout") == "holdout"
    val_name = "holdout acc %" if holdout else "val(=test) acc %"
    header = ["#", *keys, val_name, "test acc %", "status"]
    body = []
    for row in rows:
        status = _status(row)
        body.append(
            [
                str(row["config_index"] + 1),
                *(_format_value(row["config"].get(key)) for key in keys),
                _format_accuracy(row["val_mean"], row["val_std"]),
                _format_accuracy(row["test_mean"], row["test_std"]),
                status,
            ]
        )
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = [
        f"study {records[0]['study']}: {len(rows)} configs x {seeds} seed(s), "
        f"{config.get('train_size', '?')} training images, "
        + (
            "validation on the holdout (last 10,000 training images, never trained on)"
            if holdout
            else "validation on the TEST set (the notebook's protocol)"
        ),
        "  ".join(h.ljust(w) for h, w in zip(header, widths, strict=False)),
    ]
    lines += ["  ".join(c.ljust(w) for c, w in zip(line, widths, strict=False)) for line in body]
    best = best_row(rows)
    setting = ", ".join(f"{key}={_format_value(best['config'].get(key))}" for key in keys)
    lines.append(
        f"best by {'holdout' if holdout else 'validation'} accuracy: #{best['config_index'] + 1} "
        f"({setting}): validation {_format_accuracy(best['val_mean'], best['val_std'])} %, "
        f"test {_format_accuracy(best['test_mean'], best['test_std'])} %"
    )
    if not holdout:
        lines.append(
            "note: the test set was used for selection, so the best test accuracy is optimistic"
        )
    if any(r["config"].get("dropout_semantics") == "keras1" for r in records):
        lines.append(
            "note: keras1 dropout semantics: a rate of 1.0 (or 0) trains with no dropout, as "
            "Keras 1's Dropout did"
        )
    if seeds > 1:
        lines.append(f"(mean ± sample std over {seeds} paired seeds)")
    return "\n".join(lines)


SUMMARY_COLUMNS = (
    "study",
    "config",
    *HYPERPARAMETER_KEYS,
    "validate_on",
    "train_size",
    "seeds",
    "val_mean",
    "val_std",
    "test_mean",
    "test_std",
    "best_epoch",
    "diverged",
    "at_chance",
)


def write_summary_csv(records: Sequence[dict[str, Any]], path: str | Path) -> Path:
    """Write ``summary.csv``: one row per (study, configuration), columns ``SUMMARY_COLUMNS``.

    Lists (layer widths, per-layer rates) are written as ``300-150``; accuracies as
    fractions; an empty cell is a missing value (one seed has no std).
    """
    path = Path(path)
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(SUMMARY_COLUMNS)
        for study, study_records in split_by_study(records).items():
            for row in summarize(study_records):
                config = row["config"]
                values = {**config, **row, "study": study, "config": row["config_index"] + 1}
                writer.writerow(
                    [
                        "" if _missing(values.get(c)) else _format_value(values.get(c))
                        for c in SUMMARY_COLUMNS
                    ]
                )
    return path


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _label(config: dict[str, Any], keys: Sequence[str]) -> str:
    return ", ".join(f"{_SHORT.get(k, k)}={_format_value(config.get(k))}" for k in keys)


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

    Learning rates get a log axis. A study without one numeric swept value (hand-picked
    models, grids) gets one bar per configuration instead. Returns the Axes.
    """
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(7, 4.5))
    rows = summarize(records)
    holdout = records[0]["config"].get("validate_on", "holdout") == "holdout"
    val_label = "holdout" if holdout else "validation (= test)"
    axis = _swept_axis(records)
    if axis is not None:
        key, value_of = axis
        order = sorted(range(len(rows)), key=lambda i: value_of(rows[i]["config"]))
        x = [value_of(rows[i]["config"]) for i in order]
        for mean, std, label in (
            ("val_mean", "val_std", val_label),
            ("test_mean", "test_std", "test"),
        ):
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
        # Keep the interesting range readable: rows at chance or diverged are named below
        # the axis instead of stretching it down to 10 %.
        kept = [100 * r["val_mean"] for r in rows if not (r["at_chance"] or r["diverged"])]
        kept = [v for v in kept if not np.isnan(v)]
        if kept and len(kept) < len(rows):
            ax.set_ylim(max(0.0, min(kept) - 2.0), min(100.0, max(kept) + 1.0))
            dropped = [
                f"{_format_value(r['config'][key])}: {100 * r['val_mean']:.1f}%"
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
    else:
        keys = varied_keys(records)
        positions = np.arange(len(rows))
        for offset, (mean, std, label) in zip(
            (-0.2, 0.2),
            (("val_mean", "val_std", val_label), ("test_mean", "test_std", "test")),
            strict=True,
        ):
            ax.bar(
                positions + offset,
                [100 * row[mean] for row in rows],
                width=0.4,
                yerr=[100 * np.nan_to_num(row[std]) for row in rows],
                capsize=2,
                label=label,
            )
        ax.set_xticks(
            positions, [_label(row["config"], keys) for row in rows], rotation=75, fontsize=7
        )
        finite = [100 * row["val_mean"] for row in rows if not np.isnan(row["val_mean"])]
        if finite:
            ax.set_ylim(max(0.0, min(finite) - 2.0), 100.0)
    ax.set_ylabel("accuracy % (last epoch)")
    ax.set_title(f"{records[0]['study']}: accuracy, mean ± std over {rows[0]['seeds']} seed(s)")
    ax.grid(alpha=0.3)
    ax.legend()
    return ax


def plot_curves(records: Sequence[dict[str, Any]], ax=None):
    """Validation accuracy per epoch (mean over seeds), one line per configuration."""
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
    """Save every study's plots as PNG files in ``directory``; returns their paths."""
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


def write_report(records: Sequence[dict[str, Any]], directory: str | Path) -> list[Path]:
    """Write ``summary.csv`` and every plot into ``directory``; returns the paths."""
    return [
        write_summary_csv(records, Path(directory) / "summary.csv"),
        *save_plots(records, directory),
    ]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m flaxmnist.report DIR``: table, summary.csv and plots from results.jsonl."""
    parser = argparse.ArgumentParser(
        prog="python -m flaxmnist.report",
        description="Re-render the table, summary.csv and the plots of a run directory from "
        "its results.jsonl alone (nothing is trained).",
    )
    parser.add_argument("run_dir", type=Path, help="a directory written by flaxmnist.sweep")
    args = parser.parse_args(argv)
    results = args.run_dir / "results.jsonl"
    try:
        records = [json.loads(line) for line in results.read_text().splitlines() if line]
    except OSError as err:
        print(f"{parser.prog}: error: {results}: {err.strerror}", file=sys.stderr)
        return 2
    except json.JSONDecodeError as err:
        print(f"{parser.prog}: error: {results}: not JSON lines ({err})", file=sys.stderr)
        return 2
    if not records:
        print(f"{parser.prog}: error: {results}: no results yet", file=sys.stderr)
        return 2
    print(format_table(records))
    for path in write_report(records, args.run_dir):
        print(f"wrote {path}")
    return 0
