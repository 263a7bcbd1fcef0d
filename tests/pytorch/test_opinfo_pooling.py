"""Pooling, normalization and 3-D ops (issue #22 item 3, the pooling family): max pooling's indices
(max_pool1d/2d/3d, adaptive_max_pool1d/2d/3d with ``return_indices``, max_pool2d_with_indices_backward),
avg_pool3d, conv3d, conv_transpose3d and BatchNorm in training mode (native_batch_norm,
_native_batch_norm_legit, _batch_norm_with_update, F.batch_norm with running statistics), against eager.

PyTorch's indices are the flat position within each (n, c) plane of the element a window picks: the
first maximum in window order, the last NaN of a window holding NaN, the first valid element of an
all -inf window (padding is never picked); the inputs below have many ties, several NaN per window
and -inf rows next to padding. Training-mode BatchNorm updates the running statistics it is given
in place, as eager does. ``test_reference`` runs each case's imported graph on sol's NumPy
references, ``test_device`` compiles each family as one model per device; gradients (3-D ops, max
pooling's routing of NaN windows, BatchNorm3d) are checked against torch.autograd.
"""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from test_special_values import _close
from torch import nn

import sol

from op_cases import Cases, Fn, case_tests

nan, inf = math.nan, math.inf
CASES = Cases()
case = CASES.add


def tied(*shape: int, seed: int, nans: float = 0.2) -> torch.Tensor:
    """Small integers (many ties in every window), about ``nans`` of them NaN, one -inf row per
    plane (all -inf windows next to the padding) and a few +inf."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(-2, 3, shape, generator=g).float()
    x[torch.rand(shape, generator=g) < nans] = nan
    x[torch.rand(shape, generator=g) < 0.03] = inf
    if len(shape) >= 2:
        x[..., 0, :] = -inf
    return x


X2 = tied(2, 3, 7, 9, seed=0)
X1 = tied(2, 3, 11, seed=1)
X3 = tied(2, 2, 5, 6, 7, seed=2)

# --- max pooling with indices ---------------------------------------------------------------------
case("maxpool", "2d-padding", lambda x: F.max_pool2d(x, 3, 2, padding=1, return_indices=True), X2)
case("maxpool", "2d-dilation-ceil", lambda x: F.max_pool2d(x, (2, 3), stride=(1, 2), dilation=(2, 1), ceil_mode=True,
                                                           return_indices=True), X2)
case("maxpool", "2d-unbatched", lambda x: F.max_pool2d(x, 2, return_indices=True), X2[0])
case("maxpool", "1d", lambda x: (F.max_pool1d(x, 3, 2, padding=1, return_indices=True),
                                 F.max_pool1d(x[0], 2, ceil_mode=True, return_indices=True)), X1)
case("maxpool", "3d", lambda x: (F.max_pool3d(x, 3, 2, padding=1, ceil_mode=True, return_indices=True),
                                 F.max_pool3d(x[1], (2, 3, 2), stride=(1, 2, 3), dilation=(1, 2, 1),
                                              return_indices=True), F.max_pool3d(x, 2)), X3)
case("maxpool", "adaptive", lambda x1, x2, x3: (F.adaptive_max_pool1d(x1, 4, return_indices=True),
                                                F.adaptive_max_pool2d(x2, (3, 4), return_indices=True),
                                                F.adaptive_max_pool2d(x2, (7, 3), return_indices=True),
                                                F.adaptive_max_pool2d(x2[0], 1, return_indices=True),
                                                F.adaptive_max_pool3d(x3, (2, 3, 4), return_indices=True)),
     X1, X2, X3)


def _pool_backward(g: torch.Tensor, x: torch.Tensor, i: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """max_pool2d_with_indices_backward with the pooling's own indices and with given ones
    (repeated positions accumulate)."""
    _, own = F.max_pool2d(x, 3, 2, padding=1, ceil_mode=True, return_indices=True)
    bwd = torch.ops.aten.max_pool2d_with_indices_backward.default
    return (bwd(g, x, [3, 3], [2, 2], [1, 1], [1, 1], True, own),
            bwd(g, x, [3, 3], [2, 2], [1, 1], [1, 1], True, i))


case("maxpool", "backward", _pool_backward, torch.randn(2, 3, 4, 5), X2,
     torch.randint(0, 63, (2, 3, 4, 5)))

# --- BatchNorm (outputs; the running statistics' updates: test_batch_norm_updates_running_statistics)
BN_X = torch.randn(4, 3, 5) * 3 + 1


def bn_params() -> list[torch.Tensor]:
    """weight, bias, running mean and variance: fresh tensors per case (the bundle passes each
    case's own; one tensor passed twice would be two aliased inputs)."""
    return [torch.randn(3), torch.randn(3), torch.randn(3), torch.rand(3) + 0.5]


case("bn", "native-eval", lambda x, w, b, m, v: torch.native_batch_norm(x, w, b, m, v, False, 0.1, 1e-3),
     BN_X.clone(), *bn_params())
case("bn", "native-batch-stats", lambda x, w, b: torch.native_batch_norm(x, w, b, None, None, True, 0.1, 1e-5),
     BN_X.clone(), *bn_params()[:2])
case("bn", "legit", lambda x, w, b, m, v: torch.ops.aten._native_batch_norm_legit(x, w, b, m.clone(), v.clone(),
                                                                                  True, 0.5, 0.6),
     BN_X.clone(), *bn_params())
case("bn", "legit-eval", lambda x, w, b, m, v: torch.ops.aten._native_batch_norm_legit(x, w, b, m, v, False, 0.5, 0.6),
     BN_X.clone(), *bn_params())
case("bn", "with-update", lambda x, w, b, m, v: torch.ops.aten._batch_norm_with_update(x, w, b, m.clone(), v.clone(),
                                                                                       0.3, 1e-5)[:3],
     BN_X.clone(), *bn_params())
case("bn", "functional", lambda x, m, v: F.batch_norm(x, m.clone(), v.clone(), training=True, momentum=0.2),
     torch.randn(2, 3, 4, 4), *bn_params()[2:])

# --- 3-D average pooling and convolutions -------------------------------------------------------------
V = torch.randn(2, 4, 5, 6, 7)
case("volume", "avg_pool3d", lambda x: (F.avg_pool3d(x, 3, 2, padding=1, ceil_mode=True, count_include_pad=False),
                                        F.avg_pool3d(x, 3, 2, padding=1, ceil_mode=True),
                                        F.avg_pool3d(x, (2, 3, 1), stride=(1, 2, 1), divisor_override=5),
                                        F.avg_pool3d(x[0], 2)), V)
case("volume", "conv3d", lambda x, w, b, w1: (F.conv3d(x, w, b, stride=(2, 1, 1), padding=(1, 0, 2), dilation=(1, 2, 1),
                                                       groups=2),
                                              F.conv3d(x, w1, padding="same"), F.conv3d(x[1], w1, stride=2)),
     V, torch.randn(6, 2, 3, 2, 3), torch.randn(6), torch.randn(3, 4, 2, 3, 3))
case("volume", "conv_transpose3d", lambda x, w, b, w1: (
    F.conv_transpose3d(x, w, b, stride=(2, 1, 2), padding=(1, 0, 1), output_padding=(1, 0, 0), dilation=(1, 1, 2),
                       groups=2),
    F.conv_transpose3d(x, w1, stride=1, padding=1, output_padding=1, dilation=2),
    F.conv_transpose3d(x[0], w1, stride=3)), V, torch.randn(4, 3, 3, 2, 3), torch.randn(6), torch.randn(4, 2, 2, 3, 2))



test_reference, test_device = case_tests(CASES, _close)


def test_indices_follow_pytorch_rule_on_a_hand_made_window(device: str) -> None:
    """The rule spelled out on one row: ties pick the first maximum, NaN the last NaN, an all -inf
    window beside the padding its first input element."""
    row = torch.tensor([[[[nan, 1.0, nan, 2.0, 5.0, 5.0, -inf, -inf, 3.0, nan]]]])
    model = Fn(lambda x: F.max_pool2d(x, (1, 3), stride=1, padding=(0, 1), return_indices=True)[1])
    got = sol.optimize(model, row, device=device, fallback=False)(row)
    assert got.tolist() == [[[[0, 2, 2, 2, 4, 4, 5, 8, 9, 9]]]]
    assert torch.equal(got, model(row))


@pytest.mark.parametrize("op", ["batch_norm", "native", "with_update"])
def test_batch_norm_updates_running_statistics(device: str, op: str) -> None:
    """Training-mode BatchNorm given running statistics updates them in place (PyTorch's momentum
    rule, the unbiased variance), call after call, as eager does; optimize itself changes nothing."""
    fns = {"batch_norm": lambda x, m, v: F.batch_norm(x, m, v, training=True, momentum=0.3, eps=1e-3),
           "native": lambda x, m, v: torch.native_batch_norm(x, None, None, m, v, True, 0.3, 1e-3)[0],
           "with_update": lambda x, m, v: torch.ops.aten._batch_norm_with_update(x, torch.ones(3), torch.zeros(3), m, v,
                                                                                 0.3, 1e-3)[0]}
    model = Fn(fns[op]).eval()  # eval: compiled for inference; the op itself is in training mode
    x, m, v = torch.randn(4, 3, 5) * 2 + 1, torch.randn(3), torch.rand(3) + 0.5
    m0, v0 = m.clone(), v.clone()
    fast = sol.optimize(model, x, m, v, device=device, fallback=False)
    assert torch.equal(m, m0) and torch.equal(v, v0)
    em, ev = m.clone(), v.clone()
    for step in range(2):
        xs = x + step
        torch.testing.assert_close(fast(xs, m, v), model(xs, em, ev), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(m, em, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(v, ev, rtol=1e-5, atol=1e-6)
    assert not torch.equal(m, m0)


class Volume(nn.Module):
    """The family's differentiable ops on parameters: a training step compares every gradient."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(5)
        self.conv = nn.Conv3d(2, 4, (3, 2, 3), stride=(2, 1, 1), padding=(1, 1, 0), dilation=(1, 2, 1), groups=2)
        self.bn = nn.BatchNorm3d(4)
        self.deconv = nn.ConvTranspose3d(4, 2, (2, 3, 2), stride=(2, 1, 2), padding=(1, 0, 1), output_padding=(1, 0, 0))
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g))
        nans = torch.randint(-2, 3, (1, 2, 6, 6), generator=g).float()
        nans[0, 0, :2, :2] = torch.tensor([[nan, 1.0], [nan, nan]])  # the last NaN takes the gradient
        nans[0, 1, 2:4, 2:4] = torch.tensor([[3.0, nan], [nan, 3.0]])
        self.plane = nn.Parameter(nans)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = self.bn(self.conv(x))
        y = self.deconv(F.relu(h))
        return (F.avg_pool3d(y, 2, 1, padding=1, count_include_pad=False), F.max_pool3d(y, 2, 2, ceil_mode=True),
                F.adaptive_max_pool2d(y[:, :, 0], (3, 2)), F.max_pool2d(self.plane, 2, 1, padding=1),
                F.max_pool2d(self.plane, 2))


def test_gradients_match_autograd(device: str) -> None:
    """Outputs, parameter gradients and BatchNorm3d's running statistics of a training step
    against eager's autograd (NaN windows route their gradient to the last NaN, as eager)."""
    model = Volume().train()
    eager = copy.deepcopy(model)
    x = torch.randn(2, 2, 5, 6, 7)
    fast = sol.optimize(model, x, device=device, fallback=False)
    assert fast.training
    outs_fast, outs_eager = fast(x), eager(x)
    probe = torch.Generator().manual_seed(9)
    weights = [torch.randn(o.shape, generator=probe) for o in outs_eager]
    # NaN outputs make the loss NaN but not the gradients: each output's gradient is its weight
    sum((o * w).sum() for o, w in zip(outs_fast, weights)).backward()
    sum((o * w).sum() for o, w in zip(outs_eager, weights)).backward()
    for k, (a, b) in enumerate(zip(outs_fast, outs_eager)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4, equal_nan=True, msg=lambda m, k=k: f"output {k}: {m}")
    for (name, p), (_, q) in zip(model.named_parameters(), eager.named_parameters(), strict=True):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-4, msg=lambda m, name=name: f"{name}.grad: {m}")
    for (name, a), (_, b) in zip(model.named_buffers(), eager.named_buffers(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=lambda m, name=name: f"{name}: {m}")
