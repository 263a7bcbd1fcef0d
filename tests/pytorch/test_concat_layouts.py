"""Convolutions feeding a channel concat (SqueezeNet's Fire, Inception's branches): each keeps its
bias and activation as its library's epilogue unless the concat really runs them in its own loop
nest, and the optimized model computes what eager PyTorch computes, NaN included. One model,
compiled at batch 1 and 3 per device."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sol
from sol.ir import Node
from sol.planner.plan import Group, GroupKind, Plan

pytestmark = pytest.mark.filterwarnings("ignore:sol device .* runs emulated")

_ACTIVATIONS = ("relu", "sigmoid", "leaky_relu")


class FireAndBranches(nn.Module):
    """A Fire module (squeeze, 1x1 and 3x3 expands with ReLU, concat) and a second concat of
    convolutions with different epilogues: bias + sigmoid, no bias and nothing, bias + leaky ReLU.
    Odd channel counts; 64x64 planes, so that one image of a branch (13 channels) is more than a
    fused loop's scratch on x86 and the concat cannot share the branches' loops at any batch."""

    def __init__(self) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(3, 5, 1)
        self.expand1 = nn.Conv2d(5, 13, 1)
        self.expand3 = nn.Conv2d(5, 7, 3, padding=1)
        self.a = nn.Conv2d(20, 3, 1)
        self.b = nn.Conv2d(20, 5, 3, padding=1, bias=False)
        self.c = nn.Conv2d(20, 13, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        s = F.relu(self.squeeze(x))
        fire = torch.cat([F.relu(self.expand1(s)), F.relu(self.expand3(s))], 1)
        mixed = torch.cat([torch.sigmoid(self.a(fire)), self.b(fire), F.leaky_relu(self.c(fire), 0.1)], 1)
        return fire, mixed


def _activation_groups(plan: Plan) -> list[tuple[Node, Group, Group | None]]:
    """Each activation reading a convolution (through its bias add): the activation's group and
    the group of the concat reading it (None where it is read by something else)."""
    group_of = {n: g for g in plan.groups for n in g.nodes}
    readers: dict[object, list[Node]] = {}
    for n in group_of:
        for v in n.inputs:
            readers.setdefault(v, []).append(n)
    found = []
    for node, group in group_of.items():
        if node.op not in _ACTIVATIONS:
            continue
        src = node.inputs[0].producer
        while src is not None and src.op == "add":
            src = src.inputs[0].producer
        if src is None or src.op != "conv2d":
            continue
        concat = next((r for r in readers.get(node.output, []) if r.op == "concat"), None)
        found.append((node, group, group_of[concat] if concat is not None else None))
    return found


@pytest.mark.parametrize("batch", [1, 3])
def test_concat_of_convolutions_matches_eager_and_keeps_epilogues(device: str, batch: int,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    # The NCHW plan (AVX2 machines; SOL_X86_LAYOUT=nchw); on AVX-512 these concats are computed
    # channels-last instead (tests/x86/test_channels_last.py).
    monkeypatch.setenv("SOL_X86_LAYOUT", "nchw")
    torch.manual_seed(0)
    model = FireAndBranches().eval()
    x = torch.randn(batch, 3, 64, 64)
    plan = sol.explain(model, x, device=device).plan
    found = _activation_groups(plan)
    assert len(found) == 5
    for node, group, concat_group in found:
        # Never a loop nest of its own between the convolution and the concat: either the
        # convolution's epilogue (a library group) or inside the concat's fused loops.
        assert group.kind is GroupKind.LIBRARY or group is concat_group, (node.op, [n.op for n in group.nodes])
    if device == "x86":
        # 13 channels of 64x64 floats exceed x86's scratch per loop iteration: the concat cannot
        # take those branches into its loops, so their activations run as oneDNN post-ops.
        big = [group for node, group, _ in found if node.output.shape[1] == 13]
        assert len(big) == 2 and all(g.kind is GroupKind.LIBRARY for g in big)
    fast = sol.optimize(model, x, device=device, fallback=False)
    special = x.clone()
    special[0, 0, 3, 4:7] = float("nan")  # through every branch: each reads the squeeze's NaNs
    for inp in (x, special):
        with torch.no_grad():
            want = model(inp)
            got = fast(inp)
        for w, o in zip(want, got):
            np.testing.assert_allclose(o.numpy(), w.numpy(), rtol=1e-5, atol=1e-5, equal_nan=True)
            assert torch.equal(torch.isnan(o), torch.isnan(w))
