"""Where one epoch of flaxmnist's training goes, operation by operation (XLA's own trace).

    python benchmarks/op_profile.py [--lanes 24] [--dropout 0.0] [--top 15]

Compiles the ``D`` variant of ``steps.py`` (flaxmnist as it trains now: configurations
inside seeds, output-major kernels, unused regularisers compiled out), runs one
holdout-protocol epoch under ``jax.profiler``, and prints the operations that took the most
time, per training step (250 per epoch), with the JAX operation each comes from. It also
prints the machine's GEMM rate on the shapes of the first layer's two big products.
"""

from __future__ import annotations

import argparse
import collections
import gzip
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from steps import SEEDS, build, lr_lanes  # noqa: E402

STEPS_PER_EPOCH = 250


def per_op_times(compiled, args) -> list[tuple[str, float, int, str]]:
    """(op name, seconds, calls, JAX op) per XLA operation of one call, slowest first."""
    hlo = compiled.as_text()
    jax.block_until_ready(compiled(*args))
    with tempfile.TemporaryDirectory() as directory:
        jax.profiler.start_trace(directory, create_perfetto_trace=True)
        jax.block_until_ready(compiled(*args))
        jax.profiler.stop_trace()
        trace_file = next(Path(directory).rglob("*.json.gz"))
        with gzip.open(trace_file) as handle:
            trace = json.load(handle)
    events = trace["traceEvents"] if isinstance(trace, dict) else trace
    seconds, calls = collections.Counter(), collections.Counter()
    for event in events:
        if event.get("ph") == "X":
            seconds[event["name"]] += event.get("dur", 0) / 1e6
            calls[event["name"]] += 1
    rows = []
    for name, total in seconds.most_common():
        if name.startswith("$") or "Thunk" in name or "ThreadPool" in name:
            continue
        match = re.search(
            r"^\s*(?:ROOT )?%" + re.escape(name) + r" = (\S+) .*?op_name=\"([^\"]*)\"", hlo, re.M
        )
        source = f"{match.group(1)} {match.group(2).split('/')[-1]}" if match else ""
        rows.append((name, total, calls[name], source))
    return rows


def gemm_rate(m: int, k: int, n: int) -> float:
    x, w = jnp.ones((m, k)), jnp.ones((k, n))
    dot = jax.jit(jnp.dot)
    dot(x, w).block_until_ready()
    best = min(
        _timed(lambda: dot(x, w).block_until_ready())
        for _ in range(20)  # noqa: B023
    )
    return 2 * m * k * n / best / 1e9


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lanes", type=int, default=24, help="configs x 3 seeds (24)")
    parser.add_argument("--dropout", type=float, default=0.0)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args(argv)
    spec, hparams, data = lr_lanes(args.lanes, args.dropout)
    compiled, call_args = build("D", spec, data, hparams, SEEDS)
    rows = per_op_times(compiled, call_args)
    total = sum(r[1] for r in rows)
    configs_per_seed = hparams.learning_rate.shape[0]
    lanes = configs_per_seed * SEEDS
    print(f"{lanes} lanes, one epoch: {total:.2f} s in XLA operations")
    print("| operation | ms per step | share | calls | shape and JAX op |")
    print("|---|---|---|---|---|")
    for name, seconds, calls, source in rows[: args.top]:
        print(
            f"| {name} | {1000 * seconds / STEPS_PER_EPOCH:.2f} | {seconds / total:.0%} "
            f"| {calls} | `{source}` |"
        )
    for label, shape in (
        ("forward, one seed", (200, 784, 300 * configs_per_seed)),
        ("kernel gradient, one seed", (300 * configs_per_seed, 200, 784)),
        ("square 2048", (2048, 2048, 2048)),
    ):
        print(f"GEMM {label} {shape}: {gemm_rate(*shape):.0f} GFLOP/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
