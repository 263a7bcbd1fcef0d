"""What sol knows about the host machine it runs on.

Why a module of its own in core: a CPU device sizes its thread pool and its parallel code parts
by the number of physical cores, and the benchmark harness gives every engine it compares that
same thread count. Each used to count cores itself (the benchmarks by importing the x86 plugin,
with a different answer when it was not installed); one function here gives every plugin the
same answer through :mod:`sol.plugin_api`.
"""

from __future__ import annotations

import os
from pathlib import Path


def physical_cores() -> int:
    """Cores, not hyper-threads: two threads per core only fight over the same FPUs."""
    try:
        seen = set()
        for block in Path("/proc/cpuinfo").read_text().split("\n\n"):
            fields = dict(line.split(":", 1) for line in block.splitlines() if ":" in line)
            fields = {k.strip(): v.strip() for k, v in fields.items()}
            if "core id" in fields:
                seen.add((fields.get("physical id", "0"), fields["core id"]))
        if seen:
            return len(seen)
    except OSError:
        pass
    return os.cpu_count() or 1
