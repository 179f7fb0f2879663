import resource
from importlib import metadata

import jax
import pytest

from flaxmnist.devices import machine


def test_format_bytes():
    assert machine.format_bytes(512) == "512 B"
    assert machine.format_bytes(300 * 2**20) == "300.0 MiB"
    assert machine.format_bytes(57.1 * 2**30) == "57.1 GiB"


class FakeDevice:
    def __init__(self, platform, stats):
        self.platform, self.stats = platform, stats

    def memory_stats(self):
        if isinstance(self.stats, Exception):
            raise self.stats
        return self.stats


def test_the_budget_is_a_share_of_what_the_device_or_host_has(monkeypatch):
    gpu = FakeDevice("gpu", {"bytes_limit": 100 * 2**30})
    assert machine.default_memory_budget(gpu) == (80 * 2**30, "80% of the device's memory")
    monkeypatch.setattr(machine, "host_memory_bytes", lambda: 10 * 2**30)
    cpu = FakeDevice("cpu", None)
    assert machine.default_memory_budget(cpu) == (8 * 2**30, "80% of the host's memory")
    monkeypatch.setattr(machine, "host_memory_bytes", lambda: None)
    assert machine.default_memory_budget(cpu) == (None, "cpu reports no memory limit")


@pytest.mark.parametrize(
    "stats", [None, {}, {"bytes_limit": -1}, {"bytes_limit": 0}, NotImplementedError("no stats")]
)
def test_an_accelerator_without_a_memory_limit_gets_no_budget(stats):
    assert machine.default_memory_budget(FakeDevice("gpu", stats)) == (
        None, "gpu reports no memory limit"
    )  # fmt: skip


def test_host_memory_honours_an_address_space_limit(monkeypatch):
    unlimited = machine.host_memory_bytes()
    assert unlimited is not None and unlimited > 2**28
    monkeypatch.setattr(resource, "getrlimit", lambda which: (2**30, resource.RLIM_INFINITY))
    assert machine.host_memory_bytes() == 2**30


def test_environment_names_versions_commit_and_devices():
    environment = machine.environment(jax.devices())
    assert environment["versions"]["jax"] == jax.__version__
    assert environment["versions"]["flaxmnist"] == metadata.version("flaxmnist")
    assert environment["devices"] == {
        "platform": "cpu", "kind": jax.devices()[0].device_kind, "count": len(jax.devices())
    }  # fmt: skip
    assert environment["host"]["cpu"] and environment["host"]["cpu_count"] >= 1
    commit = environment["git_commit"]
    assert commit is None or len(commit.removesuffix("+dirty")) == 40
