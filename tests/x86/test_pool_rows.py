"""x86's generated pooling loops (row by row, one vector loop per window column): every window
shape against PyTorch eager, with the edge cases the column ranges must get right: padding on
either side, ceil-mode windows past the input, strides wider than the window, dilation, NaN
(PyTorch: a NaN in the window wins), signed zeros (the first of equal values stays), counted
and uncounted padding and a divisor override."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sol

CASES = [
    ("max 3x3 s1 p1", nn.MaxPool2d(3, 1, 1)),
    ("max 3x3 s2 ceil", nn.MaxPool2d(3, 2, ceil_mode=True)),
    ("max 2x3 s(3,2) p(1,1) dil 2", nn.MaxPool2d((2, 3), (3, 2), (1, 1), dilation=2)),
    ("max 1x1 s3", nn.MaxPool2d(1, 3)),
    ("max 5x5 s2 p2 ceil", nn.MaxPool2d(5, 2, 2, ceil_mode=True)),
    ("avg 3x3 s1 p1", nn.AvgPool2d(3, 1, 1)),
    ("avg 3x3 s2 p1 ceil uncounted", nn.AvgPool2d(3, 2, 1, ceil_mode=True, count_include_pad=False)),
    ("avg 2x4 s(1,3) p(1,2)", nn.AvgPool2d((2, 4), (1, 3), (1, 2))),
    ("avg 3x3 s2 divisor 7", nn.AvgPool2d(3, 2, 1, divisor_override=7)),
]


def _input() -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.randn(2, 3, 11, 13)
    x[0, 0, 4, 5] = float("nan")
    x[0, 1, 0, 0] = float("nan")
    x[1, 2, 10, 12] = float("nan")
    x[1, 0, 3:6, 3:6] = 0.0  # +0.0 and -0.0 side by side: which one a max keeps shows in the sign
    x[1, 0, 4, 3:6] = -0.0
    x[0, 2, :, 7] = float("-inf")
    return x


@pytest.mark.parametrize("name,pool", CASES, ids=[c[0] for c in CASES])
def test_x86_pooling_matches_eager(name: str, pool: nn.Module) -> None:
    model = nn.Sequential(pool).eval()
    x = _input()
    fast = sol.optimize(model, x, device="x86")
    with torch.no_grad():
        want, got = model(x), fast(x)
    assert got.shape == want.shape
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    if name.startswith("max"):
        same = torch.nan_to_num(got, nan=7.0)
        ref = torch.nan_to_num(want, nan=7.0)
        assert torch.equal(same, ref)  # a max is exact
        assert torch.equal(torch.signbit(same), torch.signbit(ref))
    else:
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6, equal_nan=True)


ADAPTIVE = [((1, 1), (2, 4, 112, 112)), ((3, 5), (2, 3, 7, 11)), ((4, 1), (1, 2, 9, 13)), ((1, 3), (1, 2, 5, 6))]


@pytest.mark.parametrize("out,shape", ADAPTIVE, ids=[f"{o[0]}x{o[1]}-from-{s[2]}x{s[3]}" for o, s in ADAPTIVE])
def test_x86_adaptive_average_pooling_matches_eager(out: tuple[int, int], shape: tuple[int, ...]) -> None:
    """Whole-row windows (a global pool) summed as one vector run, overlapping windows row by
    row; NaN and infinity where eager has them."""
    torch.manual_seed(1)
    x = torch.randn(*shape) * 3 + 1
    x[0, 0, 0, 0] = float("nan")
    x[-1, -1, -1, -1] = float("inf")
    model = nn.Sequential(nn.AdaptiveAvgPool2d(out)).eval()
    fast = sol.optimize(model, x, device="x86")
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-6, atol=1e-6, equal_nan=True)
