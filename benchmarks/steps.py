"""The speed steps of BENCHMARKS.md, one at a time, measured side by side in one run.

    python benchmarks/steps.py [--repeats 3] [--lanes 24] [--dropout 0.0]

Each variant trains ``--lanes`` lanes (the ``lr`` study's learning rates × 3 seeds) of the
784-300-10 model for one epoch of the holdout protocol (50,000 training images, then the
10,000 holdout and 10,000 test images) in one compiled call, and reports the median seconds
per config-epoch over interleaved repeats (compile excluded). The variants add the design's
speed steps one by one:

- ``A flat``: how flaxmnist trained before: ``vmap`` over lanes, each lane its own key, so
  every lane gathers, converts and multiplies its own minibatch; Flax ``nn.Dense`` kernels
  ``(in, out)``; dropout masks and the L2 penalty computed even at rate 0.
- ``B seeds outside``: configurations vmapped inside seeds with the key shared
  (``in_axes=None``): one minibatch per seed, multiplied by all its configurations' kernels
  in one wide product; one dropout draw per seed.
- ``C output-major``: B with kernels stored ``(out, in)`` (``flaxmnist.core.models.Dense``).
- ``D compiled out``: C without the dropout, L2 and weight-decay code when no lane uses
  them (plain Adam instead of AdamW): flaxmnist now.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

import flaxmnist  # noqa: E402
from flaxmnist.core import train  # noqa: E402
from flaxmnist.core.models import KERAS1_NORMAL_STDDEV  # noqa: E402
from flaxmnist.core.models import dropout as dropout_layer  # noqa: E402


class FlaxDenseMLP(nn.Module):
    """flaxmnist's MLP as it was before step C: Flax's ``nn.Dense``, kernels ``(in, out)``."""

    hidden: tuple[int, ...]

    @nn.compact
    def __call__(self, images, dropout_rates=None, *, deterministic=True):
        x = images.reshape(images.shape[0], -1).astype(jnp.float32) / 255.0
        for i, width in enumerate(self.hidden):
            init = nn.initializers.normal(KERAS1_NORMAL_STDDEV)
            x = nn.relu(nn.Dense(width, kernel_init=init, name=f"hidden_{i}")(x))
            if not deterministic:
                x = dropout_layer(x, dropout_rates[i], self.make_rng("dropout"))
        init = nn.initializers.glorot_uniform()
        return nn.Dense(10, kernel_init=init, name="output")(x)


def build(variant: str, spec: train.TrainSpec, data, hparams, seeds: int):
    """The compiled one-epoch call of ``variant`` and its arguments."""
    if variant == "D":
        uses_dropout = bool(jnp.any(hparams.dropout > 0))
        spec = dataclasses.replace(
            spec, use_dropout=uses_dropout, use_l2=False, use_weight_decay=False
        )
    # A and B train Flax's (in, out) kernels; C and D flaxmnist's own MLP.
    model = FlaxDenseMLP(spec.hidden) if variant in ("A", "B") else None
    init, run_epoch = flaxmnist.make_train_fns(spec, model=model)
    seed_keys = jnp.stack([jax.random.key(s) for s in range(seeds)])
    configs = hparams.learning_rate.shape[0]

    if variant == "A":  # lanes flat: [seed * config], each with its own copy of its key
        lane_keys = jnp.repeat(seed_keys, configs)
        lane_hparams = jax.tree.map(lambda x: jnp.tile(x, (seeds,) + (1,) * (x.ndim - 1)), hparams)

        def one_epoch(hp, keys, data):
            state = jax.vmap(init, in_axes=(0, 0, None))(hp, keys, data)
            return jax.vmap(run_epoch, in_axes=(0, 0, 0, None, None))(
                state, hp, keys, data, jnp.int32(0)
            )[1]

        args = (lane_hparams, lane_keys, data)
    else:

        def one_epoch(hp, keys, data):
            state = jax.vmap(jax.vmap(init, (0, None, None)), (None, 0, None))(hp, keys, data)
            grid = jax.vmap(jax.vmap(run_epoch, (0, 0, None, None, None)), (0, None, 0, None, None))
            return grid(state, hp, keys, data, jnp.int32(0))[1]

        args = (hparams, seed_keys, data)
    return jax.jit(one_epoch).lower(*args).compile(), args


SEEDS = 3


def lr_lanes(lanes: int, dropout: float):
    """The first ``lanes // 3`` configurations of the ``lr`` study (with ``dropout``), one
    epoch of 784-300-10: ``(spec, hparams, data)`` for ``build``, data on the device."""
    configs = flaxmnist.load_study("lr").configs[: lanes // SEEDS]
    # What the planner compiles for these configurations: no input dropout, max-norm or
    # schedule (FlaxDenseMLP of steps A and B has no input dropout at all).
    spec = flaxmnist.TrainSpec(
        hidden=(300,), epochs=1, use_input_dropout=False, use_max_norm=False, use_schedule=False
    )
    hparams = train.stack_hyperparams(
        [flaxmnist.make_hyperparams(spec, c.learning_rate, dropout=dropout) for c in configs]
    )
    return spec, hparams, jax.device_put(flaxmnist.make_splits(flaxmnist.load_mnist()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lanes", type=int, default=24, help="configs x 3 seeds (24)")
    parser.add_argument("--dropout", type=float, default=0.0, help="every lane's dropout rate")
    args = parser.parse_args(argv)
    spec, hparams, data = lr_lanes(args.lanes, args.dropout)
    lanes = hparams.learning_rate.shape[0] * SEEDS
    variants = ["A", "B", "C", "D"]
    compiled = {v: build(v, spec, data, hparams, SEEDS) for v in variants}
    times: dict[str, list[float]] = {v: [] for v in variants}
    accuracy = {}
    for _ in range(args.repeats):
        for v in variants:
            call, call_args = compiled[v]
            start = time.perf_counter()
            metrics = jax.block_until_ready(call(*call_args))
            times[v].append((time.perf_counter() - start) / lanes)
            accuracy[v] = float(jnp.mean(metrics["val_accuracy"]))
    print(f"{lanes} lanes (784-300-10, dropout {args.dropout}), one holdout-protocol epoch")
    print("| variant | s / config-epoch | × previous | mean val accuracy after 1 epoch |")
    print("|---|---|---|---|")
    previous = None
    for v in variants:
        seconds = statistics.median(times[v])
        ratio = f"{previous / seconds:.2f}× faster" if previous else ""
        print(f"| {v} | {seconds:.3f} | {ratio} | {100 * accuracy[v]:.2f} % |")
        previous = seconds
    return 0


if __name__ == "__main__":
    sys.exit(main())
