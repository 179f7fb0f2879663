"""Sampler overhead: the seconds Optuna's samplers take to propose and be told a round, as
a share of the round's training wall time, as the trials grow.

    python benchmarks/sampler_overhead.py [--rounds 30] [--round-size 24] [--epochs 10]

First it measures what a round costs to train here: ``--round-size`` lanes (one seed each)
of 784-300-10 for one epoch of the holdout protocol (50,000 training images), compiled
before, timed over ``--repeats`` epochs (the median), times ``--epochs``. Then, for each of
``tpe``, ``gp``, ``cmaes`` and ``nsga2`` (``--samplers``) with the search space of
``reproduction/learned`` (learning rate, dropout, input dropout), it asks and tells
``--rounds`` rounds of ``--round-size`` trials through ``flaxmnist.search.sampler.Proposer``, as a
learned search does, with made-up holdout accuracies (a smooth function of the parameters
plus seeded noise, so nothing trains), and prints each round's ask and tell seconds and
their share of the round's training time. The share the issue aims for is under 2 %.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from flaxmnist.core.data import load_mnist, make_splits  # noqa: E402
from flaxmnist.devices.placement import lane_mesh, replicate  # noqa: E402
from flaxmnist.run.grid import LaneGrid  # noqa: E402
from flaxmnist.run.plan import hyperparams_of, train_spec_of  # noqa: E402
from flaxmnist.search.registry import STRATEGIES  # noqa: E402
from flaxmnist.search.sampler import Proposer  # noqa: E402
from flaxmnist.search.trials import COMPLETE, Outcome  # noqa: E402
from flaxmnist.specs.config import Config  # noqa: E402
from flaxmnist.studies import parse_study  # noqa: E402

SPEC = ROOT / "reproduction" / "learned" / "specs" / "tpe-0.toml"


def epoch_seconds(lanes: int, repeats: int) -> float:
    """The median wall time of one epoch of ``lanes`` lanes of 784-300-10 (compiled)."""
    splits = replicate(make_splits(load_mnist()), lane_mesh())
    configs = [Config(hidden=(300,), learning_rate=10 ** -(2 + i / lanes)) for i in range(lanes)]
    spec = train_spec_of(configs[0])
    grid = LaneGrid(spec, [hyperparams_of(spec, c) for c in configs], (0,), splits)
    grid.init()
    grid.step()  # compiled and warm
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        grid.step()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def made_up_accuracy(settings: dict, rng: np.random.Generator) -> float:
    """A smooth surface with one optimum, and noise: what a sampler would be told."""
    lr = math.log10(settings["learning_rate"])
    value = 0.985 - 0.01 * (lr + 2.7) ** 2 - 0.02 * (settings["dropout"] - 0.3) ** 2
    return float(value - 0.01 * settings["input_dropout"] + rng.normal(0, 0.001))


def overhead(strategy: str, rounds: int, size: int, round_seconds: float) -> list[tuple]:
    """Per round: trials before it, ask seconds, tell seconds."""
    document = tomllib.loads(SPEC.read_text())
    search = parse_study({**document, "strategy": strategy}, "bench", str(SPEC)).search
    proposer = Proposer(STRATEGIES[strategy], search, size)
    rng, rows = np.random.default_rng(0), []
    for number in range(rounds):
        start = time.perf_counter()
        proposals = proposer.ask(size)
        asked = time.perf_counter()
        first = len(proposer.study.trials) - size
        proposer.tell(
            {first + i: Outcome(COMPLETE, (made_up_accuracy(p, rng),), {})
             for i, p in enumerate(proposals)}
        )  # fmt: skip
        told = time.perf_counter()
        rows.append((number + 1, first, asked - start, told - asked))
        share = (told - start) / round_seconds
        print(f"{strategy:6} round {number + 1:3}  trials before {first:4}  ask "
              f"{asked - start:7.3f} s  tell {told - asked:6.3f} s  share {100 * share:6.2f} %",
              flush=True)  # fmt: skip
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--round-size", type=int, default=24)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--samplers", nargs="+", default=["tpe", "gp", "cmaes", "nsga2"])
    args = parser.parse_args()
    epoch = epoch_seconds(args.round_size, args.repeats)
    round_seconds = args.epochs * epoch
    print(f"a round: {args.round_size} lanes of 784-300-10 x {args.epochs} epochs = "
          f"{args.epochs} x {epoch:.2f} s (median of {args.repeats} epochs) = "
          f"{round_seconds:.1f} s of training")  # fmt: skip
    for strategy in args.samplers:
        rows = overhead(strategy, args.rounds, args.round_size, round_seconds)
        shares = [(ask + tell) / round_seconds for _, _, ask, tell in rows]
        over = next((n for (n, *_), s in zip(rows, shares, strict=True) if s > 0.02), None)
        print(f"{strategy}: mean share {100 * np.mean(shares):.2f} %, largest "
              f"{100 * max(shares):.2f} % (round {int(np.argmax(shares)) + 1}); "
              + ("under 2 % in every round" if over is None else
                 f"first over 2 % at round {over} ({(over - 1) * args.round_size} trials)"),
              flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
