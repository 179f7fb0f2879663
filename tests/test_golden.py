"""Numbers never change by accident: two studies rerun and compared byte for byte.

``tests/golden/`` holds ``results.jsonl`` and ``manifest.json`` of ``lr`` and ``three-layer``
(``tests/golden/golden.toml``) with ``--epochs 2 --limit-train 3000 --seeds 2`` on 2 CPU
devices, under both protocols, written by commit 3bf50e0 (before the runner was split into
plan / grid / rundir). A change of numerics must be deliberate: regenerate the files with
the command in ``golden_command`` and say so in the commit.

Fields that the record format gained since are dropped before the comparison
(``ADDED_CONFIG_KEYS``); every other byte of every line must be equal.

Byte equality holds on one kind of machine: XLA compiles for the CPU it runs on, and another
CPU (AVX-512 instead of AVX2, say) or another jaxlib rounds differently in the last bits,
which training amplifies. ``machine.json`` records where the files were made. On that kind
of machine a difference fails the test; on another, the test is skipped, saying both
machines and the first line that differs.
"""

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"

#: Config fields added to records after the golden files were written, with the value every
#: golden record would have had.
ADDED_CONFIG_KEYS = {
    "dtype": "float32",
    "input_dropout": 0.0,
    "max_norm": 0.0,
    "lr_schedule": "constant",
    "lr_decay": 1.0,
    "warmup_epochs": 0.0,
    "augment_shift": 0,
    "augment_rotate": 0.0,
    "augment_scale": 0.0,
    "augment_elastic_alpha": 0.0,
    "augment_elastic_sigma": 4.0,
    "ema_decay": 0.0,
    "label_smoothing": 0.0,
}
#: Record fields added since: each record's compute (checked in tests/test_search.py) and
#: its seeds' ensemble (tests/test_ensemble.py).
ADDED_RECORD_KEYS = ("compute", "ensemble")
#: Run settings added since, with the value the golden runs had.
ADDED_SETTINGS = {"dtype": "float32", "first_seed": 0, "budget": None, "precision": "float32"}


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


SIMD_FLAGS = ("avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_bf16")


def this_machine() -> dict:
    """What decides XLA's CPU code: the CPU (vendor, model, vector extensions) and jaxlib."""
    import jaxlib

    cpu: dict = {}
    cpuinfo = Path("/proc/cpuinfo")
    for line in cpuinfo.read_text().splitlines() if cpuinfo.exists() else []:
        key, _, value = (part.strip() for part in line.partition(":"))
        if key in ("vendor_id", "model name", "cpu family", "model", "flags"):
            cpu.setdefault(key, value)
    flags = set(cpu.pop("flags", "").split())
    return {
        "arch": platform.machine(),
        **cpu,
        "simd": [flag for flag in SIMD_FLAGS if flag in flags],
        "jaxlib": jaxlib.__version__,
    }


def without_added_keys(line: str) -> str:
    record = json.loads(line)
    for key, value in ADDED_CONFIG_KEYS.items():
        assert record["config"].pop(key, value) == value, key
    for key in ADDED_RECORD_KEYS:
        record.pop(key, None)
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
    differing = [
        number
        for number, (old_line, new_line) in enumerate(zip(golden, new, strict=True), 1)
        if without_added_keys(new_line) != old_line
    ]
    if differing:
        made_on, here = json.loads((GOLDEN / "machine.json").read_text()), this_machine()
        if here != made_on:
            pytest.skip(
                f"{len(differing)} of {len(new)} lines differ (first: line {differing[0]}), "
                f"but byte equality is defined on the machine the files were made on: "
                f"{made_on}; this one is {here}"
            )
        number = differing[0]
        assert without_added_keys(new[number - 1]) == golden[number - 1], f"line {number}"
    old_settings = json.loads((GOLDEN / protocol / "manifest.json").read_text())["settings"]
    new_settings = json.loads((out / "manifest.json").read_text())["settings"]
    for key, value in ADDED_SETTINGS.items():
        assert new_settings.pop(key, value) == value, key
    for study in new_settings["studies"]:
        for config in study["configs"]:
            for key, value in ADDED_CONFIG_KEYS.items():
                assert config.pop(key, value) == value, key
    assert new_settings == old_settings
