"""Dense layers on one row (batch 1) with static weights run as sol's own GEMV
(sol_x86_gemv.hpp, the runtime's GemvDense), through the public API against PyTorch eager:
sizes that fill and that do not fill the 16-wide and 4-row blocks, bias or none, relu or none,
NaN and infinity in the input (NaN stays NaN through relu, as in PyTorch), a layer too small to
split over the threads; two rows and an epilogue it does not take go to oneDNN as before."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sol

from against_eager import assert_matches_eager


def _fast(model: nn.Module, x: torch.Tensor) -> tuple[nn.Module, str]:
    fast = sol.optimize(model, x, device="x86")
    return fast, fast.program.info["libraries"]  # type: ignore[attr-defined]


_close = assert_matches_eager


@pytest.mark.parametrize("features", [(1024, 512), (37, 13), (16, 4), (5, 1), (300, 1001)])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("relu", [True, False])
def test_one_row_matches_pytorch(features: tuple[int, int], bias: bool, relu: bool) -> None:
    torch.manual_seed(0)
    k, n = features
    model = nn.Sequential(nn.Linear(k, n, bias=bias), nn.ReLU() if relu else nn.Identity()).eval()
    x = torch.randn(1, k)
    fast, libraries = _fast(model, x)
    assert "gemv" in libraries, libraries
    _close(fast, model, x)
    _close(fast, model, 100 * torch.randn(1, k))
    special = torch.randn(1, k)
    special[0, 0] = float("nan")
    _close(fast, model, special)  # every output NaN, through relu too
    special[0, 0], special[0, -1] = float("inf"), float("-inf")
    _close(fast, model, special)


def test_a_classifier_at_batch_one_behind_convolutions() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(16, 64), nn.ReLU(), nn.Linear(64, 10)).eval()
    x = torch.randn(1, 3, 12, 12)
    fast, libraries = _fast(model, x)
    assert libraries.count(": gemv") == 2, libraries
    _close(fast, model, x)


def test_two_rows_and_other_epilogues_stay_with_onednn() -> None:
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(64, 32), nn.ReLU()).eval()
    fast, libraries = _fast(model, torch.randn(2, 64))
    assert "gemv" not in libraries, libraries
    _close(fast, model, torch.randn(2, 64))
    gelu = nn.Sequential(nn.Linear(64, 32), nn.GELU()).eval()
    fast, libraries = _fast(gelu, torch.randn(1, 64))
    assert "gemv" not in libraries, libraries
    _close(fast, gelu, torch.randn(1, 64))
