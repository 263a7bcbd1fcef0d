"""Gradient rules of reductions and normalizations (sol.ops.reduce)."""

from __future__ import annotations

import numpy as np

from sol.autodiff.builder import GradContext
from sol.autodiff.rules._common import Grads

# --- reductions, normalizations -----------------------------------------------------------------


def sum_or_mean(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    shape = ctx.in_type(0).shape
    axes = ctx.attrs["axes"]
    out = ctx.expand(g, axes, ctx.attrs["keepdims"], shape)
    if ctx.node.op == "mean":
        count = int(np.prod([shape[a] for a in axes]))
        out = ctx.scale(out, 1.0 / count) if count else out
    return [out]


def variance(ctx: GradContext, grads: Grads) -> Grads:
    """v = mean((x - c)^2): dx = g * 2 (x - c) / N, dc = -sum(dx) over the reduced axes."""
    g = grads[0]
    assert g is not None
    shape = ctx.in_type(0).shape
    axes, keepdims = ctx.attrs["axes"], ctx.attrs["keepdims"]
    count = int(np.prod([shape[a] for a in axes]))
    centre = ctx.expand(ctx.x(1), axes, keepdims, shape)
    dx = ctx.op("mul", ctx.expand(ctx.scale(g, 2.0 / count), axes, keepdims, shape),
                ctx.op("sub", ctx.x(0), centre))
    out: Grads = [dx if ctx.need[0] else None, None]
    if ctx.need[1]:
        out[1] = ctx.op("neg", ctx.op("sum", dx, axes=axes, keepdims=keepdims))
    return out


def softmax(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    y = ctx.y()  # dx = y (g - sum(g y))
    s = ctx.op("sum", ctx.op("mul", g, y), axes=(ctx.attrs["axis"],), keepdims=True)
    return [ctx.op("mul", y, ctx.op("sub", g, s))]


def log_softmax(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    s = ctx.op("sum", g, axes=(ctx.attrs["axis"],), keepdims=True)  # dx = g - softmax(x) sum(g)
    return [ctx.op("sub", g, ctx.op("mul", ctx.op("exp", ctx.y()), s))]


def cumsum(ctx: GradContext, grads: Grads) -> Grads:
    """dx[i] = sum of g[j] for j >= i: the running sum of the reversed gradient, reversed back
    (each reversal a gather of the positions in reverse order: exact, no cancellation)."""
    g = grads[0]
    assert g is not None
    ax = ctx.attrs["axis"]
    n = g.shape[ax]
    backwards = ctx.const(np.arange(n - 1, -1, -1, dtype=np.int64), "int64")
    flipped = ctx.op("gather", g, backwards, axis=ax, wrap=False, padding=None)
    summed = ctx.op("cumsum", flipped, axis=ax)
    return [ctx.op("gather", summed, backwards, axis=ax, wrap=False, padding=None)]
