"""The whole notebook on one GPU: every study, all lanes at once, beside a PyTorch loop.

    PYTHONPATH=. python benchmarks/gpu.py [--seeds 3] [--quick] [--pad-widths auto|on|off]

(``benchmarks/gpu.sh`` runs it from the source tree on a machine with jax, flax, optax and
torch preinstalled and no network.) For each study of ``all`` it runs ``run_sweep`` with
every shape group in one call (no lane cap; ``--validate-on test``, the notebook's
protocol, so one 10,000-image evaluation per epoch) and prints the wall time (compile
included), the compile time, the matrix-product FLOPs and the achieved TFLOP/s, twice, each
pass in a process of its own: cold (every program compiled) and warm (every program from the
persistent compilation cache the cold pass filled, as in a rerun of a study). Then it
times a plain PyTorch loop of one configuration (784-300-10, Adam, batch 200) on the same
device and prints how long that loop would take for the whole grid, config-epoch by
config-epoch, and the ratio.

``--quick`` runs everything on 2,000 training images for one epoch: a check that the
script works (on any machine), not a measurement. ``--pad-widths`` is ``run_sweep``'s
(auto: on for a GPU, off for a CPU): ``on`` compiles one program per depth.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import jax  # noqa: E402
from bench import config_epoch_flops  # noqa: E402

from flaxmnist import RunStats, run_sweep  # noqa: E402
from flaxmnist.devices.compile_cache import enable_compilation_cache  # noqa: E402
from flaxmnist.studies import load_studies  # noqa: E402

TEST_IMAGES = 10_000


def torch_seconds_per_config_epoch(train_images: int, epochs: int) -> tuple[float, str]:
    import numpy as np
    import torch

    from flaxmnist.core.data import load_mnist

    device = "cuda" if torch.cuda.is_available() else "cpu"
    mnist = load_mnist()
    x = torch.from_numpy(
        mnist.train_images[:train_images].reshape(-1, 784).astype(np.float32) / 255
    ).to(device)
    y = torch.from_numpy(mnist.train_labels[:train_images].astype(np.int64)).to(device)
    x_test = torch.from_numpy(mnist.test_images.reshape(-1, 784).astype(np.float32) / 255)
    x_test, y_test = x_test.to(device), torch.from_numpy(mnist.test_labels.astype(np.int64))
    y_test = y_test.to(device)
    nn = torch.nn
    model = nn.Sequential(nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 10)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = nn.CrossEntropyLoss()
    times = []
    for _ in range(epochs + 1):  # the first epoch warms up (CUDA context, kernels)
        start = time.perf_counter()
        for batch in torch.randperm(len(x), device=device).split(200):
            optimizer.zero_grad(set_to_none=True)
            loss_fn(model(x[batch]), y[batch]).backward()
            optimizer.step()
        with torch.no_grad():
            (model(x_test).argmax(1) == y_test).float().mean().item()
        if device == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:]), device


PAD = {"auto": None, "on": True, "off": False}


def grid(
    seeds: int, limit_train: int | None, epochs: int | None, pad: str = "auto"
) -> tuple[float, int, int]:
    """Run every study of ``all``, print a table row each; total seconds, FLOPs, config-epochs."""
    train_images = limit_train or 60_000
    total_seconds = total_flops = total_config_epochs = 0
    print(
        "| study | lanes | config-epochs | programs | wall s (compile incl.) | compile s "
        "| train s | TFLOP/s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for study in load_studies("all"):
        timing = RunStats()
        start = time.perf_counter()
        records = run_sweep(
            study,
            epochs=epochs,
            seeds=seeds,
            limit_train=limit_train,
            validate_on="test",
            max_lanes=10**9,  # every shape group in one call
            memory_budget=2**62,
            stats=timing,
            pad_widths=PAD[pad],
            quiet=True,  # the GPU machine may lack tqdm; this script prints its own table
        )
        wall = time.perf_counter() - start
        flops = sum(
            len(r["history"]["val_accuracy"])
            * config_epoch_flops((784, *r["config"]["hidden"], 10), train_images, TEST_IMAGES)
            for r in records
        )
        config_epochs = sum(len(r["history"]["val_accuracy"]) for r in records)
        total_seconds += wall
        total_flops += flops
        total_config_epochs += config_epochs
        print(
            f"| {study.name} | {len(records)} | {config_epochs} "
            f"| {timing.programs_compiled + timing.programs_reused} | {wall:.2f} "
            f"| {timing.compile_seconds:.2f} | {timing.train_seconds:.2f} "
            f"| {flops / wall / 1e12:.2f} |",
            flush=True,
        )
    print(
        f"| **all** | | {total_config_epochs} | | **{total_seconds:.2f}** | | | "
        f"{total_flops / total_seconds / 1e12:.2f} |"
    )
    return total_seconds, total_flops, total_config_epochs


def one_pass(seeds: int, quick: bool, cache: str, pad: str) -> None:
    """Run the grid with ``cache`` as the compilation cache; print a JSON line of totals."""
    enable_compilation_cache(cache)
    limit, epochs = (2000, 1) if quick else (None, None)
    seconds, _, config_epochs = grid(seeds, limit, epochs, pad)
    print(json.dumps({"seconds": seconds, "config_epochs": config_epochs}), flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="a smoke test, not a measurement")
    parser.add_argument("--pad-widths", choices=tuple(PAD), default="auto")
    parser.add_argument("--pass-with-cache", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.pass_with_cache:
        one_pass(args.seeds, args.quick, args.pass_with_cache, args.pad_widths)
        return 0
    devices = jax.devices()
    print(f"jax {jax.__version__} on {len(devices)} x {devices[0].device_kind}", flush=True)
    cache = tempfile.mkdtemp(prefix="flaxmnist-gpu-cache-")
    passes = {}
    for name in ("cold", "warm"):  # a process each: the warm one loads what the cold stored
        print(f"\n{name}: {'compiling every program' if name == 'cold' else 'programs cached'}")
        command = [sys.executable, __file__, "--seeds", str(args.seeds)]
        command += ["--pad-widths", args.pad_widths, "--pass-with-cache"]
        command += [cache] + (["--quick"] if args.quick else [])
        output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        *table, totals = output.strip().splitlines()
        print("\n".join(table), flush=True)
        passes[name] = json.loads(totals)["seconds"]
        config_epochs = json.loads(totals)["config_epochs"]

    seconds, device = torch_seconds_per_config_epoch(
        2000 if args.quick else 60_000, 1 if args.quick else 3
    )
    loop_total = seconds * config_epochs
    print(
        f"\nPyTorch loop on {device} (784-300-10, one config): {seconds:.3f} s per "
        f"config-epoch; the whole grid that way: {loop_total:.0f} s (the loop is timed on "
        "the 784-300-10 model; wider models would take it longer)"
    )
    for name, total in passes.items():
        print(
            f"flaxmnist, {name}: {total:.2f} s for the whole grid, "
            f"{loop_total / total:.1f}x the loop"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
