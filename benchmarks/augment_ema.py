"""What augmentation, the moving average and label smoothing cost per epoch, interleaved.

    python benchmarks/augment_ema.py [--lanes 24] [--rounds 5] [--hidden 300]

On the CPU split into devices as ``flaxmnist.sweep`` splits it (``--cpu-devices``), trains
``--lanes`` lanes (configurations of one seed, learning rates spread over a decade) of
784-``hidden``-10 on the holdout protocol's 50,000 training images, one program per
variant: none of the three (``base``); whole-pixel shifts of up to 2 pixels (``shift``);
shifts, rotations of up to 10 degrees and scalings by up to 10 % (``affine``); those and
elastic deformations, alpha 16, sigma 4 (``augment``); ``ema_decay = 0.999`` (``ema``);
``label_smoothing = 0.1`` (``smoothing``); all of them (``all``). Every program is compiled
and run once before timing; then each round times one epoch of every variant, the order
rotating from round to round, so the machine's drift falls on every variant alike. Prints
each epoch's seconds, and per variant the median and the median of its per-round ratio to
``base``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flaxmnist.core.data import load_mnist, make_splits  # noqa: E402
from flaxmnist.devices.host import set_cpu_devices  # noqa: E402
from flaxmnist.devices.machine import environment  # noqa: E402
from flaxmnist.devices.placement import lane_mesh, replicate  # noqa: E402
from flaxmnist.run.grid import LaneGrid  # noqa: E402
from flaxmnist.run.plan import hyperparams_of, train_spec_of  # noqa: E402
from flaxmnist.specs.config import Config  # noqa: E402

AUGMENT = {"augment_shift": 2, "augment_rotate": 10.0, "augment_scale": 0.1,
           "augment_elastic_alpha": 16.0, "augment_elastic_sigma": 4.0}  # fmt: skip
VARIANTS = {
    "base": {},
    "shift": {"augment_shift": 2},
    "affine": {"augment_shift": 2, "augment_rotate": 10.0, "augment_scale": 0.1},
    "augment": AUGMENT,
    "ema": {"ema_decay": 0.999},
    "smoothing": {"label_smoothing": 0.1},
    "all": {**AUGMENT, "ema_decay": 0.999, "label_smoothing": 0.1},
}


def make_grid(settings: dict, lanes: int, hidden: int, splits) -> LaneGrid:
    """A compiled, warm grid of ``lanes`` configurations with ``settings``."""
    configs = [
        replace(Config(hidden=(hidden,), **settings), learning_rate=10 ** -(2 + i / lanes))
        for i in range(lanes)
    ]
    spec = train_spec_of(configs[0])
    grid = LaneGrid(spec, [hyperparams_of(spec, c) for c in configs], (0,), splits)
    grid.init()
    grid.step()
    return grid


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lanes", type=int, default=24)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--hidden", type=int, default=300)
    parser.add_argument("--cpu-devices", type=int, default=None, help="as the sweep's")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    args = parser.parse_args()
    problem = set_cpu_devices(args.cpu_devices)  # the CPU split as flaxmnist.sweep splits it
    if problem:
        sys.exit(problem)
    env = environment(list(lane_mesh().devices.flat))
    print(
        f"machine: {env['host']['cpu']}, {env['host']['cpu_count']} cores, "
        f"{env['devices']['count']} device(s); jax {env['versions']['jax']}; "
        f"commit {env['git_commit']}"
    )
    print(f"{args.lanes} lanes of 784-{args.hidden}-10, 50,000 images, one seed")
    splits = replicate(make_splits(load_mnist()), lane_mesh())
    chosen = ["base", *(v for v in args.variants if v != "base")]
    grids = {name: make_grid(VARIANTS[name], args.lanes, args.hidden, splits) for name in chosen}
    names = list(grids)
    seconds = {name: [] for name in names}
    for round_ in range(args.rounds):
        order = names[round_ % len(names) :] + names[: round_ % len(names)]
        for name in order:
            start = time.perf_counter()
            grids[name].step()
            seconds[name].append(time.perf_counter() - start)
        print(f"round {round_ + 1}: " + ", ".join(f"{n} {seconds[n][-1]:.3f}s" for n in names))
    print(f"{'variant':10} {'median s/epoch':>15} {'x base (median of rounds)':>26}")
    for name in names:
        ratios = [s / b for s, b in zip(seconds[name], seconds["base"], strict=True)]
        print(
            f"{name:10} {statistics.median(seconds[name]):15.3f} {statistics.median(ratios):26.3f}"
        )


if __name__ == "__main__":
    main()
