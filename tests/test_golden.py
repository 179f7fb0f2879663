"""Numbers never change by accident: the golden studies rerun and compared, on any machine.

The golden spec (``tests/golden/golden.toml``: the ``lr`` and ``three-layer`` studies, 60
configurations x 2 seeds, on 2 CPU devices) is rerun at two horizons (``HORIZONS``):

- ``early``: one epoch of 600 images, three steps of 200, before another machine's rounding
  has grown; ``tests/golden/early/holdout/``, made at commit 6240f3b.
- ``end``: 2 epochs of 3,000 images, under both protocols; ``tests/golden/end/``, made at
  commit 3bf50e0 (before the runner was split into plan / grid / rundir).

Each horizon's ``machine.json`` says where its files were made. On that kind of machine
(CPU and jaxlib, ``this_machine``) a rerun equals them byte for byte. On any other, XLA
compiles for another CPU and sums in another order, and training amplifies the last bits:
there every metric must be within its tolerance (``tolerances``), a stated multiple of the
largest difference measured between CPUs, ISA caps and jaxlib versions (``MEASURED``; how:
``tests/golden/tolerances/``). ``test_a_deliberate_change_of_numerics_fails_the_comparison``
shows that the comparison can fail. Nothing here is skipped.

A change of numerics must be deliberate: regenerate the files with ``golden_command`` and
say so in the commit. Fields that the record format gained since a horizon's files were
made are dropped before comparing (``as_golden``).
"""

import json
import math
import os
import platform
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from flaxmnist.specs.config import HISTORY_KEYS

GOLDEN = Path(__file__).resolve().parent / "golden"

#: Config fields added to records after the end horizon's files were written, with the value
#: every golden record would have had.
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
    "parameterization": "standard",
    "mup_base_width": 300,
}
#: Record fields added since: each record's compute (checked in tests/test_search.py) and
#: its seeds' ensemble (tests/test_ensemble.py; compared here as metrics where both have it).
ADDED_RECORD_KEYS = ("compute", "ensemble")
#: Run settings added since, with the value the golden runs had.
ADDED_SETTINGS = {
    "dtype": "float32",
    "first_seed": 0,
    "budget": None,
    "precision": "float32",
    "warm_start": None,
}


@dataclass(frozen=True)
class Horizon:
    """One horizon of the golden check.

    Attributes:
      epochs, limit_train: the golden command's ``--epochs`` and ``--limit-train``.
      protocols: the ``--validate-on`` protocols with golden files.
      multiple: each tolerance is this multiple of ``measured``.
      measured: per metric, the largest and the mean difference measured between machines
        (``tests/golden/tolerances/measured-2026-12-05.txt``); losses relative, accuracies
        in points.
    """

    name: str
    epochs: int
    limit_train: int
    protocols: tuple[str, ...]
    multiple: float
    measured: dict[str, tuple[float, float]]

    @property
    def directory(self) -> Path:
        return GOLDEN / self.name


#: The early horizon's differences, against the files of ``early/`` (and their ``test``
#: protocol twin): on the Intel machine under ISA caps AVX512, AVX2, AVX and SSE4_2, and
#: under jaxlib 0.7.0, 0.12.0.1 and 0.12.1 (``tolerances/measured-2026-12-05.txt``, and
#: ``measured-2026-12-07.txt`` for 0.12.1, which differs the most: every value below but
#: training accuracy's, which never differed).
MEASURED_EARLY = {
    "train_loss": (6.49e-06, 1.5e-07),
    "train_accuracy": (0.0, 0.0),
    "val_loss": (7.36e-05, 1.04e-06),
    "val_accuracy": (0.09, 0.001),
    "test_loss": (7.36e-05, 1.04e-06),
    "test_accuracy": (0.09, 0.001),
    "ensemble_val_accuracy": (0.05, 0.00183),
    "ensemble_test_accuracy": (0.03, 0.00117),
}
#: The end horizon's, against the files of ``end/`` (AMD EPYC): the Intel machine, natively,
#: under the same ISA caps and under jaxlib 0.7.0 and 0.12.0.1. The largest are all the
#: diverging learning rate 1.0 (``lr`` configuration 0); the means are 100 times smaller.
MEASURED_END = {
    "train_loss": (0.0344, 0.000263),
    "train_accuracy": (0.3, 0.00306),
    "val_loss": (0.152, 0.000711),
    "val_accuracy": (2.1, 0.00971),
    "test_loss": (0.152, 0.000711),
    "test_accuracy": (1.78, 0.00912),
}

HORIZONS = {
    "early": Horizon("early", 1, 600, ("holdout",), 10, MEASURED_EARLY),
    "end": Horizon("end", 2, 3000, ("holdout", "test"), 4, MEASURED_END),
}


def golden_command(horizon: Horizon, protocol: str, out: Path) -> list[str]:
    """The command that wrote ``tests/golden/<horizon>/<protocol>/``."""
    return [
        sys.executable,
        "-m",
        "flaxmnist.sweep",
        str(GOLDEN / "golden.toml"),
        "--epochs",
        str(horizon.epochs),
        "--limit-train",
        str(horizon.limit_train),
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


def as_golden(record: dict, golden: dict) -> dict:
    """``record`` without the fields the record format gained after ``golden`` was written
    (an added config key must hold the value every golden record would have had)."""
    record = json.loads(json.dumps(record))
    for key, value in ADDED_CONFIG_KEYS.items():
        if key not in golden["config"]:
            assert record["config"].pop(key, value) == value, key
    for key in ADDED_RECORD_KEYS:
        if key not in golden:
            record.pop(key, None)
    return record


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def lane(record: dict) -> tuple:
    return record["study"], record["config_index"], record["seed"]


def metric_values(record: dict) -> dict[str, list]:
    """Every compared value of one record: per metric of the history, one per epoch; and
    the seeds' ensemble accuracies, where recorded, one each."""
    values = {metric: record["history"][metric] for metric in HISTORY_KEYS}
    for split in ("val", "test"):
        if "ensemble" in record:
            values[f"ensemble_{split}_accuracy"] = [record["ensemble"][f"{split}_accuracy"]]
    return values


def difference(metric: str, a: float | None, b: float | None) -> float:
    """How far apart two values of ``metric`` are: losses relatively, ``|a - b| / max(|a|,
    |b|)``; accuracies in points. Two non-finite values (recorded as null) are 0 apart, a
    finite and a non-finite infinitely."""
    finite = [x is not None and math.isfinite(x) for x in (a, b)]
    if not all(finite):
        return 0.0 if not any(finite) else math.inf
    if metric.endswith("loss"):
        return abs(a - b) / max(abs(a), abs(b), 1e-12)
    return abs(a - b) * 100


def differences(golden: list[dict], new: list[dict]) -> dict[str, list[tuple[float, tuple]]]:
    """Per metric, every ``(difference, lane)`` between ``new`` and the golden lanes it names
    (by study, ``config_index`` and seed), over every epoch; metrics only in one are skipped."""
    golden_by_lane = {lane(record): record for record in golden}
    found: dict[str, list[tuple[float, tuple]]] = {}
    for record in new:
        theirs, ours = metric_values(golden_by_lane[lane(record)]), metric_values(record)
        for metric in theirs.keys() & ours.keys():
            for a, b in zip(theirs[metric], ours[metric], strict=True):
                found.setdefault(metric, []).append((difference(metric, a, b), lane(record)))
    return found


def one_image(metric: str, horizon: Horizon) -> float:
    """An accuracy's smallest step, in points: one image of its split (the training images,
    or the 10,000 holdout or test images)."""
    return 100 / (horizon.limit_train if metric == "train_accuracy" else 10_000)


def tolerances(horizon: Horizon, values: int) -> dict[str, tuple[float, float]]:
    """Per metric, the largest and the mean difference allowed over ``values`` values:
    ``horizon.multiple`` times the measured ones. For an accuracy, never less than that
    multiple of one image, the least it can differ by: in one value (the largest), and
    spread over all ``values`` (the mean), so that a few lanes are held to as many flipped
    images as the whole spec."""
    allowed = {}
    for metric, (largest, mean) in horizon.measured.items():
        if metric.endswith("accuracy"):
            image = one_image(metric, horizon)
            largest, mean = max(largest, image), max(mean, image / values)
        allowed[metric] = (horizon.multiple * largest, horizon.multiple * mean)
    return allowed


def beyond_tolerance(golden: list[dict], new: list[dict], horizon: Horizon) -> list[str]:
    """One line per metric whose largest or mean difference exceeds its tolerance; none
    when ``new`` is within tolerance of ``golden``."""
    lines = []
    for metric, found in sorted(differences(golden, new).items()):
        largest, at = max(found)
        mean = sum(d for d, _ in found) / len(found)
        top, top_mean = tolerances(horizon, len(found))[metric]
        if largest > top or mean > top_mean:
            lines.append(
                f"{metric}: largest difference {largest:.3g} (lane {at}; tolerance {top:.3g}), "
                f"mean {mean:.3g} (tolerance {top_mean:.3g}) over {len(found)} values"
            )
    return lines


def structure(record: dict) -> dict:
    """What must be equal on every machine: the record without its measured numbers (the
    history, the last epoch's accuracies and the ensemble's)."""
    record = json.loads(json.dumps(record))
    for key in ("history", "val_accuracy", "test_accuracy"):
        record.pop(key)
    for key in ("val_accuracy", "test_accuracy"):
        record.get("ensemble", {}).pop(key, None)
    return record


def normalised_settings(manifest_path: Path) -> dict:
    settings = json.loads(manifest_path.read_text())["settings"]
    for key, value in ADDED_SETTINGS.items():
        assert settings.pop(key, value) == value, key
    for study in settings["studies"]:
        for config in study["configs"]:
            for key, value in ADDED_CONFIG_KEYS.items():
                assert config.pop(key, value) == value, key
    return settings


def run_golden(horizon: Horizon, protocol: str, out: Path) -> list[dict]:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    command = golden_command(horizon, protocol, out)
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, result.stderr
    return read_records(out / "results.jsonl")


@pytest.mark.parametrize(
    "horizon, protocol",
    [
        pytest.param(h, p, marks=[pytest.mark.heavy] if (h.name, p) == ("end", "test") else [])
        for h in HORIZONS.values()
        for p in h.protocols
    ],
    ids=lambda value: getattr(value, "name", value),
)
def test_golden_results_are_reproduced(horizon, protocol, tmp_path):
    """Byte for byte where the files were made; within tolerance anywhere else."""
    lines = (horizon.directory / protocol / "results.jsonl").read_text().splitlines()
    golden = [json.loads(line) for line in lines]
    new = [
        as_golden(r, g)
        for r, g in zip(run_golden(horizon, protocol, tmp_path / protocol), golden, strict=True)
    ]
    assert [lane(r) for r in new] == [lane(r) for r in golden]
    assert [structure(r) for r in new] == [structure(r) for r in golden]
    expected = normalised_settings(horizon.directory / protocol / "manifest.json")
    assert normalised_settings(tmp_path / protocol / "manifest.json") == expected
    made_on = json.loads((horizon.directory / "machine.json").read_text())
    if this_machine() == made_on:
        for number, (line, ours) in enumerate(zip(lines, new, strict=True), 1):
            assert json.dumps(ours) == line, f"line {number}"
    else:
        too_far = beyond_tolerance(golden, new, horizon)
        assert not too_far, f"made on {made_on}, run on {this_machine()}:\n" + "\n".join(too_far)


#: The deliberate changes of numerics ``tests/golden/perturb.py`` makes.
CHANGES = ("eps10", "lr101", "steps", "dropkey")


@pytest.fixture(scope="module")
def perturbed(tmp_path_factory) -> Path:
    """The early horizon on a few lanes of the golden spec, as made and with each change."""
    out = tmp_path_factory.mktemp("perturbed")
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    command = [sys.executable, str(GOLDEN / "perturb.py"), str(out), "--lanes", "few"]
    result = subprocess.run(
        [*command, "none", *CHANGES], capture_output=True, text=True, env=env, timeout=900
    )
    assert result.returncode == 0, result.stderr
    return out


def test_a_few_lanes_as_made_are_within_tolerance(perturbed):
    """The few lanes alone (fewer lanes per program than the golden run) pass the
    comparison that ``test_a_deliberate_change_of_numerics_fails_the_comparison`` fails."""
    golden = read_records(GOLDEN / "early" / "holdout" / "results.jsonl")
    new = read_records(perturbed / "none.jsonl")
    assert len(new) == 18
    assert beyond_tolerance(golden, new, HORIZONS["early"]) == []


@pytest.mark.parametrize("change", CHANGES)
def test_a_deliberate_change_of_numerics_fails_the_comparison(change, perturbed):
    """Adam's epsilon x10, a learning rate 1 % off, one step fewer, a dropout mask from
    another key: each is beyond the early horizon's tolerances, on any machine."""
    golden = read_records(GOLDEN / "early" / "holdout" / "results.jsonl")
    too_far = beyond_tolerance(
        golden, read_records(perturbed / f"{change}.jsonl"), HORIZONS["early"]
    )
    assert too_far, f"{change}: every metric within the golden tolerances"


def test_differences_are_relative_for_losses_and_in_points_for_accuracies():
    assert difference("val_loss", 2.0, 2.5) == pytest.approx(0.2)
    assert difference("train_loss", -1.0, 1.0) == pytest.approx(2.0)
    assert difference("test_accuracy", 0.9712, 0.9701) == pytest.approx(0.11)
    assert difference("val_loss", None, None) == 0.0
    assert difference("val_loss", None, 0.3) == math.inf
    assert difference("val_accuracy", 0.5, math.nan) == math.inf


def test_tolerances_are_the_stated_multiple_of_the_measured_differences():
    early = tolerances(HORIZONS["early"], values=120)
    assert early["val_loss"] == (10 * 7.36e-05, 10 * 1.04e-06)
    # Training accuracy never differed: one image of 600, 1/6 of a point, before the
    # multiple; in the mean, that image spread over the 120 values.
    assert early["train_accuracy"] == pytest.approx((10 * 100 / 600, 10 * 100 / 600 / 120))
    # Over 5 values the mean is never held below 10 flipped images spread over them.
    assert tolerances(HORIZONS["early"], values=5)["ensemble_test_accuracy"] == pytest.approx(
        (10 * 0.03, 10 * 0.01 / 5)
    )
    assert tolerances(HORIZONS["end"], values=240)["val_accuracy"] == (4 * 2.1, 4 * 0.00971)
