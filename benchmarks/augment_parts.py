"""Where an augmented minibatch's time goes, piece by piece, on one CPU core.

    XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \\
        taskset -c 0 python benchmarks/augment_parts.py

Times (the mean of 200 calls, each compiled and run once before) ``augment_batch`` of a
200-image minibatch with shifts, rotations and scalings, then with elastic deformations
too, and the pieces of the latter: the source coordinates, the elastic noise field, its
Gaussian smoothing and the bilinear reads. One core, as each CPU device of a sweep has.
Beside each, XLA's count of its floating-point operations per image (``cost_analysis``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from flaxmnist.core.augment import (  # noqa: E402
    Augment,
    augment_batch,
    resample,
    smooth,
    source_coordinates,
    uniform_field,
)  # fmt: skip

AFFINE = Augment(shift=2, rotate=10.0, scale=0.1)
ELASTIC = Augment(shift=2, rotate=10.0, scale=0.1, elastic_alpha=16.0, elastic_sigma=4.0)


def milliseconds(fn, *args) -> float:
    """The mean time of ``jax.jit(fn)(*args)`` over 200 calls, compiled and warm."""
    fn = jax.jit(fn)
    jax.block_until_ready(fn(*args))
    start = time.perf_counter()
    for _ in range(200):
        jax.block_until_ready(fn(*args))
    return (time.perf_counter() - start) / 200 * 1e3


def main() -> None:
    images = jnp.asarray(np.random.default_rng(0).integers(0, 256, (200, 28, 28)), jnp.uint8)
    key = jax.random.key(1)
    field = uniform_field(key, (200, 2, 28, 28))
    rows, columns = source_coordinates(key, 200, 28, ELASTIC)
    floats = images.astype(jnp.float32) / 255
    parts = {  # every input an argument: a closed-over array would be folded at compile time
        "shift + rotate + scale, whole": (lambda k, x: augment_batch(x, k, AFFINE), key, images),
        "with elastic, whole": (lambda k, x: augment_batch(x, k, ELASTIC), key, images),
        "  source coordinates": (lambda k: source_coordinates(k, 200, 28, ELASTIC), key),
        "    of which the noise field": (lambda k: uniform_field(k, (200, 2, 28, 28)), key),
        "    of which the smoothing": (lambda f: smooth(f, 4.0), field),
        "  bilinear reads": (resample, floats, rows, columns),
    }
    print(f"jax {jax.__version__}, {jax.devices()[0].device_kind}, 200 images")
    for name, (fn, *args) in parts.items():
        seconds, count = milliseconds(fn, *args), flops(fn, *args) / 200
        print(f"{name:32} {seconds:7.3f} ms  {count:9.0f} FLOPs/image")


def flops(fn, *args) -> float:
    """XLA's own count of the floating-point operations of ``jax.jit(fn)(*args)``."""
    analysis = jax.jit(fn).lower(*args).compile().cost_analysis()
    analysis = analysis[0] if isinstance(analysis, list) else analysis
    return float(analysis.get("flops", float("nan")))


if __name__ == "__main__":
    main()
