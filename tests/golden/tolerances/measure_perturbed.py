"""The early horizon of the golden spec with a deliberate change of numerics, to show that
the golden comparison catches it (issue 24). Usage::

    XLA_FLAGS=--xla_force_host_platform_device_count=2 \
        python tests/golden/tolerances/measure_perturbed.py CHANGE OUT.jsonl

CHANGE: none, eps10 (Adam's epsilon x10), lr101 (every learning rate x1.01), steps (one step
fewer: 400 training images, 2 steps of 200), dropkey (the dropout key folded once more).
"""

import dataclasses
import json
import sys
from pathlib import Path

import jax

import flaxmnist
from flaxmnist.core import optimizer
from flaxmnist.specs.studies import load_studies

GOLDEN = Path(__file__).resolve().parent.parent / "golden.toml"


def main(change: str, out: str) -> None:
    studies, limit = load_studies(str(GOLDEN)), 600
    if change == "eps10":
        optimizer.ADAM_EPS = 1e-7
    elif change == "lr101":
        studies = [
            dataclasses.replace(
                study,
                configs=tuple(
                    dataclasses.replace(c, learning_rate=c.learning_rate * 1.01)
                    for c in study.configs
                ),
            )
            for study in studies
        ]
    elif change == "steps":
        limit = 400
    elif change == "dropkey":
        split = jax.random.split

        def other_dropout_key(key, num=2, **kwargs):
            keys = split(key, num, **kwargs)
            # train's (init, shuffle, dropout) split: the dropout key drawn from another key
            return keys.at[2].set(jax.random.fold_in(keys[2], 7)) if num == 3 else keys

        jax.random.split = other_dropout_key
    elif change != "none":
        raise SystemExit(f"unknown change {change!r}")
    records = flaxmnist.run_sweep(
        studies, epochs=1, limit_train=limit, seeds=2, validate_on="holdout", quiet=True
    )
    Path(out).write_text("".join(json.dumps(r) + "\n" for r in records))


if __name__ == "__main__":
    main(*sys.argv[1:])
