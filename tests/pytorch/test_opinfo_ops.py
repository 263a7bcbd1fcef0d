"""The ATen operations added for PyTorch's OpInfo coverage (issue #22 item 3), against eager with
special values: C99's exponentials, logarithms and binary functions (core ops log1p, expm1, exp2,
log2, log10, erfc, fmod, atan2, hypot, copysign), what the frontend composes of them (remainder,
floor and truncating division, fmax/fmin, signbit, logical_xor, the ELU family), variances and
vector norms, any/all, and data movement (flip, movedim, repeat, diagonal, the split and copy
variants, addmv/addbmm).

``test_reference`` imports each case and runs sol's NumPy references (the core ops' references
are the semantics every device is held to by tests/conformance); ``test_device`` compiles each
family as one model per device. Both compare NaN-aware, as test_special_values: NaN exactly
where eager has NaN, infinities with their sign, the sign of zeros, the rest within rtol 1e-4.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from test_special_values import _close, special

from op_cases import Cases, case_tests

nan, inf = math.nan, math.inf
torch.manual_seed(0)

S = special(4, 16)
S2 = special(4, 16, seed=1)
_EDGES = [nan, inf, -inf, -0.0, 0.0, 1.0, -1.0, 2.5, -2.5, 0.75, -0.75, 1e-3, -1e-3, 7.0, -7.0, 1e30]
# every pair of special and ordinary values: a[i, j] = _EDGES[i], b[i, j] = _EDGES[j]
A = torch.tensor(_EDGES).repeat_interleave(16).reshape(16, 16)
B = torch.tensor(_EDGES).repeat(16).reshape(16, 16)
SMALL = torch.tensor([1e-8, -1e-8, 1e-30, -0.0, 0.0, -1.0, -2.0, 1e-4] * 8)  # where log1p/expm1 keep precision

CASES = Cases()
case = CASES.add

# --- core's new element-wise ops ------------------------------------------------------------------
for _name in ("log1p", "expm1", "exp2", "log2", "log10", "erfc"):
    case("explog", _name, getattr(torch, _name), S)
case("explog", "near-zero", lambda x: (torch.log1p(x), torch.expm1(x)), SMALL)
case("explog", "integer-input", lambda x: (torch.log1p(x), torch.exp2(x), torch.erfc(x)), torch.arange(-3, 61))
for _name in ("atan2", "hypot", "copysign", "fmod", "remainder", "fmax", "fmin", "floor_divide"):
    case("binary", _name, getattr(torch, _name), A, B)
    case("binary", f"{_name}-normal", getattr(torch, _name), S, S2)
case("binary", "div-trunc", lambda a, b: torch.div(a, b, rounding_mode="trunc"), A, B)
case("binary", "div-floor", lambda a, b: torch.div(a, b, rounding_mode="floor"), A, B)
case("binary", "scalars", lambda x: (torch.fmod(x, 1.5), torch.remainder(x, -1.5), 2.0 % x, x // 0.75,
                                     torch.copysign(x, -0.0), torch.div(x, -3.0, rounding_mode="trunc")), S)
case("binary", "integer-constants", lambda x: x + (torch.arange(5) - 7) % 3 + torch.fmod(torch.arange(5) - 7, 3)
     + torch.div(torch.arange(5) - 7, 2, rounding_mode="floor"), torch.randn(4, 5))
case("binary", "signbit", lambda x: (torch.signbit(x), torch.signbit(torch.arange(-2, 3))), S)
case("binary", "logical_xor", lambda x, y: (torch.logical_xor(x, y), torch.logical_xor(x > 0, y > 0)), S, S2)
case("elu", "elu", lambda x: (F.elu(x), F.elu(x, 0.3), F.selu(x), F.celu(x, 1.7)), S)

# --- reductions ------------------------------------------------------------------------------------
X = torch.randn(3, 5, 4)
case("stats", "var", lambda x: (x.var(), x.var(1), x.var((0, 2), correction=0, keepdim=True),
                                x.var(1, correction=2), x.var(1, unbiased=False), x.std(2)), X)
case("stats", "var-dof", lambda x: (x.var(1, correction=5), x.var(1, correction=7), x[:, :1].var(1)), X)
case("stats", "var_mean", lambda x: (torch.var_mean(x, 1), torch.var_mean(x, (0, 1), correction=0, keepdim=True)), X)
case("stats", "var-special", lambda x: (x.var(1), x.std(0)), S)
case("stats", "var-empty", lambda x: torch.var(x, 1), torch.zeros(3, 0))
for _ord in (2, 1, 0, 3, 0.5, inf, -inf):
    case("stats", f"norm-{_ord}", lambda x, o=_ord: (torch.linalg.vector_norm(x, o), torch.linalg.vector_norm(x, o, 1),
                                                     torch.linalg.vector_norm(x, o, (0, 2), keepdim=True)), X)
    case("stats", f"norm-{_ord}-special", lambda x, o=_ord: torch.linalg.vector_norm(x, o, 1), S)
case("stats", "any-all", lambda x: (x.any(), x.all(), x.any(1), x.all(0), torch.any(x > 1, dim=(0, 1)),
                                    (x > -2).all(1, keepdim=True)), S)
case("stats", "any-all-empty", lambda x: (x.any(1), x.all(1), x.any(0)), torch.zeros(3, 0))
case("stats", "any-uint8", lambda x: ((x > 0).to(torch.uint8).any(1), (x > 0).to(torch.uint8).all()), X)

# --- data movement ---------------------------------------------------------------------------------
case("layout", "flip", lambda x: (torch.flip(x, (0, 2)), torch.fliplr(x), torch.flipud(x), torch.rot90(x, 1, (1, 2))),
     X)
case("layout", "movedim", lambda x: (torch.movedim(x, 0, 2), torch.movedim(x, (0, 1), (2, 0)), torch.movedim(x, -1, 0)),
     X)
case("layout", "repeat", lambda x: (x.repeat(2, 1, 3), x.repeat(2, 1, 1, 2), torch.tile(x, (2,)), x.repeat(1, 0, 1)),
     X)
case("layout", "diagonal", lambda x: tuple(torch.diagonal(x, o, 1, 2) for o in (-4, -1, 0, 2, 3))
     + (torch.diagonal(x, 1, 2, 0), torch.linalg.diagonal(x, offset=-2), torch.diagonal_copy(x), torch.trace(x[0]),
        torch.diag(x[1]), torch.diag(x[1], -1)), X)
case("layout", "views", lambda x: (torch.broadcast_to(x[:, :1], (2, 3, 5, 4)), x.ravel(), torch.atleast_1d(x[0, 0, 0]),
                                   torch.atleast_2d(x[0, 0]), torch.atleast_3d(x[0]), torch.permute_copy(x, (2, 0, 1)),
                                   torch.view_copy(x, (5, 12)), torch.narrow_copy(x, 1, 1, 3),
                                   torch.unbind_copy(x, 1)), X)
case("layout", "splits", lambda x: (torch.hsplit(x, 5), torch.hsplit(x, [1, 3]), torch.vsplit(x, 3),
                                    torch.dsplit(x, 2), torch.dsplit(x, [3])), X)
case("layout", "addmv-addbmm", lambda m, v, s, b1, b2, s2: (
    torch.addmv(s, m, v), torch.addmv(s, m, v, beta=0.5, alpha=-2.0), torch.addmv(s * nan, m, v, beta=0.0),
    torch.addbmm(s2, b1, b2), torch.addbmm(s2, b1, b2, beta=-1.0, alpha=0.5), torch.addbmm(s2 * inf, b1, b2, beta=0)),
     torch.randn(4, 6), torch.randn(6), torch.randn(4), torch.randn(3, 4, 5), torch.randn(3, 5, 2), torch.randn(4, 2))

case("layout", "unfold-scatter", lambda x: (x.unfold(1, 2, 2), x.unfold(2, 3, 1), x.unfold(0, 3, 1),
                                           x[0, 0, 0].unfold(0, 1, 1),
                                           torch.slice_scatter(x, x[:, 1:4:2] * 2, 1, 1, 4, 2),
                                           torch.slice_scatter(x, -x[..., :1], -1, 0, 1),
                                           torch.diagonal_scatter(x, x[:, :4, 0] * 3, -1, 1, 2),
                                           torch.diagonal_scatter(x, x[:, 0, :2], 2, 1, 2),
                                           torch.cartesian_prod(x[0, 0], x[1, :, 0]), torch.cartesian_prod(x[0, 0])), X)
# index tensors known while tracing, after dimensions kept whole (an upsampling's source positions):
# these read the wrong dimension before the fix
case("layout", "index-known-after-slices", lambda x: (
    x[:, :, torch.arange(4).flip(0)], x[:, (torch.arange(3) * 1.5).long()], x[..., torch.tensor([3, 0])],
    F.interpolate(x, size=7), F.interpolate(x, scale_factor=1.7, mode="linear")), X)
# the wrong dimension's result had the right size here: a wrong number, not an error
case("layout", "index-known-same-size",
     lambda x: (x[:, :, torch.arange(2).flip(0)], x[:, (torch.arange(2) * 0.6).long()]),
     torch.arange(8.0).reshape(2, 2, 2))
case("layout", "replicate-negative", lambda x: (
    F.pad(x, (-2, 3, 1, -1), mode="replicate"), F.pad(x, (-4, 5), mode="replicate"),
    F.pad(x, (2, -3, -4, 2), mode="replicate")), X)
case("layout", "conjugate-transpose", lambda x: (x.mH, x[0].H, torch.adjoint(x)), X)
case("elu", "round-decimals", lambda x: (torch.round(x, decimals=0), torch.round(x * 100, decimals=1),
                                         torch.round(x * 1000, decimals=-2)), S)
case("elu", "ldexp", lambda x, e: (torch.ldexp(x, e), torch.ldexp(x, e.float())), S,
     torch.arange(-32, 32).reshape(4, 16) % 7 - 3)
case("stats", "native-layer-norm", lambda x, w, b: (torch.native_layer_norm(x, (5, 4), w, b, 1e-5),
                                                    torch.native_layer_norm(x, (4,), None, None, 0.5)),
     X, torch.randn(5, 4), torch.randn(5, 4))
case("stats", "native-group-norm", lambda x, w, b: torch.native_group_norm(x, w, b, 2, 6, 4, 3, 1e-3),
     torch.randn(2, 6, 2, 2), torch.randn(6), torch.randn(6))

for _p in (2.0, 1.0, 0.0, 3.0, inf):
    case("stats", f"cdist-pdist-{_p}", lambda a, b, p=_p: (
        torch.cdist(a, b, p), torch.cdist(a, b, p, "donot_use_mm_for_euclid_dist"), F.pdist(a[0], p),
        torch.dist(a[:, :3], b, p), torch.prod(a, 1), torch.prod(a[0, :5])), torch.randn(2, 7, 4), torch.randn(2, 3, 4))
case("stats", "cdist-product-form",  # above 25 rows, or asked for: PyTorch's matrix-product form
     lambda a, b: (torch.cdist(a, b), torch.cdist(a[:3], b[:4], 2.0, "use_mm_for_euclid_dist")),
     torch.randn(30, 5), torch.randn(27, 5))
case("stats", "adaptive-pools", lambda x: (F.adaptive_avg_pool3d(x, (2, 3, 1)), F.adaptive_max_pool3d(x, (3, 2, 2)),
                                           F.adaptive_max_pool2d(x[0], (4, 3)), F.adaptive_max_pool1d(x[0, 0], 3),
                                           F.adaptive_avg_pool3d(x, (5, 1, 4))), torch.randn(2, 3, 5, 7, 4))
case("elu", "angle-real", lambda x: (torch.angle(x), torch.real(x), torch.angle(torch.arange(-2, 3))), S)



test_reference, test_device = case_tests(CASES, _close)


def test_integer_division_of_run_time_tensors_is_refused() -> None:
    """An integer remainder or floor division by a tensor known only at run time could divide
    by zero (eager raises): refused, never compiled."""
    import sol
    from sol.errors import UnsupportedOpError

    class IntRemainder(torch.nn.Module):
        def forward(self, a: Any, b: Any) -> Any:
            return torch.remainder(a, b), torch.floor_divide(a, b)

    a, b = torch.arange(6), torch.tensor([1, 2, 3, 1, 2, 3])
    with pytest.raises(UnsupportedOpError, match="remainder|floor_divide"):
        sol.optimize(IntRemainder(), a, b, fallback=False)
