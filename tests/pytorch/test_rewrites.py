"""Core's pooling rewrites (sol.passes.commute) seen from PyTorch: the plan runs ReLU after max
pooling and DenseNet's transition convolution after its average pooling, and the optimized model
still computes what eager PyTorch computes, NaN and infinities included; training keeps
PyTorch's gradient routing. One compiled network per device for inference, one for training."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sol
from sol.ir import Node

pytestmark = pytest.mark.filterwarnings("ignore:sol device .* runs emulated")


class Branches(nn.Module):
    """The three shapes the rewrites look for, one output each: conv -> ReLU -> max pooling
    (ResNet's stem); BN -> ReLU -> 1x1 conv -> 2x2 average pooling (DenseNet's transition);
    ReLU on both branches of a concat before ceil-mode max pooling (SqueezeNet's Fire); and
    ReLU -> max pooling on the raw input, where NaN and infinities arrive unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.transition = nn.Conv2d(8, 4, 1, bias=False)
        self.squeeze = nn.Conv2d(8, 4, 1)
        self.expand1 = nn.Conv2d(4, 6, 1)
        self.expand3 = nn.Conv2d(4, 6, 3, padding=1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        a = F.max_pool2d(F.relu(self.stem(x)), 2)
        t = F.avg_pool2d(self.transition(F.relu(self.bn(a))), 2)
        s = F.relu(self.squeeze(a))
        fire = torch.cat([F.relu(self.expand1(s)), F.relu(self.expand3(s))], 1)
        return t, F.max_pool2d(fire, 3, 2, ceil_mode=True), F.max_pool2d(F.relu(x), 2)


def _model() -> Branches:
    torch.manual_seed(0)
    model = Branches().eval()
    with torch.no_grad():  # statistics and affine weights far from the identity
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
        model.bn.weight.uniform_(-2, 2)
        model.bn.bias.uniform_(-1, 1)
    return model


def _planned_nodes(model: nn.Module, x: torch.Tensor, device: str) -> list[Node]:
    plan = sol.explain(model, x, device=device).plan
    return [n for g in plan.groups for n in g.nodes]


def _follows(nodes: list[Node], first: str, then: str) -> int:
    """How many ``then`` nodes read a ``first`` node's result (through bias adds, which ride along;
    an op's channels-last form, sol.planner.layout, counts as the op)."""
    def op(n: Node) -> str:
        return n.op.removesuffix("_nhwc")

    count = 0
    for node in nodes:
        if op(node) != then:
            continue
        src = node.inputs[0].producer
        while src is not None and src.op in ("add", "reshape"):
            src = src.inputs[0].producer
        count += src is not None and op(src) == first
    return count


def test_relu_after_max_pooling_and_transition_conv_after_average_pooling(device: str) -> None:
    model = _model()
    x = torch.randn(2, 3, 16, 16)
    nodes = _planned_nodes(model, x, device)
    # Stem, Fire and raw input: ReLU after the max pooling, never before it.
    assert _follows(nodes, "max_pool2d", "relu") == 3 and _follows(nodes, "relu", "max_pool2d") == 0
    assert _follows(nodes, "avg_pool2d", "conv2d") == 1 and _follows(nodes, "conv2d", "avg_pool2d") == 0
    fast = sol.optimize(model, x, device=device, fallback=False)
    special = x.clone()
    special[0, 0, 1, 1] = float("nan")  # one window of each pooling at the stem, and the raw input's
    special[1, 2, 5:7, 4] = float("inf")
    special[1, 1, 9, 9:12] = float("-inf")
    special[0, 1, 12, 3] = -0.0
    for inp in (x, special):
        with torch.no_grad():
            want = model(inp)
            got = fast(inp)
        for w, o in zip(want, got):
            np.testing.assert_allclose(o.numpy(), w.numpy(), rtol=1e-5, atol=1e-6, equal_nan=True)
        # The raw input's ReLU and max pooling: comparisons only, so exactly eager's numbers.
        np.testing.assert_array_equal(got[2].numpy(), want[2].numpy())
    assert torch.isnan(got[2][0, 0, 0, 0]) and torch.isnan(got[0]).any()


class ClampPool(nn.Module):
    """torch.clamp's gradient passes at the bound: where two window elements clamp to 0.5, max
    pooling routes the gradient to the first, an input equal to 0.5; after the move it would go to
    the input's maximum, which the clamp cut (gradient 0)."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(torch.clamp(x * self.scale, max=0.5), 2)


def test_training_keeps_pytorchs_gradient_routing_at_ties(device: str) -> None:
    model = ClampPool().train()
    eager = copy.deepcopy(model)
    x = torch.tensor([[[[0.5, 0.7, 0.1, 0.2], [0.1, 0.2, 0.9, 0.5], [-1.0, -2.0, 0.3, 0.3],
                        [-3.0, -0.5, 0.3, 0.1]]]])
    fast = sol.optimize(model, x, device=device, fallback=False)
    r = torch.randn(1, 1, 2, 2)
    x_sol, x_eager = x.clone().requires_grad_(), x.clone().requires_grad_()
    (fast(x_sol) * r).sum().backward()
    (eager(x_eager) * r).sum().backward()
    assert x_eager.grad is not None and x_sol.grad is not None
    assert x_eager.grad[0, 0, 0, 0] == r[0, 0, 0, 0]  # the tie the move would have broken otherwise
    torch.testing.assert_close(x_sol.grad, x_eager.grad, rtol=0, atol=0)
    torch.testing.assert_close(model.scale.grad, eager.scale.grad, rtol=1e-5, atol=1e-6)
