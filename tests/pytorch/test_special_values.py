"""NaN, +inf, -inf and -0.0 as PyTorch eager has them, for every op the frontend maps.

``test_reference`` imports each case and runs sol's NumPy references: the reference is PyTorch's
semantics (the device conformance suite, tests/conformance, then holds every device to the
reference with the same special values). ``test_device`` compiles all cases as one model per
device and compares with eager. Both compare NaN-aware: NaN exactly where eager has NaN, each
infinity with its sign, a zero with its sign where both are zero, the rest within rtol 1e-4 and
atol 1e-5 scaled by the output's largest finite magnitude.

Inputs are float32 tensors of 64 elements (or a multiple): PyTorch's CPU kernels run their
vectorized loop over all of them, and where the vectorized and scalar paths disagree (gelu(+inf):
NaN vectorized, +inf scalar) sol follows the vectorized one, which is what almost every element
of a real tensor takes.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from op_cases import Cases, check_device, check_reference, checked_arrays

nan, inf = math.nan, math.inf
torch.manual_seed(0)

# One row of every special value among ordinary ones, then rows of normal data with a few.
_ROW = [nan, inf, -inf, -0.0, 0.0, 1.5, -2.5, 3.0, -7.0, 1e-3, 100.0, -100.0, 0.5, -0.5, 30.0, -30.0]


def special(*shape: int, seed: int = 0) -> torch.Tensor:
    """A float32 tensor of ``shape`` (64 elements or a multiple of 64): its first 16 elements are
    ``_ROW``, about one in eight of the rest NaN, +inf, -inf or -0.0."""
    n = math.prod(shape)
    assert n % 64 == 0, "a multiple of 64 elements: PyTorch's vectorized loop covers them all"
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, generator=gen)
    x[:16] = torch.tensor(_ROW)
    picks = torch.randperm(n - 16, generator=gen)[: (n - 16) // 8] + 16
    x[picks] = torch.tensor([nan, inf, -inf, -0.0]).repeat(len(picks))[: len(picks)]
    return x.reshape(shape)


def with_masked_row(x: torch.Tensor) -> torch.Tensor:
    """``x`` with its second row all -inf (a fully masked softmax row)."""
    x = x.clone()
    x.view(-1, x.shape[-1])[1] = -inf
    return x


S = special(4, 16)
S2 = special(4, 16, seed=1)
IMG = special(2, 2, 4, 4, seed=2)  # N, C, H, W

CASES = Cases()
case = CASES.add

# --- element-wise, one input ---------------------------------------------------------------------------
for _name, _fn in {
    "relu": F.relu, "relu6": F.relu6, "hardtanh": lambda x: F.hardtanh(x, -1.5, 2.0),
    "leaky_relu": lambda x: F.leaky_relu(x, 0.2), "leaky_relu-slope0": lambda x: F.leaky_relu(x, 0.0),
    "clamp": lambda x: x.clamp(-1.0, 2.0), "clamp_min": lambda x: x.clamp(min=0.5),
    "clamp_max": lambda x: x.clamp(max=0.5), "hardswish": F.hardswish, "hardsigmoid": F.hardsigmoid,
    "sigmoid": torch.sigmoid, "tanh": torch.tanh, "exp": torch.exp, "log": torch.log, "sqrt": torch.sqrt,
    "rsqrt": torch.rsqrt, "reciprocal": torch.reciprocal, "square": torch.square, "silu": F.silu,
    "gelu": F.gelu, "gelu-tanh": lambda x: F.gelu(x, approximate="tanh"), "erf": torch.erf, "abs": torch.abs,
    "neg": torch.neg, "identity": lambda x: x.clone(),
}.items():
    case("unary", _name, _fn, S)
for _name in ("sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh", "floor", "ceil",
              "round", "trunc", "sign", "isnan", "isinf", "isposinf", "isneginf"):
    case("math", _name, getattr(torch, _name), S)
case("math", "halves", lambda x: (torch.round(x), torch.trunc(x), torch.floor(x), torch.ceil(x), torch.sign(x)),
     torch.tensor([0.5, 1.5, 2.5, -0.5, -1.5, -2.5, -0.0, 0.0, 3.49, -3.51, 1e30, nan, inf, -inf, 7.0, -7.0]))
case("math", "domains", lambda x: (torch.asin(x), torch.acos(x), torch.atanh(x), torch.acosh(x)),
     torch.tensor([-1.0, 1.0, -1.5, 1.5, 0.99, -0.99, 0.0, -0.0, 2.0, 1.0, nan, inf, -inf, 0.5, 3.0, -3.0]))
for _e in (0.5, -0.5, 2, 3, -1, -2, 1.5, 0):
    case("pow", f"x**{_e}", lambda x, e=_e: x ** e, S)
case("pow", "2**x", lambda x: 2.0 ** x, S)
case("pow", "x**y", lambda x, y: x.abs() ** y, S, S2)

# --- element-wise, two inputs ---------------------------------------------------------------------------
for _name, _fn in {
    "add": torch.add, "sub": torch.sub, "mul": torch.mul, "div": torch.div, "maximum": torch.maximum,
    "minimum": torch.minimum,
}.items():
    case("binary", _name, _fn, S, S2)
    case("binary", f"{_name}-swapped", _fn, S2, S)
case("binary", "maximum-nan-second", lambda x: torch.maximum(torch.ones_like(x), x), S)
case("binary", "minimum-nan-second", lambda x: torch.minimum(torch.zeros_like(x), x), S)
case("binary", "div-by-zero", lambda x: (x / 0.0, 0.0 / x, x / torch.zeros_like(x)), S)
case("binary", "mul-by-inf", lambda x: x * inf, S)
case("select", "where", lambda x, y: torch.where(x > y, x, y), S, S2)
case("select", "masked_fill-nan", lambda x: x.masked_fill(x != x, 0.0), S)
case("select", "compare", lambda x, y: ((x > y), (x == y), (x != y), (x <= y), torch.logical_not(x)), S, S2)

# --- reductions, softmax, normalization -----------------------------------------------------------------
case("reduce", "sum-mean", lambda x: (x.sum(1), x.mean(0), x.sum((0, 1))), S)
case("reduce", "sum-inf-rows", lambda x: x.sum(1),
     torch.tensor([[inf, 1.0], [inf, -inf], [-inf, 2.0], [-0.0, -0.0]]).repeat(8, 1))
case("reduce", "amax-amin", lambda x: (x.amax(1), x.amin(0), x.amax((0, 1))), S)
case("reduce", "max-min-dim", lambda x: (x.max(1), x.min(0)), S)
case("reduce", "argmax-argmin", lambda x: (x.argmax(1), x.argmin(0), x.argmax()), S)
case("softmax", "softmax", lambda x: (x.softmax(1), x.softmax(0)), with_masked_row(S))
case("softmax", "log_softmax", lambda x: (x.log_softmax(1), x.log_softmax(0)), with_masked_row(S))
case("softmax", "rows",
     lambda x: (x.softmax(-1), x.log_softmax(-1)),
     torch.tensor([[nan, 1.0, 2.0, 3.0], [inf, 1.0, 2.0, 3.0], [-inf, 1.0, 2.0, 3.0], [-inf] * 4,
                   [inf, inf, 1.0, 0.0], [-inf, inf, 0.0, 1.0], [1.0, 2.0, 3.0, 4.0], [0.0] * 4]).repeat(2, 1))
case("norm", "layer_norm", lambda x: F.layer_norm(x, (16,)), S)
case("norm", "group_norm", nn.GroupNorm(2, 2), IMG)
case("norm", "batch_norm", nn.BatchNorm2d(2).eval(), IMG)
_MASK = torch.zeros(4, 4)
_MASK[1] = -inf  # a query that may see no key: PyTorch's attention gives zeros there
_MASK[2, 1:] = -inf
case("attention", "fully-masked-row", lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=_MASK),
     torch.randn(2, 4, 8), torch.randn(2, 4, 8), torch.randn(2, 4, 8))
case("attention", "bool-mask-nan-query", lambda q, k, v: F.scaled_dot_product_attention(
    q, k, v, attn_mask=torch.tensor([[True, False, True, False]] * 3 + [[False] * 4])),
    special(2, 4, 8, seed=3), torch.randn(2, 4, 8), torch.randn(2, 4, 8))

# --- pooling, resizing ----------------------------------------------------------------------------------
case("pool", "max_pool2d", lambda x: (F.max_pool2d(x, 2), F.max_pool2d(x, 3, 1, 1)), IMG)
case("pool", "max_pool2d-all-neg-inf", lambda x: F.max_pool2d(x, 2), torch.full((1, 1, 8, 8), -inf))
case("pool", "avg_pool2d", lambda x: (F.avg_pool2d(x, 2), F.avg_pool2d(x, 3, 1, 1, count_include_pad=False)), IMG)
case("pool", "adaptive_avg_pool2d", lambda x: F.adaptive_avg_pool2d(x, (2, 3)), IMG)
case("pool", "interpolate", lambda x: (F.interpolate(x, scale_factor=2),
                                      F.interpolate(x, size=(6, 7), mode="bilinear")), IMG)

# --- library calls and their epilogues (oneDNN post-ops on x86) -------------------------------------
_conv = nn.Conv2d(2, 3, 3, padding=1)
_conv_w = nn.Conv2d(2, 3, 3, padding=1)
with torch.no_grad():
    _conv_w.weight[1, 0, 1, 1] = nan  # every output of channel 1 is NaN
    _conv_w.weight[2, 1, 0, 0] = inf  # a tap that meets the padding: padding adds nothing, not 0 * inf
_lin = nn.Linear(16, 8)
_lin_w = nn.Linear(16, 8)
with torch.no_grad():
    _lin_w.weight[2, 3] = nan
    _lin_w.weight[5, 0] = -inf
for _name, _fn in {
    "relu": F.relu, "relu6": F.relu6, "hardtanh": F.hardtanh, "clamp_min": lambda y: y.clamp(min=0.1),
    "exp": torch.exp, "hardsigmoid": F.hardsigmoid, "hardswish": F.hardswish, "sigmoid": torch.sigmoid,
    "silu": F.silu, "gelu": F.gelu, "leaky_relu-slope0": lambda y: F.leaky_relu(y, 0.0),
    "leaky_relu": lambda y: F.leaky_relu(y, 0.2), "tanh": torch.tanh, "log": torch.log, "sqrt": torch.sqrt,
    "abs": torch.abs, "neg": torch.neg, "add-scale": lambda y: y * torch.full((3, 1, 1), 0.5) + 1.0,
    "maximum": lambda y: torch.maximum(y, torch.zeros(3, 1, 1)),
    "minimum": lambda y: torch.minimum(y, torch.zeros(3, 1, 1)),
}.items():
    case("conv", f"conv-{_name}", lambda x, f=_fn: f(_conv(x)), IMG)
case("conv", "nan-inf-weights-relu", lambda x: F.relu(_conv_w(x)), torch.randn(2, 2, 4, 4))
for _name, _fn in {"gelu": F.gelu, "gelu-tanh": lambda y: F.gelu(y, approximate="tanh"), "relu": F.relu,
                   "maximum": lambda y: torch.maximum(y, torch.zeros(8))}.items():
    case("linear", f"linear-{_name}", lambda x, f=_fn: f(_lin(x)), S)
case("linear", "nan-inf-weights-gelu", lambda x: F.gelu(_lin_w(x) * 1e30), torch.randn(4, 16))
case("linear", "matmul", lambda x, y: x @ y.T, S, S2)

# --- recurrent and embedding ------------------------------------------------------------------------
_lstm, _gru = nn.LSTM(16, 4, batch_first=True), nn.GRU(16, 4, batch_first=True)
case("recurrent", "lstm", lambda x: _lstm(x)[0], S.reshape(1, 4, 16))
case("recurrent", "gru", lambda x: _gru(x)[0], S.reshape(1, 4, 16))
_emb = nn.Embedding(4, 16)
with torch.no_grad():
    _emb.weight.copy_(S)
case("embedding", "nan-table", lambda i: _emb(i) * 2, torch.tensor([[0, 1, 2, 3], [3, 2, 1, 0]]))

BY_ID = CASES.by_id()
FAMILIES = CASES.families()


def _close(got: Any, want: torch.Tensor, what: str, scaled_atol: bool = True) -> None:
    """NaN, infinities and the sign of zero exactly where PyTorch has them, the rest at rtol 1e-4;
    the absolute tolerance 1e-5 of the largest value (``scaled_atol``) or a plain 1e-6 (results
    spanning many magnitudes, as the special functions')."""
    got, w = checked_arrays(got, want, what)
    if w.dtype.kind != "f":
        np.testing.assert_array_equal(got, w, err_msg=what)
        return
    bad_nan = np.isnan(got) != np.isnan(w)
    assert not bad_nan.any(), f"{what}: NaN differs at {np.argwhere(bad_nan)[:4].tolist()}: " \
                              f"got {got[bad_nan][:4]}, PyTorch {w[bad_nan][:4]}"
    inf_ = np.isinf(got) | np.isinf(w)
    bad_inf = inf_ & (got != w)
    assert not bad_inf.any(), f"{what}: infinity differs at {np.argwhere(bad_inf)[:4].tolist()}: " \
                              f"got {got[bad_inf][:4]}, PyTorch {w[bad_inf][:4]}"
    finite = np.isfinite(w) & np.isfinite(got)
    zeros = finite & (got == 0) & (w == 0)
    bad_sign = zeros & (np.signbit(got) != np.signbit(w))
    assert not bad_sign.any(), f"{what}: sign of zero differs at {np.argwhere(bad_sign)[:4].tolist()}"
    scale = float(np.abs(w[finite]).max()) if finite.any() else 1.0
    atol = 1e-5 * max(1.0, scale) if scaled_atol else 1e-6
    np.testing.assert_allclose(got[finite], w[finite], rtol=1e-4, atol=atol, err_msg=what)


@pytest.mark.parametrize("case_id", list(BY_ID))
def test_reference(case_id: str) -> None:
    """The imported graph, run with sol's NumPy references, gives PyTorch's special values."""
    with np.errstate(all="ignore"):
        check_reference(BY_ID[case_id], _close)


@pytest.mark.parametrize("family", FAMILIES)
def test_device(device: str, family: str) -> None:
    """All cases of a family compiled together on ``device`` give PyTorch's special values."""
    check_device([c for c in CASES if c.family == family], device, _close)
