"""Models the random-graph fuzzer (tests/pytorch/test_fuzz.py) broke on the VE, kept as tests.

- A fused group whose per-iteration scratch is a small array (adaptive pooling to 3x1 written into
  ``float L[3]``) followed by a stage that calls a math function (sigmoid's exp): LLVM's VE backend
  promoted the array to a vector register, which it cannot keep across the call, and clang-19
  failed ("Can't store this register to stack slot"). Scratch arrays now stay in memory.
"""

from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sol


class _PoolSigmoid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.norm = nn.GroupNorm(2, 2)
        self.register_buffer("mask", torch.tensor([0.9, 0.1, 0.7]).view(1, 1, 3, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.sigmoid(F.adaptive_avg_pool2d(self.norm(x), (3, 1)))
        return y.masked_fill(self.mask > 0.5, -2.0)


@pytest.mark.parametrize("variant", ["vel", "ncc"])
def test_small_scratch_before_a_math_call(variant: str) -> None:
    from sol.plugins import roles

    if "ve" not in roles().devices or not roles().devices.get("ve").availability().available:
        pytest.skip("the ve device is not available")
    torch.manual_seed(0)
    model = _PoolSigmoid().eval()
    x = torch.randn(6, 2, 3, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = sol.optimize(model, x, device="ve", fallback=False, ve_variant=variant)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-5)
