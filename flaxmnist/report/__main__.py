"""``python -m flaxmnist.report DIR``: table, summary.csv and plots from results.jsonl."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from flaxmnist.errors import RunDirError
from flaxmnist.report import format_table, load_results, write_report


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; returns the exit code (2: no readable results, named on stderr)."""
    parser = argparse.ArgumentParser(
        prog="python -m flaxmnist.report",
        description="Re-render the table, summary.csv and the plots of a run directory from "
        "its results.jsonl alone (nothing is trained).",
    )
    parser.add_argument("run_dir", type=Path, help="a directory written by flaxmnist.sweep")
    args = parser.parse_args(argv)
    results = args.run_dir / "results.jsonl"
    try:
        records = load_results(results)
    except FileNotFoundError:
        print(f"{parser.prog}: error: {results}: no such file", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"{parser.prog}: error: {results}: {err.strerror}", file=sys.stderr)
        return 2
    except RunDirError as err:
        print(f"{parser.prog}: error: {err}", file=sys.stderr)
        return 2
    if not records:
        print(f"{parser.prog}: error: {results}: no results yet", file=sys.stderr)
        return 2
    print(format_table(records))
    for path in write_report(records, args.run_dir):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
