"""Special functions as element-wise ops: the gamma family (lgamma, digamma, polygamma, Hurwitz
zeta), the inverse error and normal functions, erfcx, Bessel functions of the first and second kind,
modified Bessel functions (plain and exponentially scaled), the spherical j0, Airy's Ai, nextafter and
the classical orthogonal polynomials of an integer order tensor.

Special values (poles, infinities, NaN, arguments outside the domain) are PyTorch's, which are
SciPy's/Cephes' with a few of its own (i0(inf) is NaN, zeta(s, +inf) is NaN, the polynomials' order
truncated toward zero and 0 for n < 0). The NumPy references are :mod:`sol.ops.special_ref`; the C
lowering is core's helper template ``sol/special.j2`` (:mod:`sol.lowering.special`), shared by every
C-family device.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sol.errors import SolError
from sol.ir import TensorType
from sol.ops import special_ref as ref
from sol.ops._util import broadcast_shape, f64, same_dtype
from sol.ops.registry import REQUIRED, CExprFn, GradientFn, LayerClass, OpDef

POLYNOMIALS = ("chebyshev_polynomial_t", "chebyshev_polynomial_u", "chebyshev_polynomial_v",
               "chebyshev_polynomial_w", "shifted_chebyshev_polynomial_t", "shifted_chebyshev_polynomial_u",
               "shifted_chebyshev_polynomial_v", "shifted_chebyshev_polynomial_w", "hermite_polynomial_h",
               "hermite_polynomial_he", "laguerre_polynomial_l", "legendre_polynomial_p")
# Work per element, roughly (a series of tens of terms, a few library calls): the cost model's hint.
_FLOPS = 40


def _float_same(types: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    dt = same_dtype(types)
    if not dt.startswith("float"):
        raise SolError(f"special functions take floating-point tensors, got {dt}")
    return [TensorType(broadcast_shape(*(t.shape for t in types)), dt)]


def _narrow(values: Any, dtype: Any) -> np.ndarray:
    """Double results as the input's dtype: one beyond float32's range rounds to inf, as the C
    code's conversion does (NumPy's overflow warning for it is expected, not a problem)."""
    with np.errstate(over="ignore"):
        return np.asarray(values).astype(dtype)


def _unary(name: str, fn: Callable[..., float], gradient: GradientFn, c_expr: CExprFn) -> OpDef:
    vec = ref.vectorized(fn)

    def reference(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
        return [_narrow(vec(f64(xs[0])), xs[0].dtype)]

    return OpDef(name, LayerClass.ELEMENTWISE, _float_same, reference, (1, 1), gradient=gradient, c_expr=c_expr)


def _polygamma_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    n = int(a["n"])
    return [_narrow(ref.vectorized(lambda x: ref.polygamma(n, x))(f64(xs[0])), xs[0].dtype)]


def _polygamma_attrs(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    n = attrs["n"]
    if isinstance(n, bool) or int(n) != n or int(n) < 1:
        raise SolError(f"polygamma: n is an integer >= 1 (digamma is n = 0), got {n!r}")
    return {"n": int(n)}


def _zeta_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    s, q = np.broadcast_arrays(f64(xs[0]), f64(xs[1]))
    return [_narrow(ref.vectorized(ref.zeta)(s, q), xs[0].dtype)]


def _igamma_ref(upper: bool) -> Callable[[list[np.ndarray], dict[str, Any]], list[np.ndarray]]:
    def reference(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
        s, x = np.broadcast_arrays(f64(xs[0]), f64(xs[1]))
        return [_narrow(ref.vectorized(lambda p, q: ref.igamma(upper, p, q))(s, x), xs[0].dtype)]

    return reference


def _nextafter_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    """In the operands' own type: the next float32 after a float32 is not a double's."""
    return [np.nextafter(xs[0], xs[1]).astype(xs[0].dtype)]


def _polynomial(name: str, c_expr: CExprFn, gradient: GradientFn) -> OpDef:
    kind = name.replace("_polynomial", "")

    def reference(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
        return [ref.polynomial(kind, xs[0], xs[1])]

    return OpDef(name, LayerClass.ELEMENTWISE, _float_same, reference, (2, 2), c_expr=c_expr, gradient=gradient,
                 doc=f"{name}(x, n): n truncated toward zero; 0 for n < 0; PyTorch's recurrence in x's dtype")


def ops() -> list[OpDef]:
    from sol import workload
    from sol.autodiff.rules import special as grad
    from sol.lowering import special as c

    unary = [
        _unary("digamma", ref.digamma, grad.digamma, c.unary("digamma")),
        _unary("erfinv", ref.erfinv, grad.erfinv, c.unary("erfinv")),
        _unary("ndtri", ref.ndtri, grad.ndtri, c.unary("ndtri")),
        _unary("erfcx", ref.erfcx, grad.erfcx, c.unary("erfcx")),
        # its own op (not PyTorch's decomposition through erfcx and a select): the decomposition's
        # gradient is NaN where the branch not taken overflows
        _unary("log_ndtr", ref.log_ndtr, grad.log_ndtr, c.unary("log_ndtr")),
        _unary("bessel_j0", ref.bessel_j0, grad.refused, c.unary("bessel_j0")),
        _unary("bessel_j1", ref.bessel_j1, grad.refused, c.unary("bessel_j1")),
        _unary("bessel_y0", ref.bessel_y0, grad.refused, c.with_args("bessel_y", "0")),
        _unary("bessel_y1", ref.bessel_y1, grad.refused, c.with_args("bessel_y", "1")),
        _unary("i0", ref.i0, grad.i0, c.unary("i0")),
        _unary("i0e", ref.i0e, grad.i0e, c.unary("i0e")),
        _unary("i1", ref.i1, grad.refused, c.unary("i1")),
        _unary("i1e", ref.i1e, grad.refused, c.unary("i1e")),
        _unary("modified_bessel_k0", ref.k0, grad.refused, _k(0, 0)),
        _unary("modified_bessel_k1", ref.k1, grad.refused, _k(1, 0)),
        _unary("scaled_modified_bessel_k0", ref.k0e, grad.refused, _k(0, 1)),
        _unary("scaled_modified_bessel_k1", ref.k1e, grad.refused, _k(1, 1)),
        _unary("spherical_bessel_j0", ref.spherical_bessel_j0, grad.refused, c.unary("spherical_bessel_j0")),
        _unary("airy_ai", ref.airy_ai, grad.refused, c.unary("airy_ai")),
    ]
    polygamma = OpDef("polygamma", LayerClass.ELEMENTWISE, _float_same, _polygamma_ref, (1, 1), {"n": REQUIRED},
                      normalize=_polygamma_attrs, gradient=grad.polygamma, c_expr=c.polygamma,
                      doc="the n-th derivative of digamma (n >= 1)")
    zeta = OpDef("zeta", LayerClass.ELEMENTWISE, _float_same, _zeta_ref, (2, 2), c_expr=c.binary("zeta"),
                 gradient=grad.refused, doc="Hurwitz zeta(x, q)")
    igamma = [OpDef(name, LayerClass.ELEMENTWISE, _float_same, _igamma_ref(upper), (2, 2),
                    c_expr=c.binary_with("igamma", str(int(upper))), gradient=grad.refused,
                    doc=f"the regularized {'upper' if upper else 'lower'} incomplete gamma function of (a, x)")
              for name, upper in (("igamma", False), ("igammac", True))]
    polynomials = [_polynomial(name, c.polynomial(name.replace("_polynomial", "")), grad.refused)
                   for name in POLYNOMIALS]
    helped = unary + [polygamma, zeta] + igamma + polynomials
    c.USES_HELPERS.update(o.name for o in helped)
    # lgamma and nextafter are C99's own functions (PyTorch's CPU kernels call them too).
    lgamma = _unary("lgamma", ref.lgamma, grad.lgamma, _math("lgamma"))
    nextafter = OpDef("nextafter", LayerClass.ELEMENTWISE, _float_same, _nextafter_ref, (2, 2),
                      c_expr=_math("nextafter"), gradient=grad.refused,
                      doc="the next representable value after a toward b")
    out = helped + [lgamma, nextafter]
    for o in out:
        o.flops = workload.per_output(_FLOPS)
        o.preserves_finite = o.name in _PRESERVE_FINITE
    return out


# Finite for every finite input (sol.passes.finite): bounded or decaying functions. Not the others:
# poles (lgamma, digamma, Y, K at 0), domain ends (erfinv, ndtri), overflow (i0, i1, erfcx, the
# polynomials), NaN outside the domain (igamma, zeta).
_PRESERVE_FINITE = ("bessel_j0", "bessel_j1", "i0e", "i1e", "spherical_bessel_j0", "airy_ai", "nextafter")


def _k(nu: int, scaled: int) -> CExprFn:
    from sol.lowering import special as c

    return c.with_args("besselk", str(nu), str(scaled))


def _math(fn: str) -> CExprFn:
    return lambda d, a, T, _: f"{d.math(fn, T)}({', '.join(a)})"
