"""Chains of convolutions kept in oneDNN's 16-channel blocked layout (sol_x86.blocked), through
the public API against PyTorch eager: an inverted-residual chain (1x1 expand, 3x3 depthwise, 1x1
project, residual sum; channel counts that are and are not multiples of 16) is blocked whole and
keeps its tensors in oneDNN's layout between the convolutions; a chain cut by a pooling loop at
full size is not; ``blocked_chains=False``; NaN and infinity in the input; batch 1 and 3."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sol
from sol_x86.render import NetworkRenderer


def _block(cin: int, hidden: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, hidden, 1), nn.ReLU6(),
                         nn.Conv2d(hidden, hidden, 3, stride, 1, groups=hidden), nn.ReLU6(),
                         nn.Conv2d(hidden, cout, 1))


class Chain(nn.Module):
    """A stem, two inverted-residual blocks (the second with its residual sum) and a head whose
    7x7 output a mean reads: MobileNetV2's shape, small."""

    def __init__(self, pool: bool = False) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1), nn.ReLU6())
        self.pool = nn.MaxPool2d(3, 1, 1) if pool else nn.Identity()  # a loop cutting the chain at full size
        self.b1 = _block(16, 48, 24, 2)
        self.b2 = _block(24, 72, 24, 1)
        self.head = nn.Sequential(nn.Conv2d(24, 32, 1), nn.ReLU6())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b1(self.pool(self.stem(x)))
        y = y + self.b2(y)
        return self.head(y).mean((2, 3))


def _blocked(fast: nn.Module) -> tuple[int, int]:
    plan = fast.program.info["plan"]  # type: ignore[attr-defined]
    convs = [g for g in plan.groups if g.kind.name == "LIBRARY" and g.anchor.op.startswith("conv")]
    return len(NetworkRenderer(plan).blocked_convs()), len(convs)


def _close(fast: nn.Module, model: nn.Module, x: torch.Tensor) -> None:
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-5, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("batch", [1, 3])
def test_an_inverted_residual_chain_runs_blocked_and_matches_pytorch(batch: int) -> None:
    torch.manual_seed(0)
    model = Chain().eval()
    x = torch.randn(batch, 3, 28, 28)
    fast = sol.optimize(model, x, device="x86")
    blocked, convs = _blocked(fast)
    assert blocked == convs == 8
    lines = fast.program.info["libraries"].splitlines()  # type: ignore[attr-defined]
    # between the stem and the last block the tensors stay in oneDNN's layout (the 24-channel
    # ones, padded to 32 there, do not fit the plain buffer and are converted)
    assert sum("output kept" in line for line in lines) >= 3, lines
    _close(fast, model, x)
    _close(fast, model, 5 * torch.randn(batch, 3, 28, 28))
    _close(fast, model, x.contiguous(memory_format=torch.channels_last))


def test_nan_and_infinity_flow_through_a_blocked_chain_as_in_pytorch() -> None:
    torch.manual_seed(1)
    model = Chain().eval()
    x = torch.randn(2, 3, 28, 28)
    fast = sol.optimize(model, x, device="x86")
    x[0, 0, 3, 4], x[0, 1, 10, 10], x[1, 2, 20, 7] = float("nan"), float("inf"), float("-inf")
    _close(fast, model, x)


def test_a_chain_cut_by_a_full_size_pooling_is_not_blocked() -> None:
    torch.manual_seed(2)
    model = Chain(pool=True).eval()
    x = torch.randn(1, 3, 56, 56)  # the pooled tensor 28x28: no small chain end
    fast = sol.optimize(model, x, device="x86")
    assert _blocked(fast) == (0, 8)
    _close(fast, model, x)


def test_blocked_chains_false_keeps_onednns_own_choice() -> None:
    torch.manual_seed(3)
    model = Chain().eval()
    x = torch.randn(1, 3, 28, 28)
    fast = sol.optimize(model, x, device="x86", blocked_chains=False)
    assert _blocked(fast) == (0, 8)
    _close(fast, model, x)
