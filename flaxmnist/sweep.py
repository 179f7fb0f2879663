"""Command line: ``python -m flaxmnist.sweep NAME|FILE [options]``.

A thin layer over ``flaxmnist.run_sweep`` and ``flaxmnist.format_table``: parse arguments,
set up the CPU devices and the compile cache, run with a progress bar, print the table,
write the report. Library errors name parameters (``out=``); here they name flags.

Exit codes: 0 success; 1 the shipped data is damaged (or an unexpected error, with its
traceback); 2 bad arguments, spec, settings or ``--data-dir`` files; 3 the run could not go
on: its directory is used by another run, torn or not writable (a full disk), or the device
ran out of memory; 4 a process of the cluster was lost (``--coordinator``: every host runs
the same command; process 0 alone prints the table and writes); 130 interrupted. Every one
but an unexpected error is one line on stderr, and what finished before is kept: the same
command with the same ``--out`` resumes.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from flaxmnist import interrupts
from flaxmnist.cli import ArgumentParser, flops, natural, positive_int, size
from flaxmnist.devices import cluster
from flaxmnist.devices.compile_cache import add_compile_cache_arguments, set_compile_cache
from flaxmnist.devices.host import DEFAULT_CPU_DEVICES, set_cpu_devices
from flaxmnist.errors import (
    DataError,
    FlaxmnistError,
    OutOfMemoryError,
    RunDirError,
    SpecError,
    first_line,
    one_line_warnings,
)
from flaxmnist.report import format_table, write_report
from flaxmnist.report.style import FORMATS, figure_formats
from flaxmnist.run.ensemble import chosen_ensembles
from flaxmnist.run.plan import DEFAULT_MAX_LANES
from flaxmnist.run.progress import TqdmProgress
from flaxmnist.run.rundir import MANIFEST, default_out_dir
from flaxmnist.runner import SweepSettings, run_sweep
from flaxmnist.specs.config import COMPUTE_DTYPES, DEFAULT_PRECISION, MATMUL_PRECISIONS
from flaxmnist.studies import builtin_studies, load_studies


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = ArgumentParser(
        prog="python -m flaxmnist.sweep",
        description=(
            "Train every configuration of a hyperparameter study of MNIST MLPs as one "
            "compiled, vmapped JAX program; print a table and write results.jsonl."
        ),
        epilog=f"Named studies: {', '.join(builtin_studies()) or '(none found)'}.",
    )
    parser.add_argument(
        "study",
        help="a study name (e.g. lr, or all for the whole notebook) or a spec file path "
        "(with a '/' or a .toml suffix, e.g. ./my.toml)",
    )
    _add_study_arguments(parser)
    _add_data_arguments(parser)
    _add_machine_arguments(parser)
    cluster.add_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    parser.add_argument(
        "--formats",
        metavar="LIST",
        type=figure_formats,
        default=FORMATS,
        help="the files each figure of the report is written as, comma-separated: png "
        "(200 dpi), pdf, svg (default: all three)",
    )
    return parser


def _add_study_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--epochs", type=positive_int, help="override every config's epochs")
    parser.add_argument(
        "--seeds",
        type=positive_int,
        default=3,
        help="seeds per config, paired across configs, run in the same call (default: 3)",
    )
    parser.add_argument(
        "--first-seed",
        type=natural,
        default=0,
        metavar="N",
        help="seeds N .. N+seeds-1 (default: 0): fresh seeds, e.g. to retrain a "
        "configuration a search selected",
    )
    parser.add_argument(
        "--budget",
        type=flops,
        metavar="FLOPS",
        help="training FLOPs the run may spend, e.g. 2.2e13 or 22T (6 per weight per "
        "training image, every lane counted; docs/searching.md): a grid, random or quasi-random "
        "study keeps the configurations that fit, a halving or PBT search stops before the "
        "epoch that would pass it, a learned search (tpe, gp, cmaes, nsga2) before the round, "
        "Hyperband and BOHB start only the brackets that fit to their last rung",
    )
    parser.add_argument(
        "--warm-start",
        type=Path,
        metavar="DIR",
        help="an earlier run directory of the same [search] space: its finished "
        "configurations are told to a learned sampler (tpe, gp, bohb) before it proposes, "
        "so the search starts informed (docs/searching.md)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        metavar="DIR",
        help="run directory (default: runs/<study>-<timestamp>); give the same DIR again "
        "to resume an interrupted run",
    )


def _add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--limit-train",
        type=positive_int,
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


def _add_machine_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--max-lanes",
        type=positive_int,
        metavar="N",
        help="at most N lanes (config x seed) per compiled call (default: as many as the "
        f"memory budget allows, and on a CPU at most {DEFAULT_MAX_LANES})",
    )
    parser.add_argument(
        "--memory-budget",
        type=size,
        metavar="SIZE",
        help="memory one call's lanes may use, e.g. 12G or 500M (default: 80%% of what the "
        "device reports, on a CPU of the host's memory). A config whose one lane cannot fit "
        "is refused before anything runs; a call that runs out of memory is retried with "
        "half its lanes",
    )
    parser.add_argument(
        "--dtype",
        choices=COMPUTE_DTYPES,
        default="float32",
        help="dtype of activations and matrix products; parameters, Adam and the loss stay "
        "float32 (default: float32)",
    )
    parser.add_argument(
        "--pad-widths",
        choices=("auto", "on", "off"),
        default="auto",
        help="on: configurations of one depth share one compiled program, hidden layers "
        "padded to the widest (fewer compiles, more arithmetic; equal up to rounding and "
        "dropout draws); auto (default): on for a GPU or TPU, off for a CPU",
    )
    parser.add_argument(
        "--precision",
        choices=MATMUL_PRECISIONS,
        default=DEFAULT_PRECISION,
        help="how a GPU or TPU computes float32 matrix products: float32 (default: the "
        "CPU's numbers), tensorfloat32 or bfloat16 passes (faster, fewer mantissa bits), or "
        "backend (JAX's default there); a CPU computes float32 in all. Kept in the manifest",
    )
    parser.add_argument(
        "--cpu-devices",
        type=positive_int,
        metavar="N",
        help="on a CPU-only machine, split it into N JAX devices and shard the lanes over "
        f"them (default: {DEFAULT_CPU_DEVICES}). Ignored when an accelerator is present",
    )
    add_compile_cache_arguments(parser)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    argv = list(sys.argv[1:] if argv is None else argv)
    out: list[Path] = []  # the run directory, once it is known
    try:
        with one_line_warnings(parser.prog), interrupts.stopping_on_ctrl_c():
            return _run(args, parser.prog, argv, out)
    except KeyboardInterrupt:
        where = (
            f"finished calls are in {out[0]}{_resume_hint(args, argv, out[0])}"
            if out
            else ("nothing was written")
        )
        print(f"{parser.prog}: interrupted; {where}", file=sys.stderr)
        return 130


def _run(args: argparse.Namespace, prog: str, argv: list[str], known: list[Path]) -> int:
    try:
        studies = load_studies(args.study)
    except SpecError as err:
        print(f"{prog}: error: {err.flag_message()}", file=sys.stderr)
        return 2
    if not _set_up(args, prog):
        return 2
    out = args.out if args.out is not None else default_out_dir(Path(args.study).stem)
    out = Path(cluster.share(lambda: str(out)))  # process 0's clock names a default
    known.append(out)
    try:
        records = run_sweep(
            studies,
            _settings(args, out),
            progress=TqdmProgress(disable=args.quiet or not cluster.is_main()),
        )
    except (RunDirError, OutOfMemoryError) as err:
        hint = _resume_hint(args, argv, out)
        print(f"{prog}: error: {err.flag_message()}{hint}", file=sys.stderr)
        return 3
    except FlaxmnistError as err:
        print(f"{prog}: error: {err.flag_message()}", file=sys.stderr)
        # The shipped copy of MNIST damaged is flaxmnist's fault, not the user's.
        shipped = args.data_dir is None and args.dataset == "mnist"
        return 1 if isinstance(err, DataError) and shipped else 2
    except Exception:
        lost = cluster.lost_message()  # None: not a lost process
        if lost is None:
            raise
        print(f"{prog}: error: {lost} (--out {out})", file=sys.stderr, flush=True)
        cluster.exit_now(4)  # not sys.exit: JAX's shutdown would wait for the lost process
    if not cluster.is_main():
        return 0
    descriptions = {study.name: study.description for study in studies}
    lines = [format_table(records, descriptions), *(chosen_ensembles(out) if out else [])]
    print("\n".join(lines), flush=True)  # the table before the report, which takes a while
    return _write_report(prog, records, out, descriptions, args.formats)


def _settings(args: argparse.Namespace, out: Path) -> SweepSettings:
    """The flags as ``SweepSettings`` (they share their names)."""
    names = {f.name for f in fields(SweepSettings)} - {"out", "quiet", "pad_widths"}
    pad_widths = {"auto": None, "on": True, "off": False}[args.pad_widths]
    return SweepSettings(out=out, pad_widths=pad_widths, **{n: getattr(args, n) for n in names})


def _set_up(args: argparse.Namespace, prog: str) -> bool:
    """Devices, the cluster and the compile cache, before JAX starts; ``False`` after
    printing why it cannot."""
    launch, problem = cluster.launch_of(args)
    problem = problem or set_cpu_devices(args.cpu_devices)
    if not problem:
        try:
            cluster.start(launch, prog)
        except (RuntimeError, ValueError) as err:  # e.g. no coordinator within the timeout
            problem = f"--coordinator {launch.coordinator}: {first_line(err, 300)}"
    if problem:
        print(f"{prog}: error: {problem}", file=sys.stderr)
        return False
    cache_problem = set_compile_cache(args)
    if cache_problem is not None:
        print(f"{prog}: {cache_problem[0]}: {cache_problem[1]}", file=sys.stderr)
    return cache_problem is None or cache_problem[0] != "error"


def _resume_hint(args: argparse.Namespace, argv: list[str], out: Path) -> str:
    """How to resume, when there is something to resume and the directory was the default:
    the same command with ``--out``."""
    if args.out is not None or not (out / MANIFEST).exists():
        return ""
    return f" (to resume: python -m flaxmnist.sweep {shlex.join([*argv, '--out', str(out)])})"


def _write_report(
    prog: str, records, out: Path, descriptions: dict[str, str], formats: Sequence[str]
) -> int:
    try:
        write_report(records, out, descriptions, formats)
    except OSError as err:
        print(
            f"{prog}: error: the results are complete in {out / 'results.jsonl'}, but the "
            f"report could not be written ({err.strerror or err}); when that is mended, "
            f"python -m flaxmnist.report {out} writes it",
            file=sys.stderr,
        )
        return 3
    print(f"results: {out / 'results.jsonl'}, summary.csv and plots in {out}")
    return 0


def command() -> None:
    """The process: ``python -m flaxmnist.sweep`` and the ``flaxmnist-sweep`` script."""
    interrupts.run_command(main)


if __name__ == "__main__":
    command()
