"""Set the notebook's published numbers beside flaxmnist's, as Markdown for REPRODUCTION.md.

    python reproduction/compare.py reproduction/all-test [reproduction/all-holdout]

The first directory must be a run with ``--validate-on test`` (the notebook's protocol: train
on all 60,000 images, measure on the test set); the optional second one a run with the
default holdout protocol. Every flaxmnist figure is the mean ± sample std over the run's
seeds, at the epoch the notebook's figure is from. A study that a run has not finished yet
is listed as such.
"""

from __future__ import annotations

import argparse
import json
import tomllib
from pathlib import Path

import numpy as np

from flaxmnist.report import best_row, split_by_study, summarize, varied_keys

HERE = Path(__file__).resolve().parent
STUDIES = ("lr", "hidden", "l2", "dropout", "three-layer")


def read_records(run_dir: Path) -> dict[str, list[dict]]:
    lines = (run_dir / "results.jsonl").read_text().splitlines()
    return split_by_study([json.loads(line) for line in lines if line])


def label(config: dict, keys: list[str]) -> str:
    parts = []
    for key in keys:
        value = config[key]
        text = (
            "-".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
            if (isinstance(value, list))
            else (f"{value:g}" if isinstance(value, float) else str(value))
        )
        parts.append(f"{key}={text}")
    return ", ".join(parts)


def at_epoch(records: list[dict], epoch: int, key: str = "test_accuracy") -> tuple[float, float]:
    values = [r["history"][key][epoch - 1] for r in records]
    values = np.array([np.nan if v is None else v for v in values], dtype=float)
    std = float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")
    return float(np.mean(values)), std


def percent(mean: float, std: float) -> str:
    return f"{100 * mean:.2f} ± {100 * std:.2f}"


def study_section(name: str, notebook: dict, test_run: dict, holdout_run: dict | None) -> str:
    lines = [f"### `{name}`", ""]
    records = test_run.get(name)
    if not records:
        return "\n".join([*lines, "Not finished in the test-protocol run yet.", ""])
    by_config: dict[int, list[dict]] = {}
    for record in records:
        by_config.setdefault(record["config_index"], []).append(record)
    keys = varied_keys(records)
    seeds = len(next(iter(by_config.values())))
    total = len(by_config)
    honest: dict[int, list[dict]] = {}
    for record in (holdout_run or {}).get(name, []):
        honest.setdefault(record["config_index"], []).append(record)
    lines += [
        f"{total} configurations × {seeds} seeds. Test-set accuracy %, flaxmnist as mean ± "
        "sample std over seeds, at the epoch of the notebook's figure. Δ = flaxmnist − "
        "notebook in points; z = Δ over the noise of a one-run-vs-mean difference, "
        "s·√(1 + 1/seeds), with s the config's seed std floored at the study's median; "
        "|z| > 3 is beyond seed noise."
        + (
            " The last two columns are the holdout protocol (trained on 50,000 images): "
            "holdout and test accuracy at the same epoch."
            if honest
            else ""
        ),
        "",
        "| # | configuration | epoch | notebook (1 run) | flaxmnist, test protocol | Δ | z |"
        + (" holdout protocol: holdout | holdout protocol: test |" if honest else ""),
        "|---|---|---|---|---|---|---|" + ("---|---|" if honest else ""),
    ]
    stds = [at_epoch(g, len(g[0]["history"]["test_accuracy"]))[1] for g in by_config.values()]
    floor = float(np.nanmedian(stds)) if seeds > 1 else float("nan")
    shown = {entry[0]: entry for entry in notebook.get(name, [])}
    for index in sorted(by_config):
        group = by_config[index]
        position = index + 1
        epochs = len(group[0]["history"]["test_accuracy"])
        if position in shown:
            _, epoch, value, line = shown[position]
            mean, std = at_epoch(group, epoch)
            delta = mean - value
            noise = max(std, floor) * np.sqrt(1 + 1 / seeds)
            z = delta / noise if noise > 0 else float("nan")
            notebook_text = f"{100 * value:.2f} (line {line})"
            delta_text = f"{100 * delta:+.2f}"
            z_text = (
                "" if np.isnan(z) else f"{z:+.1f}" + (" **beyond noise**" if abs(z) > 3 else "")
            )
        else:
            epoch = epochs
            mean, std = at_epoch(group, epoch)
            notebook_text, delta_text, z_text = "(cut off in this copy)", "", ""
        row = (
            f"| {position} | {label(group[0]['config'], keys)} | {epoch} | {notebook_text} | "
            f"{percent(mean, std)} | {delta_text} | {z_text} |"
        )
        if honest and index not in honest:
            row += " (not run yet) | |"
        elif honest:
            held = honest[index]
            row += (
                f" {percent(*at_epoch(held, epoch, 'val_accuracy'))} |"
                f" {percent(*at_epoch(held, epoch))} |"
            )
        lines.append(row)
    rows = summarize(records)
    best = best_row(rows)
    lines += [
        "",
        f"Selected on the test set, as the notebook did: #{best['config_index'] + 1} "
        f"({label(best['config'], keys)}), {percent(best['val_mean'], best['val_std'])} % "
        "(optimistic: the test set chose it).",
    ]
    if holdout_run is not None and holdout_run.get(name):
        holdout_rows = summarize(holdout_run[name])
        honest = best_row(holdout_rows)
        lines.append(
            f"Selected on the holdout (trained on 50,000): #{honest['config_index'] + 1} "
            f"({label(honest['config'], keys)}), holdout "
            f"{percent(honest['val_mean'], honest['val_std'])} %, test "
            f"{percent(honest['test_mean'], honest['test_std'])} %."
        )
    elif holdout_run is not None:
        lines.append("Holdout-protocol run: not finished for this study yet.")
    return "\n".join([*lines, ""])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("test_run", type=Path, help="a run directory made with --validate-on test")
    parser.add_argument("holdout_run", type=Path, nargs="?", help="a holdout-protocol run")
    args = parser.parse_args()
    document = tomllib.loads((HERE / "notebook.toml").read_text())
    notebook = {entry["study"]: entry["values"] for entry in document["result"]}
    test_run = read_records(args.test_run)
    holdout_run = read_records(args.holdout_run) if args.holdout_run else None
    for name in STUDIES:
        print(study_section(name, notebook, test_run, holdout_run))


if __name__ == "__main__":
    main()
