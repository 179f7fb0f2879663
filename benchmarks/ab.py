"""The same study from two source trees, interleaved round by round: is one slower?

    python benchmarks/ab.py OLD_TREE NEW_TREE [--rounds 3] [-- SWEEP OPTIONS]

Each round runs ``python -m flaxmnist.sweep`` once from each tree (a fresh process, started
in that tree so that its ``flaxmnist`` is imported), with the options after ``--`` (default:
``lr --epochs 2 --seeds 3``, the compile cache off, and a new ``--out`` each time), and reads
the sweep's closing line: seconds in all, compiling and training. It prints every run and
the medians; training seconds per config-epoch are the figure to compare. A tree is a
checkout of flaxmnist, e.g. ``git worktree add /tmp/old COMMIT``.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

SUMMARY = re.compile(
    r"(\d+) configs x (\d+) seeds in ([\d.]+)s \(([\d.]+)s compiling, ([\d.]+)s training"
)


def run_once(tree: Path, options: list[str], epochs: int) -> dict[str, float]:
    out = Path(tempfile.mkdtemp(prefix="flaxmnist-ab-")) / "run"
    command = [sys.executable, "-m", "flaxmnist.sweep", *options, "--out", str(out)]
    result = subprocess.run(command, cwd=tree, capture_output=True, text=True, check=True)
    configs, seeds, total, compiling, training = SUMMARY.search(result.stderr).groups()
    config_epochs = int(configs) * int(seeds) * epochs
    return {
        "total": float(total),
        "compile": float(compiling),
        "train": float(training),
        "per_config_epoch": float(training) / config_epochs,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("options", nargs="*", default=["lr", "--epochs", "2", "--seeds", "3"])
    args = parser.parse_args(argv)
    options = [*args.options, "--no-compile-cache"]
    epochs = int(options[options.index("--epochs") + 1])
    runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    for round_number in range(1, args.rounds + 1):
        for name in ("old", "new"):
            result = run_once(getattr(args, name), options, epochs)
            runs[name].append(result)
            print(
                f"round {round_number} {name}: {result['total']:.1f} s in all, "
                f"{result['compile']:.1f} s compiling, {result['train']:.1f} s training, "
                f"{result['per_config_epoch']:.3f} s per config-epoch",
                flush=True,
            )
    medians = {n: statistics.median(r["per_config_epoch"] for r in runs[n]) for n in runs}
    pairs = zip(runs["old"], runs["new"], strict=True)
    ratios = [n["per_config_epoch"] / o["per_config_epoch"] for o, n in pairs]
    print(
        f"median s per config-epoch: old {medians['old']:.3f}, new {medians['new']:.3f}; "
        f"new / old per round: {', '.join(f'{r:.3f}' for r in ratios)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
