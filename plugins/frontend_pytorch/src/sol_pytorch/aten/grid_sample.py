"""``grid_sampler_2d`` / ``grid_sampler_3d`` (torch.nn.functional.grid_sample) composed of core ops.

For every output point the grid gives one normalized coordinate per spatial axis (x for the
width, y for the height, z for the depth); PyTorch's documented rules turn it into a source
position: *unnormalize* (align_corners: -1 and 1 are the centres of the corner pixels, else their
outer edges), then the padding mode (``border``: clip to [0, size - 1]; ``reflection``: reflect
about the borders, then clip; ``zeros``: keep, reading 0 outside), then the mode:

* bilinear: the 2^d integer corners around the position, weighted by their distances;
* nearest: the position rounded half to even (PyTorch's nearbyint);
* bicubic (2-D only): the 4 x 4 pixels around the floor, weighted by Keys' cubic convolution
  (A = -0.75); the padding mode applies to each of the 16 pixel positions, not to the
  coordinate.

Composition: the image, channels last and flattened to rows of C values ((N * D * H * W, C)), is
read with one core ``gather`` per corner at ``((n * D + z) * H + y) * W + x`` (int64), which copies
the C channel values of the point. A corner outside the image reads row 0 and is masked to 0
with ``where`` (the mask is computed in floating point, so NaN and huge positions never reach an
integer conversion). The blended result (N, P, C) goes back to (N, C, *grid dims).

PyTorch's CPU kernels differ between 2-D and 3-D where a position is not finite, and sol
follows each (what eager gives on x86; the C++ there leaves some of it to integer conversion of
NaN and infinity, so it is implementation-defined):

* 2-D (a vectorized kernel): clipping maps NaN to 0; bilinear and bicubic multiply a masked
  corner's 0 by its weight, so a NaN or infinite position with ``zeros`` padding gives NaN
  (nearest: 0); reflection folds with a double span (``|u| - trunc(|u| / 2s) * 2s``).
* 3-D (the scalar kernel): clipping maps NaN to size - 1 (``min(size - 1, max(u, 0))`` with C++'s
  comparisons); a corner outside the image is skipped, so a NaN or infinite position with
  ``zeros`` padding gives 0; reflection is ``fmod`` by one span and the parity of the flips.

Gradients follow from the ops' rules: the image's through ``gather`` (a scatter-add), the grid's
through the weights (floor and round have a zero gradient, clipping a zero one at and beyond
the borders, as PyTorch's ``clip_coordinates_set_grad``), which is PyTorch's analytic gradient.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from sol.plugin_api import Value
from sol_pytorch.aten.base import Args, Emitter, Unsupported, _tensor, converts

MODES = {0: "bilinear", 1: "nearest", 2: "bicubic"}
PADDINGS = {0: "zeros", 1: "border", 2: "reflection"}
CUBIC_A = -0.75  # PyTorch's bicubic constant (Keys' cubic convolution)


class _Sampler:
    """The graph pieces of one grid_sample: float32 (or the input's float dtype) coordinates of
    shape (N, P), int64 positions, and the channels-last image rows."""

    def __init__(self, em: Emitter, x: Value, grid: Value, padding: str, align: bool) -> None:
        self.em, self.padding, self.align = em, padding, align
        self.dt = x.dtype
        self.n, self.c = x.shape[:2]
        self.sizes: tuple[int, ...] = x.shape[2:]  # (D,) H, W
        self.dims = len(self.sizes)
        self.points = math.prod(grid.shape[1:-1])
        rank = x.type.rank
        rows = em.transpose(x, (0,) + tuple(range(2, rank)) + (1,))  # channels last
        self.table = em.reshape(rows, (self.n * math.prod(self.sizes), self.c))
        self.grid = em.reshape(grid, (self.n, self.points, self.dims))
        stride = math.prod(self.sizes)
        self.base = em.const(np.arange(self.n, dtype=np.int64).reshape(self.n, 1) * stride, "int64")

    # --- constants and small helpers ------------------------------------------------------------
    def k(self, value: float) -> Value:
        return self.em.const(value, self.dt)

    def op(self, name: str, *inputs: Value) -> Value:
        return self.em.emit(name, list(inputs))

    def where(self, cond: Value, a: Value, b: Value) -> Value:
        return self.em.emit("where", [cond, a, b])

    def coordinate(self, axis: int) -> Value:
        """The grid's normalized coordinate for spatial axis ``axis`` (0 = the first of D/H/W),
        shape (N, P). The grid's last dimension lists them from the width: x, y(, z)."""
        slot = self.dims - 1 - axis
        part = self.em.emit("slice", [self.grid], axes=(2,), starts=(slot,), stops=(slot + 1,))
        return self.em.reshape(part, (self.n, self.points))

    # --- PyTorch's coordinate rules ---------------------------------------------------------------
    def unnormalize(self, g: Value, size: int) -> Value:
        """-1..1 to pixel units: align_corners ((g + 1) / 2) * (size - 1), else ((g + 1) * size - 1) / 2.
        The 2-D kernel scales by a precomputed factor, (g + 1) * ((size - 1) / 2) or
        (g + 1) * (size / 2) - 0.5: the same numbers up to rounding, written as each kernel does."""
        shifted = self.op("add", g, self.k(1.0))
        if self.dims == 2:
            if self.align:
                return self.op("mul", shifted, self.k((size - 1) / 2))
            return self.op("sub", self.op("mul", shifted, self.k(size / 2)), self.k(0.5))
        if self.align:
            return self.op("mul", self.op("div", shifted, self.k(2.0)), self.k(size - 1))
        return self.op("div", self.op("sub", self.op("mul", shifted, self.k(size)), self.k(1.0)), self.k(2.0))

    def clip(self, u: Value, size: int) -> Value:
        """Clip to [0, size - 1]. 2-D: NaN becomes 0; 3-D: min(size - 1, max(u, 0)) with C++'s
        std::max / std::min comparisons, where NaN becomes size - 1. The gradient is zero at and
        beyond the borders (``where`` passes it only where its condition holds)."""
        hi, zero = self.k(size - 1), self.k(0.0)
        if self.dims == 2:
            low = self.where(self.op("gt", u, zero), u, zero)
        else:
            low = self.where(self.op("lt", u, zero), zero, u)
        return self.where(self.op("lt", low, hi), low, hi)

    def reflect(self, u: Value, size: int) -> Value:
        """Reflect about the borders: align_corners over [0, size - 1], else [-0.5, size - 0.5]
        (the pixels' outer edges); not yet clipped."""
        low = 0.0 if self.align else -0.5
        span = float(size - 1) if self.align else float(size)
        if span == 0.0:
            return self.em.graph.add_const(np.zeros(u.shape, dtype=self.dt), hint="k")
        mag = self.op("abs", self.op("sub", u, self.k(low)) if low else u)
        if self.dims == 2:  # fold with a double span: min(e, 2s - e), e = |u| - trunc(|u| / 2s) * 2s
            twice = self.k(2.0 * span)
            flips = self.op("floor", self.op("div", mag, twice))  # mag >= 0 (or NaN): floor is trunc
            extra = self.op("sub", mag, self.op("mul", flips, twice))
            folded = self.op("minimum", extra, self.op("sub", twice, extra))
            return self.op("add", folded, self.k(low)) if low else folded
        # 3-D: extra = fmod(|u - low|, s), flipped back when floor(|u - low| / s) is odd
        s = self.k(span)
        extra = self.op("fmod", mag, s)
        flips = self.op("floor", self.op("div", mag, s))
        odd = self.op("eq", self.op("fmod", flips, self.k(2.0)), self.k(1.0))
        back = self.op("add", self.op("sub", s, extra), self.k(low))
        return self.where(odd, back, self.op("add", extra, self.k(low)))

    def pad(self, u: Value, size: int) -> Value:
        """The padding mode's position rule (zeros: unchanged)."""
        if self.padding == "border":
            return self.clip(u, size)
        if self.padding == "reflection":
            return self.clip(self.reflect(u, size), size)
        return u

    def source(self, axis: int) -> Value:
        size = self.sizes[axis]
        return self.pad(self.unnormalize(self.coordinate(axis), size), size)

    # --- reading pixels ---------------------------------------------------------------------------
    def position(self, p: Value, size: int) -> tuple[Value, Value]:
        """An integral float position -> (inside [0, size - 1], int64 position or 0 outside).
        The test is in floating point: NaN and huge values are outside and never converted."""
        inside = self.em.emit("logical_and", [self.op("ge", p, self.k(0.0)), self.op("le", p, self.k(size - 1))])
        safe = self.where(inside, p, self.k(0.0))
        return inside, self.em.cast(safe, "int64")

    def read(self, corner: Sequence[tuple[Value, Value]]) -> tuple[Value, Value]:
        """Channel values (N, P, C) at one corner, given (inside, int64 position) per axis; the
        mask (N, P, 1) says where all axes are inside."""
        index: Value = self.base
        mask: Value | None = None
        for axis, (inside, pos) in enumerate(corner):
            scale = math.prod(self.sizes[axis + 1:])
            term = self.op("mul", pos, self.em.const(scale, "int64")) if scale != 1 else pos
            index = self.op("add", index, term)
            mask = inside if mask is None else self.em.emit("logical_and", [mask, inside])
        assert mask is not None
        values = self.em.emit("gather", [self.table, index], axis=0, wrap=False)
        return values, self.em.reshape(mask, (self.n, self.points, 1))

    def masked(self, corner: Sequence[tuple[Value, Value]]) -> Value:
        values, mask = self.read(corner)
        return self.where(mask, values, self.k(0.0))

    def weighted(self, corner: Sequence[tuple[Value, Value]], weight: Value) -> Value:
        """A corner's contribution: 2-D multiplies the masked value (0 outside) by the weight (a NaN
        weight gives NaN); 3-D skips a corner outside (0 whatever the weight)."""
        w = self.em.reshape(weight, (self.n, self.points, 1))
        if self.dims == 2:
            return self.op("mul", self.masked(corner), w)
        values, mask = self.read(corner)
        return self.where(mask, self.op("mul", values, w), self.k(0.0))

    def finish(self, acc: Value, out_shape: Sequence[int]) -> Value:
        """(N, P, C) -> (N, C, *grid dims)."""
        return self.em.reshape(self.em.transpose(acc, (0, 2, 1)), out_shape)


def _bilinear(s: _Sampler) -> Value:
    corners: list[list[tuple[Value, Value, Value]]] = []  # per axis: (inside, pos, weight) low, high
    for axis in range(s.dims):
        u = s.source(axis)
        low = s.op("floor", u)
        frac = s.op("sub", u, low)
        high = s.op("add", low, s.k(1.0))
        if s.dims == 2:  # the 2-D kernel: 1 - frac; the 3-D one: (low + 1) - u
            w_low = s.op("sub", s.k(1.0), frac)
        else:
            w_low = s.op("sub", high, u)
        corners.append([(*s.position(low, s.sizes[axis]), w_low), (*s.position(high, s.sizes[axis]), frac)])
    acc: Value | None = None
    for choice in np.ndindex(*(2,) * s.dims):  # first axis slowest: PyTorch's nw, ne, sw, se order
        picked = [corners[axis][bit] for axis, bit in enumerate(choice)]
        if s.dims == 2:  # weight y * x (the 2-D kernel), else x * y * z
            weight = s.op("mul", picked[0][2], picked[1][2])
        else:
            weight = s.op("mul", s.op("mul", picked[2][2], picked[1][2]), picked[0][2])
        term = s.weighted([(p[0], p[1]) for p in picked], weight)
        acc = term if acc is None else s.op("add", acc, term)
    assert acc is not None
    return acc


def _nearest(s: _Sampler) -> Value:
    corner = [s.position(s.op("round", s.source(axis)), s.sizes[axis]) for axis in range(s.dims)]
    return s.masked(corner)


def _cubic_weights(s: _Sampler, t: Value) -> list[Value]:
    """Keys' cubic convolution weights of the 4 taps at distances 1 + t, t, 1 - t, 2 - t."""
    a = CUBIC_A

    def near(d: Value) -> Value:  # |d| <= 1: ((A + 2) d - (A + 3)) d d + 1
        inner = s.op("sub", s.op("mul", s.k(a + 2), d), s.k(a + 3))
        return s.op("add", s.op("mul", s.op("mul", inner, d), d), s.k(1.0))

    def far(d: Value) -> Value:  # 1 < |d| < 2: ((A d - 5A) d + 8A) d - 4A
        inner = s.op("add", s.op("mul", s.op("sub", s.op("mul", s.k(a), d), s.k(5 * a)), d), s.k(8 * a))
        return s.op("sub", s.op("mul", inner, d), s.k(4 * a))

    return [far(s.op("add", t, s.k(1.0))), near(t), near(s.op("sub", s.k(1.0), t)), far(s.op("sub", s.k(2.0), t))]


def _bicubic(s: _Sampler) -> Value:
    taps: list[list[tuple[Value, Value]]] = []
    weights: list[list[Value]] = []
    for axis in range(2):
        size = s.sizes[axis]
        u = s.unnormalize(s.coordinate(axis), size)
        low = s.op("floor", u)
        weights.append(_cubic_weights(s, s.op("sub", u, low)))
        taps.append([s.position(s.pad(s.op("add", low, s.k(float(j - 1))), size), size) for j in range(4)])
    acc: Value | None = None
    for i in range(4):  # rows (y), each a blend of 4 columns (x)
        row: Value | None = None
        for j in range(4):
            term = s.op("mul", s.masked([taps[0][i], taps[1][j]]),
                        s.em.reshape(weights[1][j], (s.n, s.points, 1)))
            row = term if row is None else s.op("add", row, term)
        assert row is not None
        term = s.op("mul", row, s.em.reshape(weights[0][i], (s.n, s.points, 1)))
        acc = term if acc is None else s.op("add", acc, term)
    assert acc is not None
    return acc


def grid_sample(em: Emitter, x: Value, grid: Value, mode: int, padding: int, align: bool) -> Value:
    """PyTorch's grid_sampler_2d / grid_sampler_3d (see the module docstring)."""
    want = em.out
    dims = x.type.rank - 2
    if dims not in (2, 3) or grid.type.rank != dims + 2 or grid.shape[-1] != dims:
        raise Unsupported(f"grid_sample of {x.type} with grid {grid.type}")
    if mode not in MODES or padding not in PADDINGS:
        raise Unsupported(f"grid_sample mode {mode} padding {padding}")
    if MODES[mode] == "bicubic" and dims != 2:
        raise Unsupported("bicubic grid_sample of a volume (PyTorch has it for 2-D only)")
    if x.dtype not in ("float32", "float64") or grid.dtype != x.dtype:
        raise Unsupported(f"grid_sample of {x.dtype} with a {grid.dtype} grid")
    if want.numel == 0:
        return em.graph.add_const(np.zeros(want.shape, dtype=want.dtype), hint="empty")
    s = _Sampler(em, x, grid, PADDINGS[padding], bool(align))
    acc = {"bilinear": _bilinear, "nearest": _nearest, "bicubic": _bicubic}[MODES[mode]](s)
    return s.finish(acc, want.shape)


@converts("aten.grid_sampler_2d.default", "aten.grid_sampler_3d.default", "aten.grid_sampler.default")
def _grid_sampler(em: Emitter, a: Args) -> Value:
    return grid_sample(em, _tensor(a, "input"), _tensor(a, "grid"), int(a["interpolation_mode"]),
                       int(a["padding_mode"]), bool(a["align_corners"]))
