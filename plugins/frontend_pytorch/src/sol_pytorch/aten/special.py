"""Special-function ATen converters (``torch.special`` and the gamma family): each maps onto
core's element-wise op of the same function (:mod:`sol.ops.special`). Integer operands compute in
the result's floating type, as PyTorch promotes them. ``mvlgamma`` needs nothing here:
``torch.export`` decomposes it into a sum of ``lgamma`` (exact, gradient included)."""

from __future__ import annotations

from sol.plugin_api import Value
from sol_pytorch.aten.base import Args, Converter, Emitter, Unsupported, converts

# ATen name -> core op, for the ops of one tensor (named ``self`` or ``x`` in their schemas).
_UNARY = {"lgamma": "lgamma", "digamma": "digamma", "erfinv": "erfinv", "i0": "i0", "special_i0e": "i0e",
          "special_i1": "i1", "special_i1e": "i1e", "special_ndtri": "ndtri", "special_erfcx": "erfcx",
          "special_log_ndtr": "log_ndtr",
          "special_bessel_j0": "bessel_j0", "special_bessel_j1": "bessel_j1", "special_bessel_y0": "bessel_y0",
          "special_bessel_y1": "bessel_y1", "special_modified_bessel_i1": "i1",
          "special_modified_bessel_k0": "modified_bessel_k0", "special_modified_bessel_k1": "modified_bessel_k1",
          "special_scaled_modified_bessel_k0": "scaled_modified_bessel_k0",
          "special_scaled_modified_bessel_k1": "scaled_modified_bessel_k1",
          "special_spherical_bessel_j0": "spherical_bessel_j0", "special_airy_ai": "airy_ai"}
_POLYNOMIALS = ("chebyshev_polynomial_t", "chebyshev_polynomial_u", "chebyshev_polynomial_v",
                "chebyshev_polynomial_w", "shifted_chebyshev_polynomial_t", "shifted_chebyshev_polynomial_u",
                "shifted_chebyshev_polynomial_v", "shifted_chebyshev_polynomial_w", "hermite_polynomial_h",
                "hermite_polynomial_he", "laguerre_polynomial_l", "legendre_polynomial_p")


def _unary(op: str) -> Converter:
    def convert(em: Emitter, a: Args) -> Value:
        x = a["self"] if "self" in a else a["x"]
        return em.emit(op, [em.operand(x, em.out.dtype)])

    return convert


for _aten, _op in _UNARY.items():
    converts(f"aten.{_aten}.default")(_unary(_op))


@converts("aten.special_modified_bessel_i0.default")
def _modified_bessel_i0(em: Emitter, a: Args) -> Value:
    """i0 by another name, but PyTorch gives it no derivative (its result does not require grad):
    a stop_gradient keeps training from passing a gradient through it where eager passes none."""
    return em.emit("stop_gradient", [em.emit("i0", [em.operand(a["self"], em.out.dtype)])])


@converts("aten.polygamma.default")
def _polygamma(em: Emitter, a: Args) -> Value:
    n, x = a["n"], em.operand(a["self"], em.out.dtype)
    if n < 0:
        raise Unsupported(f"polygamma of order {n} (PyTorch raises for n < 0)")
    return em.emit("digamma", [x]) if n == 0 else em.emit("polygamma", [x], n=int(n))


def _binary(op: str, first: str, second: str) -> Converter:
    def convert(em: Emitter, a: Args) -> Value:
        dt = em.out.dtype
        return em.emit(op, [em.operand(a[first], dt), em.operand(a[second], dt)])

    return convert


converts("aten.special_zeta.default", "aten.special_zeta.other_scalar",
         "aten.special_zeta.self_scalar")(_binary("zeta", "self", "other"))
converts("aten.nextafter.default")(_binary("nextafter", "self", "other"))
converts("aten.igamma.default")(_binary("igamma", "self", "other"))
converts("aten.igammac.default")(_binary("igammac", "self", "other"))
for _name in _POLYNOMIALS:
    converts(f"aten.special_{_name}.default", f"aten.special_{_name}.x_scalar",
             f"aten.special_{_name}.n_scalar")(_binary(_name, "x", "n"))
