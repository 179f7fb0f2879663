"""The run directory: ``manifest.json``, ``results.jsonl``, atomic writes and resume.

A run directory holds the resolved settings of one experiment (``manifest.json``, with their
SHA-256) and one JSON object per lane (``results.jsonl``), rewritten atomically (temp file,
fsync, rename) after every call, so that a kill at any moment leaves either the old file or
the new one. Running the same settings into the same directory resumes; other settings are
refused rather than mixed. This module also turns a call's per-epoch metrics into those
records. It knows nothing of training.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from flaxmnist.errors import SettingsError
from flaxmnist.specs import HISTORY_KEYS, Config

MANIFEST = "manifest.json"
RESULTS = "results.jsonl"


def json_float(value: Any) -> float | None:
    """A float32 as the shortest decimal that round-trips; non-finite becomes None (null)."""
    value = np.float32(value)
    return float(str(value)) if np.isfinite(value) else None


def make_records(
    history: dict[str, np.ndarray],
    config_indices: Sequence[int],
    seeds: Sequence[int],
    chance_accuracy: float,
) -> list[dict[str, Any]]:
    """One partial record per lane, configuration-major, from ``[seed, config, epoch]`` arrays.

    Each has ``config_index``, ``seed``, ``history`` (lists per ``HISTORY_KEYS``),
    ``val_accuracy`` and ``test_accuracy`` (last epoch), ``diverged`` (a ``nonfinite`` epoch)
    and ``at_chance`` (finite, but the last validation accuracy is no better than
    ``chance_accuracy``).
    """
    records = []
    for column, index in enumerate(config_indices):
        for row, seed in enumerate(seeds):
            lane = {key: [json_float(v) for v in history[key][row, column]] for key in HISTORY_KEYS}
            diverged = bool(np.any(history["nonfinite"][row, column]))
            last_val = history["val_accuracy"][row, column][-1]
            records.append(
                {
                    "config_index": index,
                    "seed": seed,
                    "history": lane,
                    "val_accuracy": lane["val_accuracy"][-1],
                    "test_accuracy": lane["test_accuracy"][-1],
                    "diverged": diverged,
                    "at_chance": not diverged and bool(last_val <= chance_accuracy),
                }
            )
    return records


def write_json_atomic(path: Path, value: Any) -> None:
    """Write ``value`` as indented JSON to ``path`` via a temp file and a rename."""
    _write_atomic(path, json.dumps(value, indent=2, allow_nan=False) + "\n")


def write_jsonl_atomic(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """Write one JSON object per line to ``path`` via a temp file and a rename."""
    _write_atomic(path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in records))


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)  # make the rename itself durable
        finally:
            os.close(directory)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file, in order (``[]`` if it does not exist).

    Raises:
      json.JSONDecodeError: a line is not JSON.
    """
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def default_out_dir(study_name: str) -> Path:
    """``runs/<study>-<timestamp>`` under the current directory, ``-2``, ``-3``… if taken."""
    base = Path("runs") / f"{study_name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    candidate, number = base, 1
    while candidate.exists():
        number += 1
        candidate = base.with_name(f"{base.name}-{number}")
    return candidate


def fingerprint(settings: dict[str, Any]) -> str:
    """The SHA-256 of ``settings`` as canonical JSON."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


#: Run settings added since the first run directories, with the value older runs had.
ADDED_SETTINGS = {"dtype": "float32"}


def with_defaults(settings: dict[str, Any]) -> dict[str, Any]:
    """``settings`` as this flaxmnist writes them: keys added since (``Config`` fields,
    ``ADDED_SETTINGS``) filled in at the values that train as before."""
    config_defaults = Config().to_dict()
    studies = [
        {**study, "configs": [{**config_defaults, **c} for c in study.get("configs", [])]}
        for study in settings.get("studies", [])
    ]
    return {**ADDED_SETTINGS, **settings, "studies": studies}


def _with_record_defaults(record: dict[str, Any]) -> dict[str, Any]:
    config = {**Config().to_dict(), **record["config"]}
    for key, value in ADDED_SETTINGS.items():
        config.setdefault(key, value)
    return {**record, "config": config}


def open_run_dir(out: str | Path, settings: dict[str, Any]) -> list[dict[str, Any]]:
    """Prepare ``out`` for a run with ``settings``; return the records of an earlier attempt.

    A new directory gets ``manifest.json`` (the settings and their hash). An existing one
    must hold the same settings (older manifests read with ``with_defaults``), else the run
    is refused rather than mixing results of different experiments. Records an older
    flaxmnist wrote come back with the fields added since.

    Raises:
      SettingsError: ``out`` is a file, holds another run, or is a non-empty folder that
        is not a run directory.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise SettingsError("exists and is not a directory", parameter="out", value=out)
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        old = with_defaults(json.loads(manifest_path.read_text()).get("settings", {}))
        if fingerprint(old) != fingerprint(settings):
            changed = sorted(k for k in {*old, *settings} if old.get(k) != settings.get(k))
            raise SettingsError(
                f"holds a run with other settings (changed: {', '.join(changed) or 'unknown'}); "
                "use another directory, or delete it to start over",
                parameter="out",
                value=out,
            )
        return [_with_record_defaults(r) for r in read_jsonl(out / RESULTS)]
    if out.exists() and any(out.iterdir()):
        raise SettingsError(
            "exists, is not empty and holds no flaxmnist manifest", parameter="out", value=out
        )
    write_json_atomic(manifest_path, {"fingerprint": fingerprint(settings), "settings": settings})
    return []


def write_results(out: str | Path, records: Sequence[dict[str, Any]]) -> None:
    """Replace ``out/results.jsonl`` with ``records``, atomically."""
    write_jsonl_atomic(Path(out) / RESULTS, records)
