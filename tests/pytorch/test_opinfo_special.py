"""The special functions added for PyTorch's OpInfo coverage (issue #22 item 3): core's element-wise
ops of sol.ops.special (the gamma family, erfinv/ndtri/erfcx, the Bessel family, Airy's Ai, Hurwitz
zeta, nextafter, the orthogonal polynomials) and what PyTorch composes of them (mvlgamma,
log_ndtr), against eager.

``test_reference`` runs each case's imported graph through sol's NumPy references;
``test_device`` compiles each family as one model per device (core's C helpers in sol/special.j2,
shared by every C-family device). Values cover the poles, zeros, infinities and NaN as PyTorch
gives them, both sides of every switch between formulas (series, asymptotic expansions), and large
orders where the polynomials' float32 recurrences overflow to inf and NaN. Tolerance: NaN and
infinities exactly, the sign of zeros, the rest within rtol 1e-4 (atol 1e-6 for values near a
function's zeros, where PyTorch's own float32 evaluation is no better).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from test_special_values import _close as special_values_close

import sol
from sol.pytorch import optimize

from op_cases import Cases, case_tests

nan, inf = math.nan, math.inf
S = torch.special

_EDGES = [nan, inf, -inf, 0.0, -0.0, 1.0, -1.0, -2.0, 2.5, -2.5, 0.5, -0.5, 1e-3, -1e-3, 1e-30, 1.4616321,
          7.3, -7.3, 16.9, 17.1, 29.9, 30.1, -30.1, 89.0, 100.0, -100.0, 800.0, 1e30, -1e30, 1.9999, 2.0001, 5.0]
# edges and a spread of magnitudes: 256 values
_GEN = torch.Generator().manual_seed(0)
X = torch.cat([torch.tensor(_EDGES), torch.randn(96, generator=_GEN) * 4,
               torch.exp(torch.rand(64, generator=_GEN) * 8 - 4), -torch.exp(torch.rand(64, generator=_GEN) * 8 - 4)])
# no negative integers: PyTorch's trigamma gives finite values there (float32 rounding of sin(pi x)) where
# the pole is (+inf, as sol gives, and as PyTorch's polygamma(n >= 2) gives)
X_POLYGAMMA = X[~((X < 0) & (X == torch.floor(X)))]
UNIT = torch.cat([torch.tensor([nan, inf, -inf, 1.0, -1.0, 0.0, -0.0, 1.0000001, 0.99999994, -0.99999994, 0.5, -0.5,
                                1e-30, 0.9, -0.95, 2.0]), torch.rand(112, generator=_GEN) * 2 - 1])
PROB = torch.cat([torch.tensor([nan, inf, -inf, 0.0, 1.0, -0.0, 1e-45, 1e-38, 1e-20, 1e-7, 0.5, 0.9999999, 0.99999994,
                                1.0000001, -0.5, 0.975]), torch.rand(112, generator=_GEN)])

CASES = Cases()
case = CASES.add

# --- the gamma family ------------------------------------------------------------------------------
case("gamma", "lgamma", torch.lgamma, X)
case("gamma", "digamma", torch.digamma, X)
for _n in (0, 1, 2, 3, 4):
    case("gamma", f"polygamma-{_n}", lambda x, n=_n: torch.polygamma(n, x), X_POLYGAMMA)
case("gamma", "mvlgamma", lambda x: (torch.mvlgamma(x.abs() + 3, 1), torch.mvlgamma(x.abs() + 3, 3),
                                     torch.mvlgamma(x.abs() + 3, 5)), X[3:])
case("gamma", "special-polygamma", lambda x: (S.polygamma(1, x), S.psi(x), S.gammaln(x)), X_POLYGAMMA)
case("gamma", "integer-input", lambda x: (torch.lgamma(x), torch.digamma(x)), torch.arange(-3, 61))

# --- the orthogonal polynomials: every pair of x and n -----------------------------------------------
# No NaN x: PyTorch's Legendre kernel returns an uninitialized value there (its loop stops at a NaN
# before writing the result); sol gives NaN.
_PX = [inf, -inf, 0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 0.3, 0.99, -0.99, 1.5, -2.0, 7.0, 1e3]
_PN = [nan, inf, -inf, -1.5, -0.5, 0.0, 1.0, 2.7, 3.0, 5.0, 6.0, 7.0, 8.0, 9.0, 12.0, 30.0, 41.0, 1e20]
PX = torch.tensor(_PX).repeat_interleave(len(_PN))
PN = torch.tensor(_PN).repeat(len(_PX))
_POLYNOMIALS = ("chebyshev_polynomial_t", "chebyshev_polynomial_u", "chebyshev_polynomial_v",
                "chebyshev_polynomial_w", "shifted_chebyshev_polynomial_t", "shifted_chebyshev_polynomial_u",
                "shifted_chebyshev_polynomial_v", "shifted_chebyshev_polynomial_w", "hermite_polynomial_h",
                "hermite_polynomial_he", "laguerre_polynomial_l", "legendre_polynomial_p")
for _name in _POLYNOMIALS:
    case("polynomials", _name, getattr(S, _name), PX, PN)
    # the shifted ones' end points are 0 and 1 (their x = 0.5 is the others' 0)
    case("polynomials", f"{_name}-dense", getattr(S, _name),
         torch.rand(128, generator=_GEN) * 2.4 - 1.2, torch.randint(-2, 25, (128,), generator=_GEN).float())
case("polynomials", "scalar-operands", lambda x, n: (S.chebyshev_polynomial_t(x, 3), S.hermite_polynomial_h(0.5, n),
                                                     S.legendre_polynomial_p(x, 4.0)), PX, PN)

# --- the Bessel family ---------------------------------------------------------------------------------
case("bessel", "first-kind", lambda x: (S.bessel_j0(x), S.bessel_j1(x), S.spherical_bessel_j0(x)), X)
case("bessel", "second-kind", lambda x: (S.bessel_y0(x), S.bessel_y1(x)), X)
# not at 88.7 < |x| < 91.3: PyTorch's float32 I0 and I1 overflow there (exp(x) first), sol's are finite
case("bessel", "modified-first-kind", lambda x: (torch.i0(x), S.i0e(x), S.i1(x), S.i1e(x), S.modified_bessel_i0(x),
                                                 S.modified_bessel_i1(x)), X[~((X.abs() > 88.7) & (X.abs() < 91.3))])
case("bessel", "modified-second-kind", lambda x: (S.modified_bessel_k0(x), S.modified_bessel_k1(x),
                                                  S.scaled_modified_bessel_k0(x), S.scaled_modified_bessel_k1(x)), X)

# --- error functions, Airy, zeta, nextafter ------------------------------------------------------------
case("misc", "erfinv", lambda u: (torch.erfinv(u), S.erfinv(u)), UNIT)
case("misc", "ndtri", S.ndtri, PROB)
case("misc", "erfcx-log_ndtr", lambda x: (S.erfcx(x), S.log_ndtr(x)), X)
# Ai: not below -1e6, where PyTorch's float32 argument of the oscillation overflows to NaN
case("misc", "airy_ai", S.airy_ai, X[X > -1e6])
_ZS = [nan, 0.5, 1.0, 1.5, 2.0, 3.0, 4.5, 7.0, 30.0]
_ZQ = [nan, -inf, -3.0, -2.5, -0.5, 0.0, 0.25, 1.0, 2.0, 9.5, 11.0, 1e3, 1e30, inf]
case("misc", "zeta", S.zeta, torch.tensor(_ZS).repeat_interleave(len(_ZQ)), torch.tensor(_ZQ).repeat(len(_ZS)))
# Not where every term underflows float32 (s above ~100, or +inf): PyTorch's float32 series gives NaN there
# (0/0 in its convergence test), sol the limit 0.
_Q = X[torch.isfinite(X) & (X.abs() < 50)]
case("misc", "zeta-scalars", lambda q: (S.zeta(2.0, q.abs() + 0.5), S.zeta(q.abs() + 1.5, 3.0)), _Q)
_GA = [nan, inf, -inf, -1.0, 0.0, 1e-3, 0.5, 1.0, 2.5, 10.0, 30.0, 100.0, 2e4, 1e30]
_GX = [nan, inf, -inf, -1.0, 0.0, -0.0, 1e-3, 0.5, 1.0, 2.0, 3.5, 11.0, 29.0, 31.0, 120.0, 1.95e4, 2.1e4, 1e30]
_GAV, _GXV = torch.tensor(_GA).repeat_interleave(len(_GX)), torch.tensor(_GX).repeat(len(_GA))
case("misc", "igamma", lambda a, x: (torch.igamma(a, x), torch.igammac(a, x)), _GAV, _GXV)
case("misc", "igamma-dense",
     lambda a, x: (torch.igamma(a, x), torch.igammac(a, x), S.gammainc(a, x), S.gammaincc(a, x)),
     torch.exp(torch.rand(256, generator=_GEN) * 10 - 4), torch.exp(torch.rand(256, generator=_GEN) * 10 - 4))
case("misc", "nextafter", torch.nextafter, X[:32].repeat_interleave(32), X[:32].repeat(32))



def _close(got: Any, want: torch.Tensor, what: str) -> None:
    special_values_close(got, want, what, scaled_atol=False)  # values spanning many magnitudes


test_reference, test_device = case_tests(CASES, _close)


class _Grads(torch.nn.Module):
    def forward(self, x: torch.Tensor, u: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
        return (torch.lgamma(x).sum() + torch.digamma(x).sum() + torch.polygamma(2, x).sum() + torch.i0(x).sum()
                + S.i0e(x).sum() + S.i0e(-x).sum() + S.erfcx(x).sum() + S.log_ndtr(x).sum() + torch.erfinv(u).sum()
                + S.ndtri(p).sum() + torch.mvlgamma(x + 2, 3).sum())


def test_gradients_match_autograd() -> None:
    """The exact gradients (lgamma -> digamma -> polygamma(1) -> polygamma(n + 1), i0 -> i1, i0e,
    erfcx, log_ndtr through erfcx, erfinv, ndtri) against torch.autograd, one compiled training graph."""
    gen = torch.Generator().manual_seed(3)
    x = (torch.rand(3, 16, generator=gen) * 6 + 0.1) * torch.where(torch.rand(3, 16, generator=gen) < 0.3, -1.0, 1.0)
    x = torch.where((x < 0) & (x.frac().abs() < 0.05), x + 0.3, x)  # off the poles of the gamma family
    u = torch.rand(3, 16, generator=gen) * 1.9 - 0.95
    p = torch.rand(3, 16, generator=gen) * 0.98 + 0.01
    model = _Grads()
    fast = optimize(model, x, u, p, device="x86", training=True, fallback=False)
    leaves = [t.clone().requires_grad_(True) for t in (x, u, p)]
    want = torch.autograd.grad(model(*leaves), leaves)
    leaves = [t.clone().requires_grad_(True) for t in (x, u, p)]
    got = torch.autograd.grad(fast(*leaves), leaves)
    for g, w, name in zip(got, want, ("x", "u", "p")):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5, msg=lambda m, n=name: f"d/d{n}: {m}")


@pytest.mark.parametrize("fn", [S.bessel_j0, S.i1, S.airy_ai, S.modified_bessel_k0,
                                lambda x: S.chebyshev_polynomial_t(x, 3.0), lambda x: S.zeta(x + 2, 2.0)])
def test_training_without_a_gradient_rule_is_refused(fn: Any) -> None:
    """Special functions with no gradient rule refuse training, naming the op, never a wrong gradient."""
    from sol.errors import SolError

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.ones(8))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return fn(x * self.w) * 2

    x = torch.rand(4, 8) + 0.5
    with pytest.raises(SolError, match="bessel_j0|i1|airy_ai|modified_bessel_k0|chebyshev_polynomial_t|zeta"):
        sol.optimize(Net(), x, device="x86", training=True, fallback=False)


def test_networks_without_special_functions_compile_no_helpers() -> None:
    """The C helpers go only into networks that use them (each costs compile time)."""
    from sol.lowering import special
    from sol_pytorch.importer import import_module

    plain = import_module(torch.nn.Sequential(torch.nn.Tanh()), (torch.randn(2, 3),), {})
    used = import_module(torch.nn.Sequential(), (torch.randn(2, 3),), {})
    assert not special.uses_helpers(plain) and not special.uses_helpers(used)
    assert special.uses_helpers(import_module(_Bessel(), (torch.randn(2, 3),), {}))


def test_modified_bessel_i0_passes_no_gradient_as_in_eager() -> None:
    """PyTorch's modified_bessel_i0 (unlike i0) has no derivative: its result does not require
    grad, so only the other path's gradient reaches the weight; sol's (same function as i0, whose
    rule exists) must not add one."""

    class Net(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.linspace(0.5, 2.0, 8))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return (S.modified_bessel_i0(x * self.w) + torch.i0(x * self.w) * 0.5).sum()

    x = torch.rand(4, 8) + 0.5
    model = Net()
    fast = optimize(model, x, device="x86", training=True, fallback=False)
    (want,) = torch.autograd.grad(model(x), [model.w])
    (got,) = torch.autograd.grad(fast(x), [model.w])
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)


class _Bessel(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return S.bessel_j0(x)
