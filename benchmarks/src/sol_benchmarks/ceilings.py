"""This machine's ceilings for the roofline, as ``sol bench`` records them with its thread count.

The x86 device measures them (``sol_x86.ceilings``: oneDNN's own best fp32 matmul and a
bandwidth-bound oneDNN add over arrays far beyond the caches); this module runs that measurement
in a fresh subprocess whose every thread pool is sized to the benchmark's thread count, so
nothing else in the bench process (PyTorch's pools, loaded models) disturbs it.
``python -m sol_benchmarks.ceilings --threads 2`` prints them as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from dataclasses import asdict
from typing import Any

from sol.roofline import Ceilings


def measure_here(threads: int, quick: bool = False) -> dict[str, Any]:
    """Measure in this process (which should have nothing else running) on ``threads`` threads."""
    from sol_x86.ceilings import measure as device_measure
    from sol_x86.threads import openmp

    openmp().set_num_threads(threads)
    return asdict(device_measure(quick))


def thread_env(threads: int) -> dict[str, str]:
    """Every thread pool a process may start (OpenMP, MKL, OpenBLAS) sized alike."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "OPENBLAS_NUM_THREADS": str(threads)}


def measure(threads: int, quick: bool = False, timeout: float = 600) -> Ceilings:
    """Measure in a fresh subprocess with ``threads`` threads."""
    cmd = [sys.executable, "-m", "sol_benchmarks.ceilings", "--threads", str(threads)] + (["--quick"] if quick else [])
    env = {**os.environ, **thread_env(threads)}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"measuring the ceilings failed: {out.stderr.strip().splitlines()[-1:] or out.returncode}")
    return Ceilings(**json.loads(out.stdout.strip().splitlines()[-1]))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sol_benchmarks.ceilings", description=__doc__)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--quick", action="store_true")
    args = p.parse_args(argv)
    print(json.dumps(measure_here(args.threads, args.quick)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
