"""This CPU's ceilings for roofline reports, measured with oneDNN's own primitives.

The compute ceiling is the best rate of oneDNN's fp32 matmul (weights in the layout it prefers,
as a dense layer's are) over a few large shapes; the memory ceiling the best rate of oneDNN's
binary add over arrays far beyond the last-level cache (STREAM's count: two arrays read, one
written). Both run on the networks' own library and threads, so a group's "fraction of the
roof" is set against what this machine reaches with the kernels sol calls: a weaker reference
(``torch.mm``'s SGEMM, used before) let oneDNN's convolutions appear at 98-249% of the roof.
Best, not median: a ceiling is what the machine can do; noise only ever makes a run slower.
"""

from __future__ import annotations

import ctypes
import datetime

from sol.plugin_api import Ceilings, SolError

# (m, k, n) of the matmuls tried; the best rate counts. Square ones large enough that packing and
# threading are amortised, and a convolution-like one (many rows, few channels) for comparison.
SHAPES = ((1024, 1024, 1024), (2048, 2048, 2048), (25088, 576, 64))
QUICK_SHAPES = ((512, 512, 512),)
REPS, QUICK_REPS = 10, 2
STREAM_ELEMS = 64 * 2**20  # 256 MiB per array (float32)
QUICK_STREAM_ELEMS = 16 * 2**20


def measure(quick: bool = False) -> Ceilings:
    """Measure in this process on the caller's OpenMP thread count (nothing else should run)."""
    from sol_x86.compiler import RUNTIME
    from sol_x86.threads import openmp

    lib = ctypes.CDLL(str(RUNTIME.path()))
    matmul, triad = lib.sol_x86_matmul_rate, lib.sol_x86_triad_rate
    matmul.restype = triad.restype = ctypes.c_double
    matmul.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_long, ctypes.c_int]
    triad.argtypes = [ctypes.c_long, ctypes.c_int]
    reps = QUICK_REPS if quick else REPS
    rates = {shape: matmul(*shape, reps) for shape in (QUICK_SHAPES if quick else SHAPES)}
    best_shape = max(rates, key=lambda s: rates[s])
    elems = QUICK_STREAM_ELEMS if quick else STREAM_ELEMS
    bandwidth = triad(elems, reps * 2)
    if rates[best_shape] <= 0 or bandwidth <= 0:
        raise SolError("sol x86: oneDNN could not run the ceiling measurements")
    shapes = ", ".join(f"{m}x{k}x{n} {r / 1e9:.0f}" for (m, k, n), r in rates.items())
    basis = (f"best oneDNN fp32 matmul of {reps} (m x k x n GFLOP/s: {shapes}); best oneDNN add c = a + b "
             f"over 3 x {elems * 4 // 2**20} MiB of {reps * 2}")
    when = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return Ceilings(flops_per_s=rates[best_shape], bytes_per_s=bandwidth, threads=openmp().get_max_threads(),
                    basis=basis, measured_at=when)
