"""Ensembles of trained lanes: mean softmax probabilities, and greedy selection.

Every configuration's seeds already train side by side, so their ensemble costs one
evaluation: the mean of the seeds' softmax probabilities, its accuracy against the labels.
flaxmnist reports it for every configuration ("ensemble of K seeds"), never selects by it,
and keeps each configuration's seed-mean probabilities on the holdout and the test set in
``predictions/<study>/<config>.npz`` of the run directory (float16: an ensemble's argmax,
not its last bits), so that after a search ``greedy_ensemble`` can pick an ensemble of
configurations on the holdout (Caruana et al. 2004, "Ensemble selection from libraries of
models"), reported apart from single models.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from flaxmnist.run.records import json_float

PREDICTIONS_DIR = "predictions"


def ensemble_accuracy(probabilities: np.ndarray, labels: np.ndarray) -> float:
    """The accuracy of the mean of ``probabilities`` (``(members, count, classes)``).

    Example::

        >>> probs = np.array([[[0.6, 0.4], [0.4, 0.6]], [[0.3, 0.7], [0.45, 0.55]]])
        >>> ensemble_accuracy(probs, np.array([1, 1]))  # means: [0.45, 0.55], [0.425, 0.575]
        1.0
    """
    mean = np.mean(np.asarray(probabilities, np.float64), axis=0)
    return float(np.mean(np.argmax(mean, axis=-1) == np.asarray(labels)))


def seed_ensemble(
    val: np.ndarray, test: np.ndarray, val_labels: np.ndarray, test_labels: np.ndarray
) -> dict[str, Any]:
    """What records hold of the ensemble of a configuration's seeds (``(seeds, count,
    classes)`` probabilities on each split): ``seeds``, ``val_accuracy``, ``test_accuracy``."""
    return {
        "seeds": len(val),
        "val_accuracy": json_float(ensemble_accuracy(val, val_labels)),
        "test_accuracy": json_float(ensemble_accuracy(test, test_labels)),
    }


def _log_loss(probabilities: np.ndarray, labels: np.ndarray) -> float:
    chosen = np.take_along_axis(probabilities, labels[:, None].astype(np.int64), 1)[:, 0]
    return float(-np.mean(np.log(np.maximum(chosen, 1e-12))))


def greedy_ensemble(
    val_probabilities: Mapping[int, np.ndarray], val_labels: np.ndarray, rounds: int = 20
) -> list[int]:
    """Caruana et al.'s forward selection with replacement, on the holdout.

    Starts from the most accurate member; each round adds the member (possibly again) whose
    addition makes the mean's holdout accuracy highest (ties: the lower holdout log-loss,
    then the lower index); after ``rounds`` rounds the best prefix is returned, the shortest
    among equals. Returns the members' keys, repeated as often as they were picked.

    Example::

        >>> labels = np.array([0, 1, 1])
        >>> probs = {0: np.array([[.9, .1], [.6, .4], [.2, .8]]),
        ...          1: np.array([[.6, .4], [.2, .8], [.6, .4]]),
        ...          2: np.array([[.4, .6], [.4, .6], [.4, .6]])}
        >>> greedy_ensemble(probs, labels, rounds=3)  # 0 and 1 are right together; 0 again sharpens
        [0, 1, 0]
    """
    if not val_probabilities:
        raise ValueError("greedy_ensemble: no members")
    labels = np.asarray(val_labels)
    members = sorted(val_probabilities)
    stack = {m: np.asarray(val_probabilities[m], np.float64) for m in members}
    total = np.zeros_like(stack[members[0]])
    chosen: list[int] = []
    path: list[tuple[float, float, int]] = []  # (-accuracy, log-loss, length) per prefix

    def score(mean: np.ndarray) -> tuple[float, float]:
        return -float(np.mean(np.argmax(mean, -1) == labels)), _log_loss(mean, labels)

    for _ in range(max(rounds, 1)):
        best = min(members, key=lambda m: (*score((total + stack[m]) / (len(chosen) + 1)), m))
        total += stack[best]
        chosen.append(best)
        accuracy, loss = score(total / len(chosen))
        path.append((accuracy, round(loss, 9), len(chosen)))  # rounding: k copies tie
    _, _, length = min(path)
    return chosen[:length]


def predictions_path(out: Path, study: str, config_index: int) -> Path:
    """Where a configuration's seed-mean probabilities are kept in a run directory."""
    return Path(out) / PREDICTIONS_DIR / study / f"{config_index}.npz"


def save_predictions(
    out: Path, study: str, config_index: int, val: np.ndarray, test: np.ndarray, seeds: int
) -> Path:
    """Write a configuration's seed-mean probabilities (float16), atomically."""
    path = predictions_path(out, study, config_index)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial.npz")
    np.savez(partial, val=val.astype(np.float16), test=test.astype(np.float16), seeds=seeds)
    partial.replace(path)
    return path


def read_predictions(out: Path, study: str) -> dict[int, dict[str, np.ndarray]]:
    """Every configuration's kept probabilities of ``study``: ``{index: {"val", "test"}}``."""
    found = {}
    for path in sorted((Path(out) / PREDICTIONS_DIR / study).glob("*.npz")):
        if path.stem.isdigit():
            with np.load(path) as arrays:
                found[int(path.stem)] = {k: arrays[k].astype(np.float32) for k in ("val", "test")}
    return found


def choose_ensemble(
    out: Path, study: str, val_labels: np.ndarray, test_labels: np.ndarray, rounds: int = 20
) -> dict[str, Any] | None:
    """After a search: the greedy ensemble of ``study``'s configurations (each the mean of
    its seeds) chosen on the holdout from the run's kept predictions, with its holdout and
    test accuracy, written to ``ensemble-<study>.json``; ``None`` with fewer than two."""
    kept = read_predictions(out, study)
    if len(kept) < 2:
        return None
    chosen = greedy_ensemble({i: p["val"] for i, p in kept.items()}, val_labels, rounds)
    members = {str(i + 1): chosen.count(i) for i in sorted(set(chosen))}  # table numbers
    result = {
        "study": study,
        "method": "greedy forward selection with replacement on the holdout (Caruana et al. "
        "2004), of each configuration's seed ensemble",
        "members": members,
        "candidates": len(kept),
        "rounds": rounds,
        "val_accuracy": json_float(ensemble_accuracy([kept[i]["val"] for i in chosen], val_labels)),
        "test_accuracy": json_float(
            ensemble_accuracy([kept[i]["test"] for i in chosen], test_labels)
        ),
    }
    path = Path(out) / f"ensemble-{study}.json"
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(result, indent=2) + "\n")
    partial.replace(path)
    return result


def describe_ensemble(result: dict[str, Any]) -> str:
    """One line for a chosen ensemble, labelled apart from single models."""
    members = ", ".join(f"#{k}" + (f" x{n}" if n > 1 else "") for k, n in result["members"].items())
    return (
        f"{result['study']}: greedy ensemble of configurations {members} (chosen on the "
        f"holdout from {result['candidates']}; not a single model): holdout "
        f"{100 * result['val_accuracy']:.2f} %, test {100 * result['test_accuracy']:.2f} %"
    )


def chosen_ensembles(out: Path) -> list[str]:
    """``describe_ensemble`` of every ``ensemble-<study>.json`` in a run directory."""
    lines = []
    for path in sorted(Path(out).glob("ensemble-*.json")):
        try:
            lines.append(describe_ensemble(json.loads(path.read_text())))
        except (OSError, ValueError, KeyError, TypeError):
            lines.append(f"{path}: unreadable (written by a run that was cut off?)")
    return lines
