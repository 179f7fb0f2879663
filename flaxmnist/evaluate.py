"""``python -m flaxmnist.evaluate``: the best model a run kept, checked against its record,
and refit.

::

    python -m flaxmnist.evaluate RUN_DIR [--study NAME] [--refit] [--ensemble] [--quiet]

It prints which configuration RUN_DIR kept (``RUN_DIR/models/<study>/``), each seed's test
accuracy computed again beside the record's, their mean ± std, and with ``--ensemble`` the
seeds' ensemble's; exit 0 when every seed equals its record, 1 when one does not, 2 on bad
arguments or data, 3 when RUN_DIR holds no usable model. ``--refit`` then trains the
configuration again on every training image (the holdout too), selecting nothing, and reports
its test accuracy: an honest estimate. It goes to ``RUN_DIR/refit-<study>``, and the same
command resumes it. It needs ``model.json`` alone: without ``params.msgpack`` it says that
the saved parameters were not checked, and trains (exit 0: nothing was compared).

The evaluation itself, for notebooks, is ``flaxmnist.run.evaluation`` (``evaluate_test``,
``evaluate_ensemble``, ``refit_sweep``; importable from here too); ``refit`` runs a refit.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from flaxmnist import interrupts
from flaxmnist.cli import ArgumentParser, natural, positive_int
from flaxmnist.devices.host import set_cpu_devices
from flaxmnist.errors import (
    FlaxmnistError,
    OutOfMemoryError,
    RunDirError,
    SettingsError,
    one_line_warnings,
)
from flaxmnist.run.checkpoint import MODELS, PARAMS_FILE, Model, load_model
from flaxmnist.run.evaluation import (
    EVAL_BATCH_SIZE,
    data_source,
    evaluate_ensemble,
    evaluate_test,
    load_splits,
    refit_sweep,
)
from flaxmnist.runner import run_sweep

#: The command's names, and the evaluation's (``flaxmnist.run.evaluation``), which this module
#: held before and still offers.
__all__ = [
    "EVAL_BATCH_SIZE",
    "PROG",
    "build_parser",
    "command",
    "compare",
    "data_source",
    "describe",
    "ensemble_line",
    "evaluate_ensemble",
    "evaluate_test",
    "load_model",
    "load_splits",
    "main",
    "refit",
    "refit_line",
]

PROG = "python -m flaxmnist.evaluate"


def ensemble_line(model: Model, accuracy: float) -> str:
    """The ensemble's test accuracy beside the record's, labelled as an ensemble."""
    recorded = model.info.get("ensemble", {}).get("test_accuracy")
    note = f" (the record: {_percent(recorded)})" if recorded is not None else ""
    return (
        f"ensemble of {len(model.seeds)} seeds (mean of their softmax probabilities; never "
        f"used to select): test accuracy {_percent(accuracy)}{note}"
    )


def refit(
    run_dir: str | Path,
    model: Model,
    quiet: bool = False,
    seeds: int | None = None,
    first_seed: int | None = None,
    **options: Any,
) -> list[dict[str, Any]]:
    """Train ``model``'s configuration again on the whole training set, as
    ``run.evaluation.refit_sweep`` says (its seeds, or ``seeds`` from ``first_seed``; in
    ``run_dir/refit-<study>``, resumed); its records. ``options`` go to ``run_sweep``."""
    study, settings = refit_sweep(run_dir, model, seeds, first_seed)
    return run_sweep(study, quiet=quiet, **settings, **options)


def _percent(value: float | None) -> str:
    return "n/a (diverged)" if value is None else f"{100 * value:.2f} %"


def _mean_std(values: Sequence[float | None]) -> str:
    array = np.array([np.nan if v is None else v for v in values], np.float64) * 100
    spread = f" ± {np.std(array, ddof=1):.2f}" if len(array) > 1 else ""
    return f"{np.mean(array):.2f}{spread} %"


def describe(model: Model) -> str:
    """Which configuration ``model`` is, on two lines."""
    info = model.info
    settings = " ".join(f"{k}={v}" for k, v in model.config.items())
    widths = "-".join(str(w) for w in (784, *model.module.hidden, model.module.num_classes))
    return (
        f"study {info['study']}, configuration {info['config_index'] + 1} "
        f"({widths}), selected by its {info['selected_by']} accuracy, "
        f"{len(model.seeds)} seed(s)\nconfig: {settings}"
    )


def compare(model: Model, accuracies: Sequence[float | None]) -> tuple[list[str], bool]:
    """Lines setting each seed's test accuracy beside the record's; whether all are equal."""
    lines, same, records = [], True, model.info["test_accuracy"]
    for seed, value, record in zip(model.seeds, accuracies, records, strict=True):
        equal = value == record
        same = same and equal
        verdict = "equal" if equal else f"DIFFERENT: {value!r} != {record!r}"
        shown = f"{_percent(value)} (the record: {_percent(record)}, {verdict})"
        lines.append(f"seed {seed}: test accuracy {shown}")
    lines.append(f"mean over {len(accuracies)} seed(s): test accuracy {_mean_std(accuracies)}")
    lines.append(
        "every seed's test accuracy equals its record exactly (float32)"
        if same
        else "NOT the record's test accuracy: these are not the parameters the run evaluated"
    )
    return lines, same


def refit_line(records: Sequence[dict[str, Any]], selected_by: str = "holdout") -> str:
    """The refit's test accuracy, labelled as such (and as biased when the configuration
    was selected on the test set)."""
    accuracies = [r["test_accuracy"] for r in records]
    train_size = records[0]["config"]["train_size"]
    per_seed = ", ".join(_percent(a) for a in accuracies)
    ensemble = records[0].get("ensemble")
    return (
        f"refit on all {train_size:,} training images ({len(records)} seed(s), no selection): "
        f"test accuracy {_mean_std(accuracies)} (per seed: {per_seed})"
        + ("; but the test set selected this configuration" if selected_by == "test" else "")
        + (
            f"\nrefit's ensemble of {ensemble['seeds']} seeds (apart from single models): "
            f"test accuracy {_percent(ensemble['test_accuracy'])}"
            if ensemble and ensemble["seeds"] > 1
            else ""
        )
    )


def build_parser() -> argparse.ArgumentParser:
    """The CLI's argument parser."""
    parser = ArgumentParser(
        prog=PROG,
        description="Load the best model a sweep kept in RUN_DIR, compute each seed's test "
        "accuracy again and check that it equals the run's record; optionally refit it.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="a sweep's run directory")
    parser.add_argument(
        "--study", metavar="NAME", help="the study whose model to load (when RUN_DIR has several)"
    )
    parser.add_argument(
        "--refit",
        action="store_true",
        help="then train the configuration again on every training image (no selection) and "
        "report its test accuracy; written to RUN_DIR/refit-<study>, resumable; needs "
        "model.json only (no parameters: not checked)",
    )
    parser.add_argument(
        "--seeds",
        type=positive_int,
        metavar="K",
        help="--refit with K seeds (default: the model's seed count)",
    )
    parser.add_argument(
        "--first-seed",
        type=natural,
        metavar="N",
        help="--refit with seeds N .. N+K-1 (default: the model's): fresh seeds, ones the "
        "search never used",
    )
    parser.add_argument(
        "--ensemble",
        action="store_true",
        help="also print the test accuracy of the ensemble of the model's seeds (mean "
        "softmax; needs 2 or more seeds, or --refit --seeds K >= 2)",
    )
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr (--refit)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    args = build_parser().parse_args(argv)
    with one_line_warnings(PROG):
        try:
            with interrupts.stopping_on_ctrl_c():
                return _run(args)
        except FlaxmnistError as err:
            print(f"{PROG}: error: {_message(err)}", file=sys.stderr)
            return 3 if isinstance(err, RunDirError | OutOfMemoryError) else 2
        except KeyboardInterrupt:
            print(f"{PROG}: interrupted; the same command resumes a refit", file=sys.stderr)
            return 130


def _message(err: FlaxmnistError) -> str:
    """The error with its subject as this command names it (RUN_DIR is no flag)."""
    if err.parameter is None or err.parameter == "study":
        return err.flag_message()
    return f"{err.value}: {err.reason}"


def _run(args: argparse.Namespace) -> int:
    problem = set_cpu_devices(None)  # as flaxmnist.sweep: the CPU split into 2 devices
    if problem:
        print(f"{PROG}: error: {problem}", file=sys.stderr)
        return 2
    model, missing = _load(args)
    refit_seeds = (args.seeds or len(model.seeds)) if args.refit else 0
    if args.ensemble and len(model.seeds) < 2 and refit_seeds < 2:
        raise SettingsError(
            f"--ensemble: the model in {args.run_dir} has one seed ({model.seeds[0]}): an "
            "ensemble needs 2 or more; sweep with --seeds 2 or more, or add --refit --seeds K "
            "(K >= 2)"
        )
    print(describe(model))
    same = True  # nothing to compare without the parameters: the refit is the result
    if missing:
        print(
            f"saved parameters: not in {missing.parent}/ ({missing.name}), so they were not "
            "checked; the refit trains from the configuration"
        )
    else:
        lines, same = compare(model, evaluate_test(model))
        print("\n".join(lines))
        if args.ensemble and len(model.seeds) > 1:
            print(ensemble_line(model, evaluate_ensemble(model)))
    if args.refit:
        records = refit(args.run_dir, model, args.quiet, args.seeds, args.first_seed)
        print(refit_line(records, model.info["selected_by"]))
    return 0 if same else 1


def _load(args: argparse.Namespace) -> tuple[Model, Path | None]:
    """The saved model and ``None``; with ``--refit``, when its parameters are missing (a run
    directory kept without them), what ``model.json`` says alone and where they would be."""
    model = load_model(args.run_dir, args.study, params=False)
    path = Path(args.run_dir) / MODELS / model.info["study"] / PARAMS_FILE
    if path.exists():
        return load_model(args.run_dir, model.info["study"]), None
    if not args.refit:
        raise RunDirError(f"{path}: no such file: --refit retrains from the configuration alone")
    if args.ensemble and (args.seeds or len(model.seeds)) < 2:
        raise SettingsError(
            f"--ensemble: {path} is missing, so only the refit's ensemble can be reported, "
            "and a refit of one seed has none: add --seeds K (K >= 2)"
        )
    return model, path


def command() -> None:
    """The process: ``python -m flaxmnist.evaluate``."""
    interrupts.run_command(main)


if __name__ == "__main__":
    command()
