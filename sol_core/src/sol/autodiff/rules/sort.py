"""Gradient rules of the sort family (sol.ops.sort). argsort and searchsorted give integer
results (``no_gradient``); the values frontends build from them are ``gather_elements`` of x, whose
rule carries the gradient. Of ``scan``, prod and logsumexp are differentiable, argmax/argmin not."""

from __future__ import annotations

import numpy as np

from sol.autodiff.builder import GradContext
from sol.autodiff.rules._common import Grads
from sol.ir import Value


def _flip(ctx: GradContext, v: Value, ax: int) -> Value:
    """``v`` reversed along ``ax`` (a gather of the positions in reverse order: exact)."""
    n = v.shape[ax]
    backwards = ctx.const(np.arange(n - 1, -1, -1, dtype=np.int64), "int64")
    return ctx.op("gather", v, backwards, axis=ax, wrap=False, padding=None)


def _reverse_cumsum(ctx: GradContext, v: Value, ax: int) -> Value:
    """out[i] = sum of v[j] for j >= i."""
    return _flip(ctx, ctx.op("cumsum", _flip(ctx, v, ax), axis=ax), ax)


def scan(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    kind, ax = ctx.attrs["kind"], ctx.attrs["axis"]
    if kind == "prod":
        return [_cumprod(ctx, g, ax)]
    if kind == "logsumexp":
        return [_logcumsumexp(ctx, g, ax)]
    return [None]  # argmax / argmin: integer results


def _cumprod(ctx: GradContext, g: Value, ax: int) -> Value:
    """dx[k] = sum over i >= k of g[i] * prod of x[j], j <= i, j != k; exact with zeros, no
    division by one (PyTorch's case analysis, with z the first zero along the axis):

    * k < z: x[k] is not 0, so dx[k] = (reversed running sum of g * y)[k] / x[k] (y[i] = 0 from z on);
    * k = z: y' = the running product with x[z] replaced by 1; dx[z] = (reversed running sum of g * y')[z];
    * k > z: every product holds x[z] = 0: dx[k] = 0.
    """
    x, y = ctx.x(0), ctx.y()
    one, zero = ctx.const(1.0, x), ctx.const(0.0, x)
    is_zero = ctx.op("eq", x, zero)
    zeros_so_far = ctx.op("cumsum", ctx.op("cast", is_zero, dtype=x.dtype), axis=ax)
    before = ctx.op("eq", zeros_so_far, zero)
    first_zero = ctx.op("logical_and", is_zero, ctx.op("eq", zeros_so_far, one))
    early = ctx.op("div", _reverse_cumsum(ctx, ctx.op("mul", g, y), ax), ctx.op("where", before, x, one))
    y1 = ctx.op("scan", ctx.op("where", first_zero, one, x), axis=ax, kind="prod")
    at_zero = _reverse_cumsum(ctx, ctx.op("mul", g, y1), ax)
    return ctx.op("where", before, early, ctx.op("where", first_zero, at_zero, zero))


def _logcumsumexp(ctx: GradContext, g: Value, ax: int) -> Value:
    """dx[k] = sum over i >= k of g[i] exp(x[k] - y[i]), summed in log space for the positive and
    the negative parts of g separately (PyTorch's formula, the lowest finite value standing for
    log 0): exp(x + revLCSE(log g+ - y)) - exp(x + revLCSE(log g- - y))."""
    x, y = ctx.x(0), ctx.y()
    lowest = ctx.const(float(np.finfo(np.dtype(x.dtype)).min), x)
    zero = ctx.const(0.0, x)
    log_abs = ctx.op("log", ctx.op("abs", g))

    def part(sign: str) -> Value:
        log_g = ctx.op("where", ctx.op(sign, g, zero), log_abs, lowest)
        rev = _flip(ctx, ctx.op("scan", _flip(ctx, ctx.op("sub", log_g, y), ax), axis=ax, kind="logsumexp"), ax)
        return ctx.op("exp", ctx.op("add", rev, x))

    return ctx.op("sub", part("gt"), part("lt"))
