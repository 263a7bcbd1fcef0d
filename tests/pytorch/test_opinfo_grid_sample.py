"""torch.nn.functional.grid_sample (aten.grid_sampler_2d / grid_sampler_3d, issue #22 item 3), composed of
core ops in ``sol_pytorch.aten.grid_sample``: every mode (bilinear, nearest, bicubic in 2-D), padding mode
(zeros, border, reflection) and align_corners against eager, on grids with NaN, infinities, huge values,
exact borders and nearest's rounding ties (half to even), on images with NaN and infinities, and empty
results; gradients for the image and the grid against torch.autograd.

Where a position is NaN or infinite PyTorch's 2-D and 3-D CPU kernels disagree (2-D: clipping maps NaN to
0 and zeros padding gives NaN; 3-D: clipping maps NaN to size - 1 and zeros padding gives 0): sol follows
each, checked here against eager on this machine.

``test_reference`` imports each case and runs sol's NumPy references; ``test_device`` compiles each family
as one model per device.
"""

from __future__ import annotations

import copy
import itertools
import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from test_special_values import _close, special
from torch import nn

import sol

from op_cases import Cases, case_tests

nan, inf = math.nan, math.inf
PADDINGS = ("zeros", "border", "reflection")
COMBOS = list(itertools.product(PADDINGS, (False, True)))
SOME = [("zeros", False), ("border", True), ("reflection", False)]  # where all six would repeat a check

CASES = Cases()
case = CASES.add


def every_padding(mode: str, combos: list[tuple[str, bool]] = COMBOS) -> Any:
    """The padding modes and align_corners of one mode as one case (one output each)."""
    return lambda x, g: tuple(F.grid_sample(x, g, mode=mode, padding_mode=p, align_corners=a) for p, a in combos)


def every_padding_3d(mode: str) -> Any:
    """``every_padding`` for volumes, reflection on a second grid without huge values: reflecting a
    position of 1e30 folds it by an exact remainder (fmod), which one unit in the last place of the
    unnormalized position changes completely, and that last place depends on whether the compiler
    fuses its multiply-add (PyTorch's 3-D kernel does not, g++ for sol's x86 code may): beyond 2^24,
    where every float is an integer, the reflected position is implementation-defined."""
    return lambda x, g, h: tuple(F.grid_sample(x, h if p == "reflection" else g, mode=mode, padding_mode=p,
                                               align_corners=a) for p, a in COMBOS)


def grid(*shape: int, seed: int, special_rows: bool = True, huge: bool = True) -> torch.Tensor:
    """A grid in [-1.3, 1.3] (some points outside the image); with ``special_rows`` its first output
    rows hold NaN, infinities, huge values (``huge``; else 9.7 and -8.9), the borders -1 and 1 and
    nearest's ties (0, +-0.5: halfway between two pixels for the image sizes used here), once for
    each coordinate."""
    gen = torch.Generator().manual_seed(seed)
    g = torch.rand(*shape, generator=gen) * 2.6 - 1.3
    if special_rows:
        big = (1e30, -1e30) if huge else (9.7, -8.9)
        values = torch.tensor([nan, inf, -inf, *big, -1.0, 1.0, 0.0, 0.5, -0.5, 0.25, 37.3])
        points = g[0].reshape(-1, shape[-1])  # a view: writes reach g
        width = min(len(values), points.shape[0] // shape[-1])
        for axis in range(shape[-1]):
            points[axis * width:(axis + 1) * width, axis] = values[:width]
    return g


IMAGE = torch.randn(2, 3, 5, 6)  # H odd, W even: ties fall on different fractions per axis
VOLUME = torch.randn(2, 2, 3, 4, 5)
for _mode in ("bilinear", "nearest", "bicubic"):
    case("2d", _mode, every_padding(_mode), IMAGE, grid(2, 4, 12, 2, seed=1))
    case("2d", f"{_mode}-special-image", every_padding(_mode, SOME), special(2, 2, 4, 8),
         grid(2, 3, 7, 2, seed=2, special_rows=False))
    case("2d", f"{_mode}-one-pixel-axes", every_padding(_mode, COMBOS if _mode == "bilinear" else SOME),
         torch.randn(1, 2, 1, 4), grid(1, 3, 12, 2, seed=3))
case("2d", "grid_sampler_2d", lambda x, g: (torch.grid_sampler_2d(x, g, 0, 2, False),
                                            torch.grid_sampler(x, g, 2, 1, True)), IMAGE, grid(2, 4, 12, 2, seed=4))
case("2d", "float64", lambda x, g: (F.grid_sample(x, g, mode="bicubic", padding_mode="reflection", align_corners=False),
                                    F.grid_sample(x, g, padding_mode="border", align_corners=True)),
     IMAGE.double(), grid(2, 4, 12, 2, seed=5).double())
case("2d", "empty", lambda x, g, e: (F.grid_sample(x, g[:, :0], align_corners=True),
                                     F.grid_sample(e, g[:0], mode="nearest", align_corners=False)),
     IMAGE, grid(2, 4, 12, 2, seed=6), torch.randn(0, 3, 5, 6))
for _mode in ("bilinear", "nearest"):
    case("3d", _mode, every_padding_3d(_mode), VOLUME, grid(2, 2, 3, 12, 3, seed=7),
         grid(2, 2, 3, 12, 3, seed=7, huge=False))
    case("3d", f"{_mode}-special-image", every_padding(_mode, SOME), special(1, 2, 4, 4, 4),
         grid(1, 2, 3, 5, 3, seed=8, special_rows=False))
case("3d", "one-voxel-depth", every_padding_3d("bilinear"), torch.randn(1, 2, 1, 3, 4), grid(1, 1, 2, 12, 3, seed=9),
     grid(1, 1, 2, 12, 3, seed=9, huge=False))



test_reference, test_device = case_tests(CASES, _close)


def test_special_positions_follow_each_kernel() -> None:
    """The values the cases rely on, spelled out (eager on this machine): a NaN position clips to
    the first pixel in 2-D and to the last in 3-D, and with zeros padding gives NaN in 2-D
    bilinear, 0 in 3-D; sol gives the same."""
    img = torch.arange(1.0, 5.0).reshape(1, 1, 1, 4)
    g2 = torch.tensor([nan, 0.0]).reshape(1, 1, 1, 2)
    vol, g3 = img.reshape(1, 1, 1, 1, 4), torch.tensor([nan, 0.0, 0.0]).reshape(1, 1, 1, 1, 3)

    def both(x: torch.Tensor, g: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return (F.grid_sample(x, g, padding_mode="border", align_corners=False),
                F.grid_sample(x, g, padding_mode="zeros", align_corners=False))

    model = _Fn(both)
    for x, g, want in ((img, g2, (1.0, nan)), (vol, g3, (4.0, 0.0))):
        eager = [float(t) for t in model(x, g)]
        fast = sol.optimize(model, x, g, fallback=False)
        got = [float(t) for t in fast(x, g)]
        np.testing.assert_array_equal(eager, want)
        np.testing.assert_array_equal(got, want)


class _Fn(nn.Module):
    def __init__(self, fn: Any) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *xs: torch.Tensor) -> Any:
        return self.fn(*xs)


# --- gradients ----------------------------------------------------------------------------------------


class Warp(nn.Module):
    """The image and the grid as parameters: every mode, padding and align_corners of 2-D bilinear, each
    padding of bicubic and 3-D trilinear, nearest once each."""

    def __init__(self) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(11)
        self.image = nn.Parameter(torch.randn(2, 3, 5, 6, generator=gen))
        self.grid = nn.Parameter(torch.rand(2, 4, 7, 2, generator=gen) * 2.6 - 1.3)
        self.volume = nn.Parameter(torch.randn(1, 2, 3, 4, 5, generator=gen))
        self.grid3 = nn.Parameter(torch.rand(1, 2, 3, 4, 3, generator=gen) * 2.6 - 1.3)

    def forward(self, scale: torch.Tensor) -> tuple[torch.Tensor, ...]:
        outs = []
        for mode, combos in (("bilinear", COMBOS), ("bicubic", SOME), ("nearest", SOME[:1])):
            for p, a in combos:
                outs.append(F.grid_sample(self.image * scale, self.grid, mode=mode, padding_mode=p, align_corners=a))
        for mode, combos in (("bilinear", SOME), ("nearest", SOME[1:2])):
            for p, a in combos:
                outs.append(F.grid_sample(self.volume, self.grid3 * scale, mode=mode, padding_mode=p,
                                          align_corners=a))
        return tuple(outs)


def test_gradients_match_autograd(device: str) -> None:
    """Outputs and the gradients of image and grid through every mode against eager's autograd
    (the grid's through the interpolation weights: PyTorch's analytic gradient; nearest gives the
    grid none, a zero gradient)."""
    model = Warp().train()
    eager = copy.deepcopy(model)
    scale = torch.tensor(1.0)
    fast = sol.optimize(model, scale, device=device, fallback=False)
    assert fast.training
    probe = torch.Generator().manual_seed(12)
    outs_fast, outs_eager = fast(scale), eager(scale)
    weights = [torch.randn(o.shape, generator=probe) for o in outs_eager]
    sum((o * w).sum() for o, w in zip(outs_fast, weights)).backward()
    sum((o * w).sum() for o, w in zip(outs_eager, weights)).backward()
    for k, (a, b) in enumerate(zip(outs_fast, outs_eager)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"output {k}: {m}")
    for (name, p), (_, q) in zip(model.named_parameters(), eager.named_parameters(), strict=True):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-4, msg=lambda m, name=name: f"{name}.grad: {m}")
