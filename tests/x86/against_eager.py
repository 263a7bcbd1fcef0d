"""Comparing an x86 program with PyTorch eager where the program adds in another order than
PyTorch (Winograd's transforms, the one-row GEMV): a few ulps of the largest finite output."""

from __future__ import annotations

import torch
from torch import nn


def assert_matches_eager(fast: nn.Module, model: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        want, got = model(x), fast(x)
    finite = want[torch.isfinite(want)]
    scale = float(finite.abs().max()) if finite.numel() else 1.0
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5 * max(scale, 1.0), equal_nan=True)
