"""Numbers never change by accident: two studies rerun and compared byte for byte.

``tests/golden/`` holds ``results.jsonl`` and ``manifest.json`` of ``lr`` and ``three-layer``
(``tests/golden/golden.toml``) with ``--epochs 2 --limit-train 3000 --seeds 2`` on 2 CPU
devices, under both protocols, written by commit 3bf50e0 (before the runner was split into
plan / grid / rundir). A change of numerics must be deliberate: regenerate the files with
the command in ``golden_command`` and say so in the commit.

Fields that the record format gained since are dropped before the comparison
(``ADDED_CONFIG_KEYS``); every other byte of every line must be equal.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"

#: Config fields added to records after the golden files were written, with the value every
#: golden record would have had.
ADDED_CONFIG_KEYS = {"dtype": "float32"}


def golden_command(protocol: str, out: Path) -> list[str]:
    """The command that wrote ``tests/golden/<protocol>/``."""
    return [
        sys.executable,
        "-m",
        "flaxmnist.sweep",
        str(GOLDEN / "golden.toml"),
        "--epochs",
        "2",
        "--limit-train",
        "3000",
        "--seeds",
        "2",
        "--validate-on",
        protocol,
        "--cpu-devices",
        "2",
        "--no-compile-cache",
        "--quiet",
        "--out",
        str(out),
    ]


def without_added_keys(line: str) -> str:
    record = json.loads(line)
    for key, value in ADDED_CONFIG_KEYS.items():
        assert record["config"].pop(key, value) == value, key
    return json.dumps(record, allow_nan=False)


@pytest.mark.parametrize("protocol", ["holdout", "test"])
def test_golden_results_are_reproduced_byte_for_byte(protocol, tmp_path):
    out = tmp_path / protocol
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    result = subprocess.run(
        golden_command(protocol, out), capture_output=True, text=True, env=env, timeout=900
    )
    assert result.returncode == 0, result.stderr
    golden = (GOLDEN / protocol / "results.jsonl").read_text().splitlines()
    new = (out / "results.jsonl").read_text().splitlines()
    assert len(new) == len(golden) == (24 + 36) * 2
    for number, (old_line, new_line) in enumerate(zip(golden, new, strict=True), 1):
        assert without_added_keys(new_line) == old_line, f"results.jsonl line {number}"
    old_settings = json.loads((GOLDEN / protocol / "manifest.json").read_text())["settings"]
    new_settings = json.loads((out / "manifest.json").read_text())["settings"]
    assert new_settings.pop("dtype", "float32") == "float32"
    assert new_settings == old_settings
