"""``python -m flaxmnist.report DIR``: table, summary.csv and plots from results.jsonl.

``python -m flaxmnist.report --compare OUT.png LABEL=DIR ...`` sets runs side by side (say,
three sampler seeds of each strategy): their progress plot, and per label the test accuracy
of the configuration the holdout selects in each run and the compute spent.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from flaxmnist.errors import RunDirError, one_line_warnings
from flaxmnist.report import (
    format_table,
    load_results,
    plot_search_progress,
    split_by_study,
    write_report,
)
from flaxmnist.report.compare import Run, comparison, read_model
from flaxmnist.report.paper import write_tables
from flaxmnist.report.style import FORMATS, figure_formats, save_figure, styled
from flaxmnist.report.tensorboard import write_tensorboard
from flaxmnist.run.ensemble import chosen_ensembles
from flaxmnist.run.rundir import MANIFEST, read_descriptions, read_manifest
from flaxmnist.search.optuna_db import DB, export, problem, storage_url

USAGE = """%(prog)s DIR [--latex] [--markdown] [--formats LIST]
       %(prog)s DIR [--optuna] [--tensorboard LOGDIR]
       %(prog)s --compare OUT.png [--study NAME] LABEL=DIR [LABEL=DIR ...]"""
DESCRIPTION = """\
Re-render the table, summary.csv and the plots (PNG, PDF and SVG) of a run directory from
its results.jsonl alone (nothing is trained), with --latex and --markdown the table for a
paper too; with --optuna or --tensorboard, write the run for Optuna's or
TensorBoard's tools instead; or, with --compare, plot the best holdout accuracy against the
compute spent of several runs, grouped by label (the first label is the reference), and
print per label the holdout-selected configuration's accuracies (mean ± std over runs, the
test accuracy's bootstrap interval), the compute, the compute to reach the reference's
median holdout, and McNemar's paired test against the reference, run by run."""
EXAMPLE = """\
example: three sampler seeds of random search against two of successive halving:
  %(prog)s --compare strategies.png \\
      random=runs/r0 random=runs/r1 random=runs/r2 halving=runs/h0 halving=runs/h1"""


def build_parser() -> argparse.ArgumentParser:
    """The command's arguments (the documentation's command-line reference reads them)."""
    parser = argparse.ArgumentParser(
        prog="python -m flaxmnist.report",
        usage=USAGE,
        description=DESCRIPTION,
        epilog=EXAMPLE,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "dirs",
        nargs="+",
        metavar="DIR",
        help="a directory written by flaxmnist.sweep; with --compare, LABEL=DIR once per run "
        "(the runs of one label are drawn in one colour: their median, their range shaded)",
    )
    parser.add_argument(
        "--compare",
        metavar="OUT.png",
        type=Path,
        help="write the runs' progress plot here (OUT.png, and OUT.pdf, OUT.svg: --formats) "
        "and print per label: runs, the holdout-"
        "selected configuration's accuracies (mean ± std over runs, bootstrap interval), "
        "compute spent and to reach the first label's median holdout, McNemar's paired test "
        "against the first label",
    )
    parser.add_argument(
        "--study", metavar="NAME", help="with --compare: the study to read in each directory"
    )
    _add_output_arguments(parser)
    parser.add_argument(
        "--optuna",
        action="store_true",
        help="write DIR/optuna.db, Optuna's SQLite storage (a run writes it as it trains; "
        "this writes it for a run an older flaxmnist made, or brings it up to date): a study "
        "per flaxmnist study, a trial per configuration; open it with optuna-dashboard",
    )
    parser.add_argument(
        "--tensorboard",
        metavar="LOGDIR",
        type=Path,
        help="write TensorBoard event files under LOGDIR: a run per lane (study, "
        "configuration, seed) with its per-epoch scalars and the HParams tab's session "
        "(needs pip install 'flaxmnist[tensorboard]'; view: tensorboard --logdir LOGDIR)",
    )
    return parser


def _add_output_arguments(parser: argparse.ArgumentParser) -> None:
    """What a report writes besides the table, CSV and figures, and the figures' formats."""
    parser.add_argument(
        "--latex",
        action="store_true",
        help="also write DIR/<study>-table.tex: the table as a LaTeX booktabs table, the "
        "selected row in bold, the protocol in the caption",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="also write DIR/<study>-table.md: the same table in Markdown",
    )
    parser.add_argument(
        "--formats",
        metavar="LIST",
        type=figure_formats,
        default=FORMATS,
        help="the files each figure is written as, comma-separated: png (200 dpi), pdf, "
        "svg (default: all three; vector PDF and SVG for a paper)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (2: no readable results, or arguments that do
    not fit; 3: the report cannot be written; either named in one line on stderr)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    with one_line_warnings(parser.prog):
        exports = args.optuna or args.tensorboard is not None
        if args.compare is not None and not exports:
            return _compare(parser.prog, args.compare, args.dirs, args.study, args.formats)
        if len(args.dirs) > 1 or args.study is not None or args.compare is not None:
            return _error(
                parser.prog,
                "one DIR (with --optuna, --tensorboard), or --compare OUT.png "
                "with LABEL=DIR ... (-h)",
            )
        if exports:
            return _exports(parser.prog, Path(args.dirs[0]), args.optuna, args.tensorboard)
        tables = [kind for kind in ("latex", "markdown") if getattr(args, kind)]
        return _report(parser.prog, Path(args.dirs[0]), args.formats, tables)


def _error(prog: str, message: str, code: int = 2) -> int:
    print(f"{prog}: error: {message}", file=sys.stderr)
    return code


def _read(prog: str, results: Path) -> list[dict[str, Any]] | None:
    """The records of ``results``, or None after naming on stderr why there are none."""
    try:
        records = load_results(results)
    except FileNotFoundError:
        _error(prog, f"{results}: no such file")
        return None
    except OSError as err:
        _error(prog, f"{results}: {err.strerror}")
        return None
    except RunDirError as err:
        _error(prog, str(err))
        return None
    if not records:
        _error(prog, f"{results}: no results yet")
        return None
    return records


def _report(prog: str, run_dir: Path, formats: Sequence[str], tables: Sequence[str]) -> int:
    records = _read(prog, run_dir / "results.jsonl")
    if records is None:
        return 2
    descriptions = read_descriptions(run_dir)  # the titles the sweep showed
    print("\n".join([format_table(records, descriptions), *chosen_ensembles(run_dir)]))
    try:
        paths = write_report(records, run_dir, descriptions, formats)
        paths += write_tables(records, run_dir, tables, descriptions)
    except OSError as err:
        return _error(prog, f"cannot write the report into {run_dir}: {err.strerror or err}", 3)
    for path in paths:
        print(f"wrote {path}")
    return 0


def _exports(prog: str, run_dir: Path, optuna: bool, logdir: Path | None) -> int:
    records = _read(prog, run_dir / "results.jsonl")
    if records is None:
        return 2
    if optuna:
        code = _optuna(prog, run_dir, records)
        if code:
            return code
    if logdir is not None:
        try:
            folders = write_tensorboard(records, logdir)
        except ImportError as err:
            return _error(prog, str(err))
        except OSError as err:
            return _error(prog, f"cannot write under {logdir}: {err.strerror or err}", 3)
        print(
            f"wrote {len(folders)} TensorBoard runs under {logdir}: tensorboard --logdir {logdir}"
        )
    return 0


def _optuna(prog: str, run_dir: Path, records: list[dict[str, Any]]) -> int:
    try:
        settings = read_manifest(run_dir / MANIFEST)["settings"]
    except RunDirError as err:
        return _error(prog, f"{err} (--optuna reads the studies' spaces there)")
    try:
        added = export(run_dir, settings, records)
    except Exception as err:  # locked, damaged, unwritable: one line
        why, when = problem(err)
        return _error(prog, f"cannot write {run_dir / DB} ({why}); {when}, run this again", 3)
    studies = len(settings["studies"])
    print(
        f"{run_dir / DB}: {added} trials added, {studies} stud{'ies' if studies > 1 else 'y'}; "
        f"open it with: optuna-dashboard {storage_url(run_dir)}"
    )
    return 0


def _one_study(prog: str, item: str, study: str | None) -> list[dict[str, Any]] | None:
    """The records of one study in the directory of ``LABEL=DIR``, or None (said why)."""
    directory = Path(item.partition("=")[2])
    records = _read(prog, directory / "results.jsonl")
    if records is None:
        return None
    studies = split_by_study(records)
    if study is None and len(studies) == 1:
        return next(iter(studies.values()))
    if study in studies:
        return studies[study]
    held = ", ".join(studies)
    if study is None:
        _error(prog, f"{directory} holds the studies {held}: pick one with --study NAME")
    else:
        _error(prog, f"{directory}: no study {study} (it holds {held})")
    return None


def _compare(
    prog: str, out: Path, items: Sequence[str], study: str | None, formats: Sequence[str]
) -> int:
    runs: dict[str, list[Run]] = {}
    for item in items:
        name, _, directory = item.partition("=")
        if not name or not directory:
            return _error(prog, f"{item}: expected LABEL=DIR, e.g. random=runs/r0")
        records = _one_study(prog, item, study)
        if records is None:
            return 2
        model = read_model(Path(directory), records[0]["study"])
        runs.setdefault(name, []).append(Run(records, model))
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with styled():
        try:
            figure = plot_search_progress({k: [r.records for r in v] for k, v in runs.items()})
        except ValueError as err:
            return _error(prog, str(err))
        try:
            paths = save_figure(figure, out.with_suffix(""), formats)
        except OSError as err:
            return _error(prog, f"cannot write {out}: {err.strerror or err}", 3)
        finally:
            plt.close(figure)
    print(comparison(runs))
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
