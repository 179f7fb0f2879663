"""Command line: ``python -m flaxmnist.sweep NAME|FILE [options]``.

A thin layer over ``flaxmnist.run_sweep`` and ``flaxmnist.format_table``: parse arguments,
run, print the table, write ``results.jsonl``. Exit codes: 0 success, 1 the shipped data is
damaged (or an unexpected error, with its traceback), 2 bad arguments, spec, settings or
``--data-dir`` files (one line on stderr, no traceback), 130 interrupted.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import jax

from flaxmnist.data import DataError
from flaxmnist.report import format_table, write_report
from flaxmnist.runner import (
    SettingsError,
    default_compilation_cache_dir,
    default_out_dir,
    enable_compilation_cache,
    run_sweep,
)
from flaxmnist.specs import SpecError, builtin_studies, load_studies

#: JAX devices a CPU-only machine is split into (``--cpu-devices``); measured in BENCHMARKS.md.
DEFAULT_CPU_DEVICES = 2


class _ArgumentParser(argparse.ArgumentParser):
    """argparse, but bad arguments give a single line (no usage dump) and exit code 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = _ArgumentParser(
        prog="python -m flaxmnist.sweep",
        description=(
            "Train every configuration of a hyperparameter study of MNIST MLPs as one "
            "compiled, vmapped JAX program; print a table and write results.jsonl."
        ),
        epilog=f"Named studies: {', '.join(builtin_studies()) or '(none found)'}.",
    )
    parser.add_argument(
        "study", help="a study name (e.g. lr, or all for the whole notebook) or a TOML spec path"
    )
    parser.add_argument("--epochs", type=_positive_int, help="override every config's epochs")
    parser.add_argument(
        "--seeds",
        type=_positive_int,
        default=3,
        help="seeds per config, paired across configs, run in the same call (default: 3)",
    )
    parser.add_argument(
        "--limit-train",
        type=_positive_int,
        metavar="N",
        help="train on the first N images of the train split only (quick looks, tests)",
    )
    parser.add_argument(
        "--validate-on",
        choices=("holdout", "test"),
        default="holdout",
        help="holdout: select on the last 10,000 training images, never trained on "
        "(default); test: the notebook's protocol, train on all 60,000 and select on the "
        "test set",
    )
    parser.add_argument(
        "--dataset",
        default="mnist",
        metavar="NAME",
        help="mnist (default: the copy shipped with flaxmnist, never downloaded) or "
        "tfds:NAME, e.g. tfds:fashion_mnist or tfds:kmnist, from TensorFlow Datasets (needs "
        "pip install 'flaxmnist[tfds]' and, on first use, the network)",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="read the four MNIST-format IDX files from DIR (e.g. Fashion-MNIST) instead "
        "of the shipped MNIST; checksums are then not enforced",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="run directory (default: runs/<study>-<timestamp>); give the same DIR again "
        "to resume an interrupted run",
    )
    parser.add_argument(
        "--max-lanes",
        type=_positive_int,
        metavar="N",
        help="at most N lanes (config x seed) per compiled call (default: as many as an "
        "8 GiB memory estimate allows, and on a CPU at most 24, the fastest measured)",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default="float32",
        help="dtype of activations and matrix products; parameters, Adam and the loss stay "
        "float32 (default: float32; bfloat16 lost on this project's CPU, see BENCHMARKS.md)",
    )
    parser.add_argument(
        "--cpu-devices",
        type=_positive_int,
        metavar="N",
        help="on a CPU-only machine, split it into N JAX devices and shard the lanes over "
        f"them (default: {DEFAULT_CPU_DEVICES}, the fastest measured on a 2-core machine; "
        "see BENCHMARKS.md). Ignored when an accelerator is present",
    )
    cache = parser.add_mutually_exclusive_group()
    cache.add_argument(
        "--compile-cache",
        type=Path,
        metavar="DIR",
        help="keep compiled programs in DIR, so a rerun compiles nothing (default: "
        "$FLAXMNIST_COMPILE_CACHE, else $XDG_CACHE_HOME/flaxmnist/jax or "
        "~/.cache/flaxmnist/jax)",
    )
    cache.add_argument(
        "--no-compile-cache", action="store_true", help="compile from scratch, store nothing"
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser


def _set_cpu_devices(requested: int | None) -> str | None:
    """Split the CPU into JAX devices, before JAX initialises; an error message or ``None``.

    Without ``--cpu-devices``, a device count the user forced through ``XLA_FLAGS`` is kept.
    When JAX already runs (``main`` called from a Python session that used JAX), its
    devices stay as they are; that is an error only if ``--cpu-devices`` asked for others.
    """
    if requested is None and "xla_force_host_platform_device_count" in os.environ.get(
        "XLA_FLAGS", ""
    ):
        return None
    count = requested or DEFAULT_CPU_DEVICES
    try:
        jax.config.update("jax_num_cpu_devices", count)
    except RuntimeError:
        have = len(jax.devices("cpu"))
        if requested is not None and have != requested:
            return (
                f"--cpu-devices {requested}: JAX is already initialised with {have} CPU "
                "device(s) in this process; run the command in a new process"
            )
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = parser.prog
    try:
        studies = load_studies(args.study)
    except SpecError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    out = args.out if args.out is not None else default_out_dir(Path(args.study).stem)
    problem = _set_cpu_devices(args.cpu_devices)
    if problem:
        print(f"{prog}: error: {problem}", file=sys.stderr)
        return 2
    if not args.no_compile_cache:
        cache_dir = (
            args.compile_cache
            or os.environ.get("FLAXMNIST_COMPILE_CACHE")
            or default_compilation_cache_dir()
        )
        try:
            enable_compilation_cache(cache_dir)
        except OSError as err:
            if args.compile_cache is not None:  # asked for: an error
                print(
                    f"{prog}: error: --compile-cache {cache_dir}: {err.strerror}", file=sys.stderr
                )
                return 2
            # The default place is not writable: run without the cache, say so.
            print(
                f"{prog}: warning: no compilation cache ({cache_dir}: {err.strerror})",
                file=sys.stderr,
            )
    try:
        records = run_sweep(
            studies,
            epochs=args.epochs,
            seeds=args.seeds,
            limit_train=args.limit_train,
            validate_on=args.validate_on,
            dataset=args.dataset,
            data_dir=args.data_dir,
            out=out,
            quiet=args.quiet,
            max_lanes=args.max_lanes,
            dtype=args.dtype,
        )
    except (SettingsError, SpecError) as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except DataError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        # The user's files or dataset name, or the copy shipped with flaxmnist.
        return 1 if args.data_dir is None and args.dataset == "mnist" else 2
    except KeyboardInterrupt:
        print(
            f"{prog}: interrupted; finished calls are in {out}: run the same command with "
            f"--out {out} to resume",
            file=sys.stderr,
        )
        return 130
    print(format_table(records))
    write_report(records, out)
    print(f"results: {out / 'results.jsonl'}, summary.csv and plots in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
