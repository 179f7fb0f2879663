"""``python -m flaxmnist.report DIR``: table, summary.csv and plots from results.jsonl."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from flaxmnist.errors import RunDirError, one_line_warnings
from flaxmnist.report import format_table, load_results, write_report


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (2: no readable results; 3: the report cannot
    be written; either named in one line on stderr)."""
    parser = argparse.ArgumentParser(
        prog="python -m flaxmnist.report",
        description="Re-render the table, summary.csv and the plots of a run directory from "
        "its results.jsonl alone (nothing is trained).",
    )
    parser.add_argument("run_dir", type=Path, help="a directory written by flaxmnist.sweep")
    args = parser.parse_args(argv)
    with one_line_warnings(parser.prog):
        return _report(parser.prog, args.run_dir)


def _report(prog: str, run_dir: Path) -> int:
    results = run_dir / "results.jsonl"
    try:
        records = load_results(results)
    except FileNotFoundError:
        print(f"{prog}: error: {results}: no such file", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"{prog}: error: {results}: {err.strerror}", file=sys.stderr)
        return 2
    except RunDirError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    if not records:
        print(f"{prog}: error: {results}: no results yet", file=sys.stderr)
        return 2
    print(format_table(records))
    try:
        paths = write_report(records, run_dir)
    except OSError as err:
        print(f"{prog}: error: cannot write the report into {run_dir}: {err.strerror or err}",
              file=sys.stderr)  # fmt: skip
        return 3
    for path in paths:
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
