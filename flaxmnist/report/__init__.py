"""Tables, CSV and plots from results: one row per configuration, mean ± std over seeds.

Works from records alone (the dicts of ``results.jsonl``), so a finished run can be
re-reported without training anything: ``python -m flaxmnist.report DIR``. In a notebook::

    records = flaxmnist.load_results("runs/lr-20261130-120000")
    print(flaxmnist.format_table(records))
    flaxmnist.plot_accuracy(records, ax=ax)   # or plot_curves, plot_grid, save_plots

``table`` holds the table, ``summary_csv`` its CSV (``summary.csv``), ``plots`` the
pictures (``curves``, the learning curves' pieces), ``search`` those of search strategies
(``search_trace``, ``plot_search_progress``, ``plot_halving``, ``plot_pbt``), ``brackets``
Hyperband's and BOHB's (``plot_brackets``), ``pareto`` a two-objective study's front,
``transfer`` a width × learning-rate grid's answer (does the best learning rate move with
width?), ``tensorboard`` the TensorBoard export, ``__main__`` the command line
(``--compare`` sets runs of several strategies side by side).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flaxmnist.report.brackets import plot_brackets
from flaxmnist.report.pareto import plot_pareto
from flaxmnist.report.plots import (
    is_grid_of_two_layers,
    plot_accuracy,
    plot_curves,
    plot_grid,
    save_plots,
    save_search_plots,
)
from flaxmnist.report.search import (
    plot_halving,
    plot_pbt,
    plot_search_progress,
    search_strategy,
    search_trace,
)
from flaxmnist.report.style import FORMATS
from flaxmnist.report.summary_csv import write_summary_csv
from flaxmnist.report.table import (
    best_row,
    format_table,
    mean_curve,
    split_by_study,
    study_description,
    summarize,
    varied_keys,
)
from flaxmnist.run.rundir import RESULTS, check_records, read_jsonl

__all__ = [
    "best_row",
    "format_table",
    "is_grid_of_two_layers",
    "load_results",
    "mean_curve",
    "plot_accuracy",
    "plot_brackets",
    "plot_curves",
    "plot_grid",
    "plot_halving",
    "plot_pareto",
    "plot_pbt",
    "plot_search_progress",
    "save_plots",
    "save_search_plots",
    "search_strategy",
    "search_trace",
    "split_by_study",
    "study_description",
    "summarize",
    "varied_keys",
    "write_report",
    "write_summary_csv",
]


def load_results(run_dir: str | Path) -> list[dict[str, Any]]:
    """The records of a run directory (its ``results.jsonl``), or of a results file.

    Example::

        >>> import tempfile, flaxmnist
        >>> out = tempfile.mkdtemp()
        >>> _ = flaxmnist.run_sweep("lr", epochs=1, seeds=1, limit_train=400, out=out)
        >>> records = flaxmnist.load_results(out)
        >>> len(records), records[0]["study"]
        (24, 'lr')

    A last line cut short is left out with a ``UserWarning`` (see ``rundir.read_jsonl``).

    Raises:
      FileNotFoundError: no results file there.
      RunDirError: a line before the last is not a JSON object, or an object is not a
        result (it lacks one of ``rundir.RECORD_KEYS``); the message names file and line or record.
    """
    path = Path(run_dir)
    path = path / RESULTS if path.is_dir() else path
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no results file")
    records = read_jsonl(path)
    check_records(records, path)
    return records


def write_report(
    records: Sequence[dict[str, Any]],
    directory: str | Path,
    descriptions: Mapping[str, str] | None = None,
    formats: Sequence[str] = FORMATS,
) -> list[Path]:
    """Write ``summary.csv`` and every plot into ``directory``; returns the paths.

    ``descriptions`` (study name -> description) and ``formats`` (of each figure: PNG, PDF
    and SVG by default) go to ``save_plots``.
    """
    return [
        write_summary_csv(records, Path(directory) / "summary.csv"),
        *save_plots(records, directory, descriptions, formats),
    ]
