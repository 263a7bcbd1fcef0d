"""This machine's ceilings for the roofline: fp32 SGEMM throughput and memory bandwidth.

Measured with PyTorch's own CPU kernels in a subprocess with the benchmark's thread count:
the best of several large ``torch.mm`` calls (MKL/oneDNN SGEMM: the rate convolutions and dense
layers should approach) and the best of several triads ``a = b + 3 * c`` over arrays far larger
than the last-level cache (STREAM's convention: two arrays read, one written, write-allocate
traffic not counted). Best, not median: a ceiling is what the machine can do, and noise only
ever makes a run slower. ``python -m sol_benchmarks.ceilings --threads 2`` prints them as JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from typing import Any

from sol.roofline import Ceilings


@dataclass(frozen=True)
class Settings:
    gemm_sizes: tuple[int, ...]  # square SGEMMs tried; the best rate of any counts
    gemm_reps: int
    stream_mib: int  # size of each of the triad's three arrays
    stream_reps: int


FULL = Settings((1024, 2048), 5, 256, 10)
QUICK = Settings((512,), 3, 64, 4)


def measure_here(threads: int, quick: bool = False) -> dict[str, Any]:
    """Measure in this process (which should have nothing else running)."""
    import torch

    torch.set_num_threads(threads)
    cfg = QUICK if quick else FULL
    best_gemm, gemm_n = 0.0, 0
    for n in cfg.gemm_sizes:
        a, b = torch.rand(n, n), torch.rand(n, n)
        c = torch.empty(n, n)
        torch.mm(a, b, out=c)  # warm-up: thread pool, page faults
        for _ in range(cfg.gemm_reps):
            t = time.perf_counter()
            torch.mm(a, b, out=c)
            rate = 2.0 * n**3 / (time.perf_counter() - t)
            if rate > best_gemm:
                best_gemm, gemm_n = rate, n
    elems = cfg.stream_mib * 2**20 // 4
    x, y, z = torch.ones(elems), torch.ones(elems), torch.empty(elems)
    torch.add(x, y, alpha=3.0, out=z)  # touch every page first
    best_triad = best_copy = 0.0
    for _ in range(cfg.stream_reps):
        t = time.perf_counter()
        torch.add(x, y, alpha=3.0, out=z)
        best_triad = max(best_triad, 3 * 4 * elems / (time.perf_counter() - t))
        t = time.perf_counter()
        z.copy_(x)
        best_copy = max(best_copy, 2 * 4 * elems / (time.perf_counter() - t))
    basis = (f"best torch.mm {gemm_n}x{gemm_n} fp32 of {cfg.gemm_reps}; best triad a = b + 3c over "
             f"3 x {cfg.stream_mib} MiB of {cfg.stream_reps} (copy: {best_copy / 1e9:.1f} GB/s); "
             f"torch {torch.__version__}")
    return {"flops_per_s": best_gemm, "bytes_per_s": best_triad, "threads": torch.get_num_threads(),
            "basis": basis, "measured_at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}


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
