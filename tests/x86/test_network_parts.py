"""Large networks are compiled in parts, one per core, side by side (network.cpp.j2's SOL_PART):
the parts must make the same network as one compile."""

from __future__ import annotations

import shutil

import pytest
import torch

import sol
from sol_x86 import render
from sol_x86.device import physical_cores

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")


class _ManyGroups(torch.nn.Module):
    """Convolutions with element-wise and pooling chains between them: several fused groups."""

    def __init__(self) -> None:
        super().__init__()
        self.c1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.c2 = torch.nn.Conv2d(8, 8, 3, padding=1)
        self.c3 = torch.nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.nn.functional.max_pool2d(torch.sigmoid(self.c1(x)) * x.mean(), 2)
        y = torch.softmax(self.c2(y), dim=1) + torch.tanh(y)
        return torch.nn.functional.avg_pool2d(self.c3(y).exp(), 2)


@pytest.mark.parametrize("min_lines", [1, 10**9], ids=["parts", "whole"])
def test_network_compiled_in_parts_matches_pytorch(min_lines: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(render, "PART_MIN_LINES", min_lines)
    torch.manual_seed(0)
    model = _ManyGroups().eval()
    x = torch.rand(2, 3, 16, 16)
    fast = sol.optimize(model, x, device="x86", fallback=False)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-5)
    # one part per physical core once any loops exceed the threshold (this model has far more
    # lines of loops than a machine has cores)
    want = 1 if min_lines > 1 else physical_cores()
    assert fast.program.info["source_meta"]["parts"] == want
