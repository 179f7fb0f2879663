"""Speed of flaxmnist beside Keras 3 (JAX backend) and PyTorch, on the same work, in one run.

    python benchmarks/bench.py [--epochs 3] [--repeats 3] [--json results.json]

(``nox -s bench`` installs the peers and runs this.) Every measurement runs in its own
subprocess (a *worker*), so that each gets a fresh process, its own peak memory
(``ru_maxrss`` of that child) and no state from the others; the parent interleaves the
workers round by round and reports medians.

The work: the reference notebook's model, 784-300-10 with ReLU, Adam (lr 0.001, Keras 1's
constants), batch 200, float32, trained on the 60,000 MNIST training images, with the 10,000
test images evaluated after every epoch (the notebook's protocol). One *config-epoch* is one
such epoch of one configuration: 62.3 GFLOP of matrix products (``config_epoch_flops``).

Contenders:

- ``flaxmnist lr study``: the ``lr`` study (24 learning rates × 3 seeds = 72 lanes) through
  ``run_sweep``, ``--validate-on test``: the design's vmapped, sharded call.
- ``flaxmnist lr study, 1 device``: the same on one CPU device instead of the default two.
- ``flaxmnist lr study, dropout 0.5``: the same 72 lanes, each with dropout 0.5.
- ``flaxmnist lr study, bfloat16``: the same with ``--dtype bfloat16``.
- ``flaxmnist lr study, 72 lanes per call``: the same, one call of 72 lanes instead of three
  of 24 (``--max-lanes 72``).
- ``flaxmnist one config``: one configuration, one seed: flaxmnist used like a plain loop.
- ``Keras 3 (JAX) model.fit``: one configuration, ``model.fit(..., validation_data=test)``.
- ``PyTorch loop``: one configuration, a plain training loop (``torch.optim.Adam``).

Seconds per config-epoch are steady-state: flaxmnist's training time without compilation;
the peers' median epoch after the first (their first epoch, which holds Keras' tracing and
compilation, is reported separately as "first epoch"). The GEMM rate (float32 and bfloat16,
XLA and NumPy) is measured in the same run; the *floor* is the config-epoch's FLOPs at the
best float32 rate.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TRAIN_IMAGES, EVAL_IMAGES, BATCH = 60_000, 10_000, 200
WIDTHS = (784, 300, 10)


def config_epoch_flops(widths=WIDTHS, train=TRAIN_IMAGES, evaluate=EVAL_IMAGES) -> float:
    """Matrix-product FLOPs of one epoch: forward, backward (no input gradient), evaluation."""
    layers = list(zip(widths, widths[1:], strict=False))
    forward = sum(2 * a * b for a, b in layers)
    weight_grads = forward
    input_grads = sum(2 * a * b for a, b in layers[1:])  # the images need no gradient
    return train * (forward + weight_grads + input_grads) + evaluate * forward


# ---------------------------------------------------------------- workers (one per process)


def _mnist_float():
    import numpy as np

    from flaxmnist.core.data import load_mnist

    mnist = load_mnist()
    flat = lambda x: x.reshape(len(x), -1).astype(np.float32) / 255.0  # noqa: E731
    return (
        flat(mnist.train_images),
        mnist.train_labels.astype(np.int64),
        flat(mnist.test_images),
        mnist.test_labels.astype(np.int64),
    )


def worker_gemm(_epochs: int) -> dict:
    import jax
    import jax.numpy as jnp
    import numpy as np

    n = 2048
    flops = 2 * n**3
    result = {}
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    b = np.random.default_rng(1).standard_normal((n, n), dtype=np.float32)
    a @ b
    times = []
    for _ in range(10):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    result["numpy_float32"] = flops / min(times) / 1e9
    for dtype in ("float32", "bfloat16"):
        x, y = jnp.asarray(a, dtype), jnp.asarray(b, dtype)
        dot = jax.jit(lambda x, y: x @ y)
        dot(x, y).block_until_ready()
        times = []
        for _ in range(10):
            start = time.perf_counter()
            dot(x, y).block_until_ready()
            times.append(time.perf_counter() - start)
        result[f"xla_{dtype}"] = flops / min(times) / 1e9
    return result


def _flaxmnist_sweep(study, epochs: int, seeds: int, cpu_devices: int, **options) -> dict:
    import jax

    jax.config.update("jax_num_cpu_devices", cpu_devices)
    import numpy as np

    from flaxmnist import RunStats, run_sweep

    timing = RunStats()
    records = run_sweep(
        study, epochs=epochs, seeds=seeds, validate_on="test", stats=timing, quiet=True, **options
    )
    config_epochs = len(records) * epochs
    at_default_lr = [r["test_accuracy"] for r in records if r["config"]["learning_rate"] == 1e-3]
    return {
        "seconds_per_config_epoch": timing.train_seconds / config_epochs,
        "compile_seconds": timing.compile_seconds,
        "lanes": len(records),
        "devices": len(jax.devices()),
        "test_accuracy": float(np.mean(at_default_lr)),
        "accuracy_lanes": len(at_default_lr),
    }


def _lr_study(dropout: float = 0.0):
    from dataclasses import replace

    from flaxmnist import load_study

    study = load_study("lr")
    return replace(study, configs=tuple(replace(c, dropout=(dropout,)) for c in study.configs))


def worker_flaxmnist_study(epochs: int) -> dict:
    return _flaxmnist_sweep(_lr_study(), epochs, seeds=3, cpu_devices=_cpu_devices())


def worker_flaxmnist_study_1dev(epochs: int) -> dict:
    return _flaxmnist_sweep(_lr_study(), epochs, seeds=3, cpu_devices=1)


def worker_flaxmnist_dropout(epochs: int) -> dict:
    return _flaxmnist_sweep(_lr_study(0.5), epochs, seeds=3, cpu_devices=_cpu_devices())


def worker_flaxmnist_bfloat16(epochs: int) -> dict:
    return _flaxmnist_sweep(_lr_study(), epochs, 3, _cpu_devices(), dtype="bfloat16")


def worker_flaxmnist_72(epochs: int) -> dict:
    return _flaxmnist_sweep(_lr_study(), epochs, 3, _cpu_devices(), max_lanes=72)


def worker_flaxmnist_single(epochs: int) -> dict:
    from dataclasses import replace

    study = _lr_study()
    # The study lists lr 0.001 twice: keep the first, so that this is one lane.
    first = next(c for c in study.configs if c.learning_rate == 1e-3)
    one = replace(study, configs=(first,))
    return _flaxmnist_sweep(one, epochs, seeds=1, cpu_devices=1)


def _cpu_devices() -> int:
    from flaxmnist.sweep import DEFAULT_CPU_DEVICES

    return DEFAULT_CPU_DEVICES


def worker_keras(epochs: int) -> dict:
    os.environ["KERAS_BACKEND"] = "jax"
    import keras

    x, y, x_test, y_test = _mnist_float()
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((784,)),
            keras.layers.Dense(
                300, activation="relu", kernel_initializer=keras.initializers.RandomNormal(0, 0.05)
            ),
            keras.layers.Dense(10),
        ]
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3, beta_1=0.9, beta_2=0.999, epsilon=1e-8),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )

    class EpochTimes(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.start)

    times: list[float] = []
    history = model.fit(
        x,
        y,
        batch_size=BATCH,
        epochs=epochs,
        validation_data=(x_test, y_test),
        shuffle=True,
        verbose=0,
        callbacks=[EpochTimes()],
    )
    return _steady(times) | {
        "test_accuracy": float(history.history["val_accuracy"][-1]),
        "version": keras.__version__,
    }


def worker_torch(epochs: int) -> dict:
    import torch

    x, y, x_test, y_test = (torch.from_numpy(a) for a in _mnist_float())
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(784, 300), torch.nn.ReLU(), torch.nn.Linear(300, 10)
    )
    torch.nn.init.normal_(model[0].weight, 0.0, 0.05)
    torch.nn.init.zeros_(model[0].bias)
    torch.nn.init.xavier_uniform_(model[2].weight)
    torch.nn.init.zeros_(model[2].bias)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = torch.nn.CrossEntropyLoss()
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        for batch in torch.randperm(len(x)).split(BATCH):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x[batch]), y[batch]).backward()
            optimizer.step()
        model.eval()
        with torch.no_grad():
            correct = sum(
                (model(xb).argmax(1) == yb).sum().item()
                for xb, yb in zip(x_test.split(1000), y_test.split(1000), strict=True)
            )
        times.append(time.perf_counter() - start)
    return _steady(times) | {
        "test_accuracy": correct / len(x_test),
        "threads": torch.get_num_threads(),
        "version": torch.__version__,
    }


def _steady(epoch_times: list[float]) -> dict:
    later = epoch_times[1:] or epoch_times
    return {"seconds_per_config_epoch": statistics.median(later), "first_epoch": epoch_times[0]}


WORKERS = {
    "gemm": worker_gemm,
    "flaxmnist lr study": worker_flaxmnist_study,
    "flaxmnist lr study, 1 device": worker_flaxmnist_study_1dev,
    "flaxmnist lr study, dropout 0.5": worker_flaxmnist_dropout,
    "flaxmnist lr study, bfloat16": worker_flaxmnist_bfloat16,
    "flaxmnist lr study, 72 lanes per call": worker_flaxmnist_72,
    "flaxmnist one config": worker_flaxmnist_single,
    "Keras 3 (JAX) model.fit": worker_keras,
    "PyTorch loop": worker_torch,
}


def run_worker(name: str, epochs: int) -> dict:
    """Run one worker in a fresh process; its JSON result plus its peak RSS."""
    command = [sys.executable, __file__, "--worker", name, "--epochs", str(epochs)]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    stdout = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    if status != 0:
        raise RuntimeError(f"worker {name!r} failed with status {status}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result["peak_rss_mb"] = usage.ru_maxrss / 1024
    return result


# ---------------------------------------------------------------- the report


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _meta(argv) -> dict:
    """What wrote the results: the command, the commit, the machine, the versions."""
    from importlib import metadata

    commit = subprocess.run(
        ["git", "-C", str(ROOT), "describe", "--always", "--dirty"], capture_output=True, text=True
    ).stdout.strip()
    versions = {}
    for name in ("flaxmnist", "jax", "jaxlib", "flax", "optax", "keras", "torch", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "command": " ".join(
            ["python benchmarks/bench.py", *(sys.argv[1:] if argv is None else argv)]
        ),
        "commit": commit or None,
        "machine": _cpu_name(),
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "versions": versions,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=3, help="epochs per measurement (3)")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds (3)")
    parser.add_argument("--only", nargs="*", help="run only these contenders")
    parser.add_argument("--json", type=Path, help="also write every measurement here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2: the peers' first epoch is warm-up")
    if args.worker:
        print(json.dumps(WORKERS[args.worker](args.epochs)))
        return 0

    names = [n for n in WORKERS if n != "gemm" and (not args.only or n in args.only)]
    runs: dict[str, list[dict]] = {n: [] for n in ["gemm", *names]}
    for round_ in range(args.repeats):
        for name in ["gemm", *names]:
            print(f"round {round_ + 1}/{args.repeats}: {name}...", file=sys.stderr, flush=True)
            runs[name].append(run_worker(name, args.epochs))

    gemm = {k: statistics.median(r[k] for r in runs["gemm"]) for k in runs["gemm"][0]}
    fp32_rate = max(gemm["numpy_float32"], gemm["xla_float32"])
    flops = config_epoch_flops()
    floor = flops / (fp32_rate * 1e9)
    meta = _meta(argv)
    print(f"\ncommand: {meta['command']}\ncommit: {meta['commit']}")
    print(f"machine: {meta['machine']}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(
        f"GEMM 2048³ (median of {args.repeats}): NumPy float32 {gemm['numpy_float32']:.0f}, "
        f"XLA float32 {gemm['xla_float32']:.0f}, XLA bfloat16 {gemm['xla_bfloat16']:.0f} GFLOP/s"
    )
    print(
        f"config-epoch: {flops / 1e9:.1f} GFLOP; float32 floor at {fp32_rate:.0f} GFLOP/s: "
        f"{floor:.3f} s\n"
    )
    study_runs = runs.get("flaxmnist lr study") or runs[names[0]]
    study = statistics.median(r["seconds_per_config_epoch"] for r in study_runs)
    header = (
        "| contender | s / config-epoch | GFLOP/s | × floor | × the flaxmnist study's time "
        "| compile or first epoch (s) | peak RSS (MB) | test accuracy |"
    )
    print(header)
    print("|" + "---|" * 8)
    for name in names:
        rows = runs[name]
        seconds = statistics.median(r["seconds_per_config_epoch"] for r in rows)
        first = statistics.median(r.get("compile_seconds", r.get("first_epoch", 0)) for r in rows)
        memory = statistics.median(r["peak_rss_mb"] for r in rows)
        accuracy = statistics.median(r["test_accuracy"] for r in rows)
        print(
            f"| {name} | {seconds:.3f} | {flops / seconds / 1e9:.0f} | {seconds / floor:.2f} "
            f"| {seconds / study:.2f}× | {first:.1f} | {memory:.0f} | {100 * accuracy:.2f} % |"
        )
    if args.json:
        summary = {"meta": meta, "gemm": gemm, "floor": floor, "runs": runs}
        args.json.write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
