"""What the learned runs of this folder tell beyond compare.txt (REPRODUCTION.md, "Learned
against blind search"), read from their results.jsonl alone:

    python reproduction/learned/rounds.py > reproduction/learned/rounds.txt

- per learned strategy and repeat: configurations, rounds, the holdout-selected
  configuration and the round that proposed it;
- whether tpe, gp and cmaes of one repeat trained the same first round;
- the test accuracy of every configuration of every run that trained 10 epochs with a
  learning rate in [1.5e-3, 3e-3]: how flat the space is where it is good.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from flaxmnist.records import best_config

OUT = Path(__file__).resolve().parent / "out"
LEARNED = ("tpe", "gp", "cmaes", "tpe-halving", "tpe-rounds-of-6")


def records(run: str) -> list[dict]:
    return [json.loads(line) for line in (OUT / run / "results.jsonl").read_text().splitlines()]


def main() -> None:
    for strategy in LEARNED:
        learned_round = 0
        for repeat in range(5):
            mine = records(f"{strategy}-{repeat}")
            best = best_config(mine, 1)
            chosen = next(r for r in mine if r["config_index"] == best)
            rounds = 1 + max(r["search"]["round"] for r in mine)
            learned_round += chosen["search"]["round"] > 0
            proposed = chosen["search"]["round"] + 1
            print(f"{strategy}-{repeat}: {len(mine)} configurations in {rounds} rounds; "
                  f"selected #{best + 1}, proposed in round {proposed}")  # fmt: skip
        print(f"{strategy}: selected from a round after the first in {learned_round} of 5 runs")
    for repeat in range(5):
        first = [
            [r["config"] for r in records(f"{s}-{repeat}")[:24]] for s in ("tpe", "gp", "cmaes")
        ]
        print(f"repeat {repeat}: tpe, gp and cmaes trained the same first 24 configurations: "
              f"{first[0] == first[1] == first[2]}")  # fmt: skip
    band = [
        r["test_accuracy"]
        for run in sorted(p.name for p in OUT.iterdir() if p.is_dir())
        for r in records(run)
        if len(r["history"]["val_accuracy"]) == 10
        and 1.5e-3 <= r["config"]["learning_rate"] <= 3e-3
    ]
    quartiles = np.percentile(band, [25, 50, 75])
    print(f"{len(band)} configurations (10 epochs, learning rate in [1.5e-3, 3e-3]): test accuracy "
          f"quartiles {', '.join(f'{100 * q:.2f} %' for q in quartiles)}")  # fmt: skip


if __name__ == "__main__":
    main()
