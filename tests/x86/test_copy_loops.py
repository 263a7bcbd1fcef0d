"""x86's generated copies (transpose and strided slices, ``sol.lowering.records.CopyRecord``):
the simplified nest, the tiled form of a true transpose (tiles cut at odd extents) and the
threads it starts when no enclosing loop does, each against PyTorch eager, exactly (a copy
rounds nothing: NaN, infinities and signed zeros come through as they are)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

import sol
from sol.lowering.loops import copy_plan
from sol.lowering.records import CopyDim

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from generated_source import sources  # noqa: E402


class Permute(nn.Module):
    def __init__(self, *perm: int) -> None:
        super().__init__()
        self.perm = perm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(*self.perm).contiguous() * 2.0


class Slice(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, 1::2, ::3].contiguous() + 1.0


CASES = [
    # (name, module, input shape, expected form of the copy: "tiled" or "rows")
    ("2d transpose, odd extents", Permute(1, 0), (37, 45), "tiled"),
    ("patches to tokens b1", Permute(0, 2, 1), (1, 100, 49), "tiled"),
    ("patches to tokens b3", Permute(0, 2, 1), (3, 70, 33), "tiled"),
    ("heads b1", Permute(0, 2, 1, 3), (1, 33, 6, 20), "rows"),
    ("nchw to nhwc b1", Permute(0, 2, 3, 1), (1, 24, 9, 11), "tiled"),
    ("nhwc to nchw b2", Permute(0, 3, 1, 2), (2, 9, 11, 40), "tiled"),
    ("5d shuffle", Permute(0, 2, 1, 4, 3), (2, 3, 5, 17, 19), "tiled"),
    ("thin inner dim", Permute(1, 0), (300, 3), "rows"),
    ("strided slice", Slice(), (2, 40, 61), "rows"),
]


def _input(shape: tuple[int, ...]) -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.randn(*shape)
    flat = x.view(-1)
    flat[:: 97] = float("nan")
    flat[5:: 89] = float("-inf")
    flat[7:: 83] = -0.0
    return x


@pytest.mark.parametrize("name,module,shape,form", CASES, ids=[c[0] for c in CASES])
def test_x86_copies_match_eager(name: str, module: nn.Module, shape: tuple[int, ...], form: str,
                                tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOL_DEBUG_DIR", str(tmp_path))
    x = _input(shape)
    fast = sol.optimize(module, x, device="x86")
    with torch.no_grad():
        want, got = module(x), fast(x)
    assert got.shape == want.shape
    assert torch.equal(torch.isnan(got), torch.isnan(want))
    assert torch.equal(torch.nan_to_num(got, nan=0.5), torch.nan_to_num(want, nan=0.5))
    assert torch.equal(torch.signbit(got), torch.signbit(want))
    text = "\n".join(sources(tmp_path).values())
    tiled = "+= 16)" in text
    assert tiled == (form == "tiled"), text


def test_copy_plan_merges_and_drops() -> None:
    # (2, 1, 3, 4) read contiguously: one loop of 24.
    assert copy_plan((2, 1, 3, 4), [12, 0, 4, 1], [12, 0, 4, 1]) == [CopyDim(24, 1, 1)]
    # permute (0, 2, 1, 3) of (1, 5, 6, 7): heads; the two middle dims do not merge.
    assert copy_plan((1, 6, 5, 7), [0, 7, 42, 1], [210, 35, 7, 1]) == [
        CopyDim(6, 7, 35), CopyDim(5, 42, 7), CopyDim(7, 1, 1)]
    # A single element: one loop of one.
    assert copy_plan((1, 1), [0, 0], [0, 0]) == [CopyDim(1, 0, 0)]
