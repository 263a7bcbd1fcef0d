"""Gradient rules of the compute-bound ops (sol.ops.linalg) and of the convolution backward ops."""

from __future__ import annotations

from typing import Any

import numpy as np

from sol.autodiff.builder import GradContext
from sol.autodiff.rules._common import Grads
from sol.ir import Value

# --- compute bound ------------------------------------------------------------------------------


def _conv_attrs(a: dict[str, Any]) -> dict[str, Any]:
    return {"stride": a["stride"], "padding": a["padding"], "dilation": a["dilation"], "groups": a["groups"]}


def conv2d(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    a = _conv_attrs(ctx.attrs)
    out: Grads = [None] * len(ctx.node.inputs)
    if ctx.need[0]:
        out[0] = ctx.op("conv2d_backward_data", g, ctx.x(1), shape=ctx.in_type(0).shape, **a)
    if ctx.need[1]:
        out[1] = ctx.op("conv2d_backward_weight", ctx.x(0), g, shape=ctx.in_type(1).shape, **a)
    if len(out) == 3 and ctx.need[2]:
        out[2] = ctx.op("sum", g, axes=(0, 2, 3), keepdims=False)
    return out


def conv2d_nhwc(ctx: GradContext, grads: Grads) -> Grads:
    """conv2d's rule on the NCHW views: the gradient and a channels-last input transposed in,
    the input gradient transposed back out."""
    g = grads[0]
    assert g is not None
    a = _conv_attrs(ctx.attrs)
    to_nchw, to_nhwc = (0, 3, 1, 2), (0, 2, 3, 1)
    if ctx.attrs["output_nhwc"]:
        g = ctx.op("transpose", g, perm=to_nchw)
    x_in = ctx.in_type(0).shape
    x_shape = tuple(x_in[i] for i in to_nchw) if ctx.attrs["input_nhwc"] else x_in
    out: Grads = [None] * len(ctx.node.inputs)
    if ctx.need[0]:
        dx = ctx.op("conv2d_backward_data", g, ctx.x(1), shape=x_shape, **a)
        out[0] = ctx.op("transpose", dx, perm=to_nhwc) if ctx.attrs["input_nhwc"] else dx
    if ctx.need[1]:
        x = ctx.op("transpose", ctx.x(0), perm=to_nchw) if ctx.attrs["input_nhwc"] else ctx.x(0)
        out[1] = ctx.op("conv2d_backward_weight", x, g, shape=ctx.in_type(1).shape, **a)
    if len(out) == 3 and ctx.need[2]:
        out[2] = ctx.op("sum", g, axes=(0, 2, 3), keepdims=False)
    return out


def conv2d_backward_data(ctx: GradContext, grads: Grads) -> Grads:
    """Linear in both inputs: dgy is a convolution of the gradient, dw a weight gradient."""
    g = grads[0]
    assert g is not None
    a = _conv_attrs(ctx.attrs)
    out: Grads = [None, None]
    if ctx.need[0]:
        out[0] = ctx.op("conv2d", g, ctx.x(1), **a)
    if ctx.need[1]:
        out[1] = ctx.op("conv2d_backward_weight", g, ctx.x(0), shape=ctx.in_type(1).shape, **a)
    return out


def conv2d_backward_weight(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    a = _conv_attrs(ctx.attrs)
    out: Grads = [None, None]
    if ctx.need[0]:
        out[0] = ctx.op("conv2d_backward_data", ctx.x(1), g, shape=ctx.in_type(0).shape, **a)
    if ctx.need[1]:
        out[1] = ctx.op("conv2d", ctx.x(0), g, **a)
    return out


def _rows(ctx: GradContext, v: Value) -> Value:
    """(..., k) as (rows, k) (a vector is one row)."""
    rows = int(np.prod(v.shape[:-1]))
    return v if v.type.rank == 2 else ctx.op("reshape", v, shape=(rows, v.shape[-1]))


def _t(ctx: GradContext, v: Value) -> Value:
    """Swap the last two axes."""
    perm = tuple(range(v.type.rank - 2)) + (v.type.rank - 1, v.type.rank - 2)
    return ctx.op("transpose", v, perm=perm)


def dense(ctx: GradContext, grads: Grads) -> Grads:
    """y = x W^T + b: dx = g W, dW = g^T x (batch folded into rows), db = sum of g's rows."""
    g = grads[0]
    assert g is not None
    x_t = ctx.in_type(0)
    g2 = _rows(ctx, g)
    out: Grads = [None] * len(ctx.node.inputs)
    if ctx.need[0]:
        out[0] = ctx.op("reshape", ctx.op("matmul", g2, ctx.x(1)), shape=x_t.shape)
    if ctx.need[1]:
        out[1] = ctx.op("matmul", _t(ctx, g2), _rows(ctx, ctx.x(0)))
    if len(out) == 3 and ctx.need[2]:
        out[2] = ctx.reduce_to(g, ctx.in_type(2).shape)
    return out


def matmul(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    out: Grads = [None, None]
    if ctx.need[0]:
        out[0] = ctx.reduce_to(ctx.op("matmul", g, _t(ctx, ctx.x(1))), ctx.in_type(0).shape)
    if ctx.need[1]:
        out[1] = ctx.reduce_to(ctx.op("matmul", _t(ctx, ctx.x(0)), g), ctx.in_type(1).shape)
    return out
