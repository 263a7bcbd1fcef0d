"""A GCC 12 miscompile that dropped a whole group of a network, and the compiler flag that keeps it
out (sol_x86.compiler.DEFAULT_FLAGS, -fno-delete-null-pointer-checks).

A group function whose buffers all lie in the network's arena, with loops not run through OpenMP
(single-loop element-wise stages under the parallel threshold), stores an int64 and a bool array
at different offsets of that arena. GCC's induction variable optimization then addresses every
array from one induction variable, as "0 + arena*(1-k) + iv*k": a null base pointer. The late
pure-const pass takes stores through a null pointer for impossible, finds the function pure, and
the caller drops the call: the network then read uninitialized memory (grid_sample's nearest mode
raised an index error with an index that was text left in the arena). With the flag a null-based
address may point to any memory, which is what it is here.

``test_group_call_survives`` builds that group, reduced from the generated source, with the flags
sol builds networks with; ``tests/pytorch/test_opinfo_grid_sample.py`` runs the network it came
from through ``sol.optimize``."""

from __future__ import annotations

import ctypes
import subprocess
from pathlib import Path

import pytest

from sol_x86 import compiler

SOURCE = r"""
// The loop of a grid_sample group (nearest, zeros padding): pixel indices and an "inside" mask
// from two grid coordinates, all buffers in one arena.
#include <cmath>
#include <cstdint>
#pragma GCC visibility push(hidden)
namespace nb {
struct Net { const void* params[15]; char* arena; };
alignas(64) static const int64_t ROW[2] = {0, 30};
alignas(64) static const int64_t WIDTH[1] = {6};
alignas(64) static const float ONE[1] = {1.0f}, ZERO[1] = {0.0f}, HALF[1] = {0.5f};
alignas(64) static const float SCALE_X[1] = {3.0f}, LAST_X[1] = {5.0f};
alignas(64) static const float SCALE_Y[1] = {2.5f}, LAST_Y[1] = {4.0f};
__attribute__((noinline)) void group(Net& net) {
  const float* __restrict gx = reinterpret_cast<const float*>(net.arena + 384);
  const float* __restrict gy = reinterpret_cast<const float*>(net.arena + 0);
  int64_t* __restrict index = reinterpret_cast<int64_t*>(net.arena + 1152);
  bool* __restrict inside = reinterpret_cast<bool*>(net.arena + 2688);
  const float *__restrict one = ONE, *__restrict zero = ZERO, *__restrict half = HALF;
  const float *__restrict sx = SCALE_X, *__restrict lx = LAST_X, *__restrict sy = SCALE_Y, *__restrict ly = LAST_Y;
  const int64_t *__restrict row = ROW, *__restrict width = WIDTH;
  for (long o = 0; o < 1; ++o) {
    for (long i0 = 0; i0 < 2; ++i0)
#pragma omp simd
      for (long i1 = 0; i1 < 48; ++i1) {
        const float x = std::nearbyint((gx[i0 * 48 + i1] + one[0]) * sx[0] - half[0]);
        const bool x_in = x >= zero[0] && x <= lx[0];
        const int64_t xi = static_cast<int64_t>(x_in ? x : zero[0]);
        const float y = std::nearbyint((gy[i0 * 48 + i1] + one[0]) * sy[0] - half[0]);
        const bool y_in = y >= zero[0] && y <= ly[0];
        const int64_t yi = static_cast<int64_t>(y_in ? y : zero[0]);
        index[i0 * 48 + i1] = row[i0] + yi * width[0] + xi;
        inside[i0 * 48 + i1] = y_in && x_in;
      }
  }
}
}  // namespace nb
#pragma GCC visibility pop
extern "C" int forward(void* handle) {
  nb::Net& net = *static_cast<nb::Net*>(handle);
  nb::group(net);
  return 0;
}
"""

ARENA_BYTES = 4096
INDEX_OFFSET = 1152  # the int64 index array of 96 entries


class _Net(ctypes.Structure):
    _fields_ = [("params", ctypes.c_void_p * 15), ("arena", ctypes.c_void_p)]


def _build(tmp_path: Path, flags: list[str]) -> ctypes.CDLL:
    cxx = compiler.cxx()
    if cxx is None:
        pytest.skip("no C++ compiler on PATH")
    (tmp_path / "group.cpp").write_text(SOURCE)
    lib = tmp_path / "group.so"
    subprocess.run([cxx, *flags, "-o", str(lib), str(tmp_path / "group.cpp")], check=True, capture_output=True)
    return ctypes.CDLL(str(lib))


def _indices(lib: ctypes.CDLL) -> list[int]:
    """The group's indices for an all-zero grid (every point at pixel (2, 2) of a 5x6 image)."""
    arena = (ctypes.c_char * ARENA_BYTES)()  # zeroed
    net = _Net()
    net.arena = ctypes.addressof(arena)
    assert lib.forward(ctypes.byref(net)) == 0
    return list((ctypes.c_int64 * 96).from_address(ctypes.addressof(arena) + INDEX_OFFSET))


def test_group_call_survives(tmp_path: Path) -> None:
    """With sol's flags the group runs: every index is row + 2 * 6 + 2 (row 0 for the first image,
    30 for the second). Without the flag, GCC 12 gives all zeros (the call is gone)."""
    got = _indices(_build(tmp_path, list(compiler.DEFAULT_FLAGS)))
    assert got == [14] * 48 + [44] * 48
