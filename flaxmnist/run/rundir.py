"""The run directory: ``manifest.json``, ``results.jsonl``, atomic writes and resume.

A run directory holds the resolved settings of one experiment (``manifest.json``, with their
SHA-256) and one JSON object per lane (``results.jsonl``), rewritten atomically (temp file,
fsync, rename) after every call, so that a kill at any moment leaves either the old file or
the new one. Running the same settings into the same directory resumes; other settings are
refused rather than mixed, and so is a folder that holds other files (``check_usable``).
A last line of ``results.jsonl`` cut short is left out with a warning (its lane is trained
again); any other damage is a ``RunDirError`` naming file and line, as is a full disk. The
lock file (``LOCK``) and the manifest's record of attempts are ``flaxmnist.run.attempt``'s. It
knows nothing of training.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from flaxmnist.errors import FlaxmnistWarning, RunDirError, SettingsError
from flaxmnist.specs.config import Config

MANIFEST = "manifest.json"
RESULTS = "results.jsonl"
#: The lock file a running sweep holds in its run directory (``flaxmnist.run.attempt``).
LOCK = ".lock"
#: When each configuration trained (``read_timing``).
TIMING = "timing.json"
# Read once: os.umask can only be read by setting it, which is not thread-safe.
_UMASK = os.umask(0o022)
os.umask(_UMASK)


def write_json_atomic(path: Path, value: Any) -> None:
    """Write ``value`` as indented JSON to ``path`` via a temp file and a rename.

    Raises:
      RunDirError: ``path`` cannot be written (disk full, read-only...); it is unchanged.
    """
    _write_atomic(path, json.dumps(value, indent=2, allow_nan=False) + "\n")


def write_jsonl_atomic(path: Path, records: Sequence[dict[str, Any]]) -> None:
    """Write one JSON object per line to ``path`` via a temp file and a rename.

    Raises:
      RunDirError: ``path`` cannot be written (disk full, read-only...); it is unchanged.
    """
    _write_atomic(path, "".join(json.dumps(r, allow_nan=False) + "\n" for r in records))


def _write_atomic(path: Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data``: a temp file in the same folder, fsync, rename, so a
    kill at any moment leaves the old file or the new one.

    Raises:
      RunDirError: ``path`` cannot be written (disk full, read-only...); it is unchanged.
    """
    try:
        _replace_with(path, data)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            reason = (
                f"no space left on the device while writing {path.name}; what it held "
                "before is intact: free some space, then run again into the same "
                "directory to resume"
            )
        else:
            reason = f"cannot write {path.name}: {err.strerror or err}"
        raise RunDirError(reason, parameter="out", value=path.parent) from err


def _temp_prefix(name: str) -> str:
    return f".{name}."


def _replace_with(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=_temp_prefix(path.name), suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual file mode
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    # Make the rename itself durable; some network and FUSE file systems cannot, and the
    # file is in place either way.
    with contextlib.suppress(OSError):
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def read_jsonl(path: str | Path) -> list[dict[str, Any]]:
    """The objects of a JSON-lines file, in order (``[]`` if it does not exist).

    A last line that is not JSON is a record cut short (a copy or an editor stopped
    mid-line; flaxmnist's own writes are atomic): it is left out with a ``UserWarning``, so
    that a resumed run trains its lane again.

    Raises:
      RunDirError: a line before the last is not a JSON object (named by file and line).
    """
    path = Path(path)
    if not path.exists():
        return []
    lines = [(n, line) for n, line in enumerate(_read_text(path).splitlines(), 1) if line.strip()]
    objects = []
    for position, (number, line) in enumerate(lines):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as err:
            if position == len(lines) - 1:
                warnings.warn(
                    f"{path} line {number} is cut short ({err.msg}): left out; a resumed run "
                    "trains its lane again",
                    FlaxmnistWarning,
                    stacklevel=2,
                )
                break
            raise RunDirError(
                f"{path} line {number}: not JSON ({err.msg} at column {err.colno}); repair or "
                "delete that line (a resumed run trains the lanes missing)"
            ) from None
        if not isinstance(value, dict):
            raise RunDirError(f"{path} line {number}: not a JSON object")
        objects.append(value)
    return objects


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest at ``path``, checked to be one flaxmnist wrote.

    Raises:
      RunDirError: it is not JSON or not a flaxmnist manifest (named by file and line).
    """
    path = Path(path)
    advice = "restore it, or use another directory (or delete this one) to start over"
    try:
        manifest = json.loads(_read_text(path))
    except json.JSONDecodeError as err:
        raise RunDirError(
            f"{path} line {err.lineno}: not JSON ({err.msg} at column {err.colno}); {advice}"
        ) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("settings"), dict):
        raise RunDirError(f"{path}: not a flaxmnist manifest (no settings); {advice}")
    return manifest


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as err:
        raise RunDirError(f"{path}: not UTF-8 text (byte {err.start}); not flaxmnist's") from None
    except OSError as err:
        raise RunDirError(f"{path}: cannot read it ({err.strerror or err})") from None


#: The keys every record of ``results.jsonl`` has, whatever the version that wrote it.
RECORD_KEYS = (
    "study",
    "config",
    "config_index",
    "seed",
    "history",
    "val_accuracy",
    "test_accuracy",
    "diverged",
    "at_chance",
)


def check_records(records: Sequence[dict[str, Any]], path: str | Path) -> None:
    """Raise ``RunDirError`` naming the first record (of file ``path``) that lacks one of
    ``RECORD_KEYS``."""
    for number, record in enumerate(records, 1):
        missing = [key for key in RECORD_KEYS if key not in record]
        if missing:
            raise RunDirError(
                f"{path} record {number}: not a flaxmnist result (no {', '.join(missing)}); "
                "repair or delete that line"
            )


def default_out_dir(study_name: str) -> Path:
    """``runs/<study>-<timestamp>`` under the current directory, ``-2``, ``-3``… if taken."""
    base = Path("runs") / f"{study_name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    candidate, number = base, 1
    while candidate.exists():
        number += 1
        candidate = base.with_name(f"{base.name}-{number}")
    return candidate


def fingerprint(settings: dict[str, Any]) -> str:
    """The SHA-256 of ``settings`` as canonical JSON, without what the plan decided of each
    study (``planned``: rounds, start-up; a record of it, not a setting, and absent from
    older manifests)."""
    studies = [
        {k: v for k, v in study.items() if k != "planned"} for study in settings.get("studies", [])
    ]
    settings = {**settings, "studies": studies} if "studies" in settings else settings
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()


#: Run settings added since the first run directories, with the value older runs had.
ADDED_SETTINGS = {
    "dtype": "float32",
    "first_seed": 0,
    "budget": None,
    "precision": "float32",
    "warm_start": None,
}


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
    config.setdefault("dtype", ADDED_SETTINGS["dtype"])  # the one data setting added since
    return {**record, "config": config}


def open_run_dir(
    out: str | Path, settings: dict[str, Any], specs: dict[str, Any] | None = None
) -> list[dict[str, Any]]:
    """Prepare ``out`` for a run with ``settings``; return the records of an earlier attempt.

    A new directory gets ``manifest.json`` (the settings and their hash, and ``specs``: per
    study, its description, source and resolved spec). An existing one must hold the same
    settings (older manifests read with ``with_defaults``), else the run is refused rather
    than mixing results of different experiments; its ``specs`` become these (a description
    may change). Records an older flaxmnist wrote come back with the fields added since.

    Raises:
      SettingsError: ``out`` is a file, holds another run, or is a non-empty folder that
        is not a run directory.
      RunDirError: its manifest or results are torn or not flaxmnist's, or it cannot be
        written.
    """
    out = Path(out)
    check_usable(out)
    manifest_path = out / MANIFEST
    if manifest_path.exists():
        manifest = read_manifest(manifest_path)
        old = with_defaults(manifest["settings"])
        settings = _as_old(with_defaults(settings), old)
        if fingerprint(old) != fingerprint(settings):
            changed = sorted(k for k in {*old, *settings} if old.get(k) != settings.get(k))
            raise SettingsError(
                f"holds a run with other settings (changed: {', '.join(changed) or 'unknown'}); "
                "use another directory, or delete it to start over",
                parameter="out",
                value=out,
            )
        records = read_jsonl(out / RESULTS)
        check_records(records, out / RESULTS)
        if specs is not None and manifest.get("specs") != specs:  # e.g. a new description
            write_json_atomic(manifest_path, {**manifest, "specs": specs})
        return [_with_record_defaults(r) for r in records]
    manifest = {"fingerprint": fingerprint(settings), "settings": settings}
    write_json_atomic(manifest_path, manifest | ({"specs": specs} if specs is not None else {}))
    return []


def _as_old(settings: dict[str, Any], old: dict[str, Any]) -> dict[str, Any]:
    """``settings`` without the search's ``base`` of a study whose ``old`` settings lack it
    (a manifest written before it was kept): such a run resumes unchecked on it, as before."""
    old_studies = {study["name"]: study for study in old.get("studies", [])}
    studies = []
    for study in settings.get("studies", []):
        earlier = old_studies.get(study["name"], {}).get("search", {})
        if "search" in study and "base" not in earlier:
            study = {**study, "search": {k: v for k, v in study["search"].items() if k != "base"}}
        studies.append(study)
    return {**settings, "studies": studies} if "studies" in settings else settings


def read_timing(out: str | Path) -> dict[str, dict[str, str]]:
    """When each configuration of a run trained: ``"<study>/<config_index>"`` → ``started``
    and ``ended`` (ISO 8601 times: its lanes' first call or step began, its last record was
    written; a configuration resumed in flight starts again with the attempt that finished
    it). ``{}`` without the file (a run before flaxmnist kept it) or if it is unreadable."""
    try:
        timing = json.loads((Path(out) / TIMING).read_text())
    except (OSError, ValueError):
        return {}
    return timing if isinstance(timing, dict) else {}


def read_descriptions(out: str | Path) -> dict[str, str]:
    """Each study's description as its spec gave it (``manifest.json``'s ``specs``; ``{}``
    where there is no manifest or it predates them)."""
    try:
        specs = read_manifest(Path(out) / MANIFEST).get("specs", {})
    except (OSError, RunDirError):
        return {}
    return {name: spec["description"] for name, spec in specs.items() if "description" in spec}


def check_usable(out: Path) -> None:
    """Refuse ``out`` if it is a file, or a non-empty folder without a manifest.

    Raises:
      SettingsError: it is.
    """
    if out.exists() and not out.is_dir():
        raise SettingsError("exists and is not a directory", parameter="out", value=out)
    ours = (LOCK, *(_temp_prefix(name) for name in (MANIFEST, RESULTS)))
    if (
        out.exists()
        and not (out / MANIFEST).exists()
        and any(not p.name.startswith(ours) for p in out.iterdir())  # a first run killed early
    ):
        raise SettingsError(
            "exists, is not empty and holds no flaxmnist manifest", parameter="out", value=out
        )


def write_results(out: str | Path, records: Sequence[dict[str, Any]]) -> None:
    """Replace ``out/results.jsonl`` with ``records``, atomically."""
    write_jsonl_atomic(Path(out) / RESULTS, records)
