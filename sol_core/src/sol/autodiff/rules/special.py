"""Gradient rules of the special functions (sol.ops.special) that have simple exact derivatives,
as PyTorch's autograd defines them; the other special functions have no rule (training through
them is refused, naming the op)."""

from __future__ import annotations

import math

from sol.autodiff.builder import GradContext
from sol.autodiff.rules._common import Grads, _k
from sol.autodiff.rules.elementwise import _unary
from sol.errors import UnsupportedOpError
from sol.ir import Value


def refused(ctx: GradContext, grads: Grads) -> Grads:
    """The special functions without a rule here (Bessel functions but i0/i0e, Airy, zeta, the
    incomplete gamma functions, nextafter, the orthogonal polynomials): training through one is
    refused by name, never differentiated wrongly."""
    op = ctx.node.op
    raise UnsupportedOpError(f"{op} has no gradient rule in sol: it cannot train through it", op=op,
                             source=ctx.node.source)


def _lgamma(ctx: GradContext, g: Value) -> Value:
    return ctx.op("digamma", ctx.x(0))


def _digamma(ctx: GradContext, g: Value) -> Value:
    return ctx.op("polygamma", ctx.x(0), n=1)


def _polygamma(ctx: GradContext, g: Value) -> Value:
    return ctx.op("polygamma", ctx.x(0), n=int(ctx.node.attrs["n"]) + 1)


def _erfinv(ctx: GradContext, g: Value) -> Value:
    y = ctx.y()  # d/dx erfinv(x) = sqrt(pi)/2 exp(erfinv(x)^2)
    return ctx.op("mul", _k(ctx, math.sqrt(math.pi) / 2), ctx.op("exp", ctx.op("mul", y, y)))


def _ndtri(ctx: GradContext, g: Value) -> Value:
    y = ctx.y()  # d/dp ndtri(p) = sqrt(2 pi) exp(ndtri(p)^2 / 2)
    half_square = ctx.op("mul", ctx.op("mul", y, y), _k(ctx, 0.5))
    return ctx.op("mul", _k(ctx, math.sqrt(2 * math.pi)), ctx.op("exp", half_square))


def _erfcx(ctx: GradContext, g: Value) -> Value:
    x, y = ctx.x(0), ctx.y()  # d/dx exp(x^2) erfc(x) = 2x erfcx(x) - 2/sqrt(pi)
    return ctx.op("sub", ctx.op("mul", _k(ctx, 2.0), ctx.op("mul", x, y)), _k(ctx, 2 / math.sqrt(math.pi)))


def _log_ndtr(ctx: GradContext, g: Value) -> Value:
    x = ctx.x(0)  # d/dx log Phi(x) = phi(x) / Phi(x) = sqrt(2/pi) / erfcx(-x/sqrt2)
    return ctx.op("div", _k(ctx, math.sqrt(2 / math.pi)), ctx.op("erfcx", ctx.op("mul", x, _k(ctx, -math.sqrt(0.5)))))


def _i0(ctx: GradContext, g: Value) -> Value:
    return ctx.op("i1", ctx.x(0))


def _i0e(ctx: GradContext, g: Value) -> Value:
    x = ctx.x(0)  # d/dx e^-|x| I0(x) = e^-|x| (I1(x) - sign(x) I0(x))
    return ctx.op("sub", ctx.op("i1e", x), ctx.op("mul", ctx.op("sign", x, nan="keep"), ctx.y()))


lgamma, digamma, polygamma, erfinv, ndtri, erfcx, log_ndtr, i0, i0e = (
    _unary(fn) for fn in (_lgamma, _digamma, _polygamma, _erfinv, _ndtri, _erfcx, _log_ndtr, _i0, _i0e))
