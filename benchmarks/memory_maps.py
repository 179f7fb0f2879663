"""How many memory mappings a process's compiled programs hold, kept and let go (Linux).

    python benchmarks/memory_maps.py [--programs 40]

Trains one epoch of ``--programs`` one-lane grids of 784-M-10, M = 8, 9, … (a program
each: ``flaxmnist.run.programs.compile_programs``), on 400 training images, and prints the
process's mappings (``/proc/self/maps``) before, after every tenth program and at the end,
and the system's limit (``/proc/sys/vm/max_map_count``). Run twice: with the cap flaxmnist
keeps (``programs.MAX_COMPILED``) and with every program kept, as before the cap
(``--keep-all``); the first line of each run is its setting.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402

from flaxmnist.core.data import load_mnist, make_splits  # noqa: E402
from flaxmnist.core.train import TrainSpec, make_hyperparams  # noqa: E402
from flaxmnist.run import programs  # noqa: E402
from flaxmnist.run.grid import LaneGrid  # noqa: E402


def memory_maps() -> int:
    """The mappings this process holds now."""
    with open("/proc/self/maps") as maps:
        return sum(1 for _ in maps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--programs", type=int, default=40)
    parser.add_argument("--keep-all", action="store_true", help="keep every program (no cap)")
    args = parser.parse_args()
    if args.keep_all:
        programs.MAX_COMPILED = args.programs + 1
    limit = Path("/proc/sys/vm/max_map_count").read_text().strip()
    print(f"programs kept at most: {programs.MAX_COMPILED}; vm.max_map_count: {limit}")
    data = jax.device_put(make_splits(load_mnist(), limit_train=400))
    print(f"before any program: {memory_maps()} mappings")
    for count, width in enumerate(range(8, 8 + args.programs), 1):
        spec = TrainSpec(hidden=(width,), batch_size=200)
        grid = LaneGrid(spec, [make_hyperparams(spec, 1e-3)], (0,), data)
        grid.init()
        grid.step()
        del grid
        if count % 10 == 0 or count == args.programs:
            print(f"after {count} programs: {memory_maps()} mappings")


if __name__ == "__main__":
    main()
