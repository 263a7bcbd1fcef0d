"""This machine's ceilings (peak FLOP rate, memory bandwidth) and the roofline built from them.

A roofline says how fast a piece of work can run at best: ``min(peak FLOP/s, intensity *
bandwidth)``, where intensity is FLOPs per byte moved (:mod:`sol.workload`). The ceilings are
measured, not taken from a data sheet: a plugin implementing the ``sol_measure_ceilings`` hook
(e.g. ``sol-benchmarks``: a large SGEMM and a large triad) measures them once, and core keeps the
result in ``$SOL_CACHE_DIR/ceilings.json`` keyed by device and machine, so every later report
reuses it. Core itself measures nothing and names no plugin.
"""

from __future__ import annotations

import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path

from sol import cache

FILE = "ceilings.json"


@dataclass(frozen=True)
class Ceilings:
    """Peak rates measured on this machine for one device.

    ``flops_per_s``: fp32 SGEMM throughput; ``bytes_per_s``: memory bandwidth (bytes read plus
    written per second); ``threads``: the threads used; ``basis``: how they were measured.
    """

    flops_per_s: float
    bytes_per_s: float
    threads: int
    basis: str
    measured_at: str = ""

    @property
    def ridge(self) -> float:
        """The intensity (FLOP/byte) where the memory roof meets the compute roof."""
        return self.flops_per_s / self.bytes_per_s

    def attainable(self, flops: float, nbytes: float) -> float:
        """The best FLOP rate the roofline allows for work of this intensity; for work without
        FLOPs, the bandwidth (bytes/s) is the only roof."""
        if flops <= 0:
            return self.bytes_per_s
        if nbytes <= 0:
            return self.flops_per_s
        return min(self.flops_per_s, flops / nbytes * self.bytes_per_s)

    def bound(self, flops: float, nbytes: float) -> str:
        """"compute" if the work's intensity is at or right of the ridge point, else "memory"."""
        if flops > 0 and (nbytes <= 0 or flops / nbytes >= self.ridge):
            return "compute"
        return "memory"

    def fraction(self, flops: float, nbytes: float, seconds: float) -> float:
        """Achieved rate over the attainable one: 1.0 means the work ran on the roof."""
        if seconds <= 0:
            return 0.0
        achieved = flops / seconds if flops > 0 else nbytes / seconds
        return achieved / self.attainable(flops, nbytes)


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_key(device: str) -> str:
    """Ceilings hold for one device on one machine: device, host name, CPU model, CPU count."""
    return f"{device}|{platform.node()}|{cpu_model()}|{os.cpu_count()}"


def _path() -> Path:
    return cache.cache_dir() / FILE


def _read_all() -> dict[str, dict]:
    try:
        data = json.loads(_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def load(device: str) -> Ceilings | None:
    """The cached ceilings for ``device`` on this machine, or None."""
    entry = _read_all().get(machine_key(device))
    if not isinstance(entry, dict):
        return None
    try:
        return Ceilings(**entry)
    except TypeError:  # written by another sol version: measure again
        return None


def save(device: str, ceilings: Ceilings) -> Path:
    """Store ``ceilings`` for ``device`` on this machine (atomically: temp file + rename)."""
    path = _path()
    path.parent.mkdir(parents=True, exist_ok=True)
    data = _read_all()
    data[machine_key(device)] = asdict(ceilings)
    cache.write_file(path, json.dumps(data, indent=1).encode())
    return path


def obtain(device: str, measure: bool = True) -> Ceilings | None:
    """Cached ceilings for ``device``, else (with ``measure``) ask the plugins to measure them
    and cache the answer; None when no installed plugin can."""
    found = load(device)
    if found is not None or not measure:
        return found
    from sol.plugins import manager

    measured = manager().hook.sol_measure_ceilings(device=device)
    if measured is not None:
        save(device, measured)
    return measured
