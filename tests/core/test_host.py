"""Host probing (sol.host): physical cores, not hyper-threads, from /proc/cpuinfo, the same
count for every plugin through sol.plugin_api (the benchmark harness gives each engine that many
threads)."""

from __future__ import annotations

import os

import pytest

import sol.host
import sol.plugin_api

# Two sockets, two cores each, two hyper-threads per core: 8 logical CPUs, 4 physical cores.
_CPUINFO = "\n\n".join(
    f"processor\t: {i}\nmodel name\t: Test CPU\nphysical id\t: {socket}\ncore id\t\t: {core}\nflags\t\t: sse avx2"
    for i, (socket, core) in enumerate((s, c) for s in (0, 1) for c in (0, 1) for _ in (0, 1)))


class _FakeCpuinfo:
    def __init__(self, text: str | None) -> None:
        self.text = text

    def __call__(self, path: str) -> _FakeCpuinfo:
        assert path == "/proc/cpuinfo"
        return self

    def read_text(self) -> str:
        if self.text is None:
            raise FileNotFoundError("/proc/cpuinfo")
        return self.text


def test_counts_cores_across_sockets_not_hyper_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sol.host, "Path", _FakeCpuinfo(_CPUINFO))
    assert sol.host.physical_cores() == 4


def test_without_core_ids_or_cpuinfo_it_counts_logical_cpus(monkeypatch: pytest.MonkeyPatch) -> None:
    """A virtual machine's cpuinfo may list no ``core id``; a non-Linux host has no cpuinfo."""
    monkeypatch.setattr(sol.host, "Path", _FakeCpuinfo("processor\t: 0\n\nprocessor\t: 1\n"))
    assert sol.host.physical_cores() == (os.cpu_count() or 1)
    monkeypatch.setattr(sol.host, "Path", _FakeCpuinfo(None))
    assert sol.host.physical_cores() == (os.cpu_count() or 1)


def test_this_host_and_the_plugin_api_agree() -> None:
    assert sol.plugin_api.physical_cores is sol.host.physical_cores
    assert 1 <= sol.host.physical_cores() <= (os.cpu_count() or 1)

