"""Gradient rules of index and selection ops (sol.ops.index) and of gather's backward op."""

from __future__ import annotations

import numpy as np

from sol.autodiff.builder import GradContext
from sol.autodiff.rules._common import Grads
from sol.errors import UnsupportedOpError
from sol.ir import Value

# --- index and selection ops (ops/index.py) ------------------------------------------------------

# Comparisons, logical ops and argmax/argmin give boolean or integer results: their OpDefs take
# sol.autodiff.rules.no_gradient.


def where(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    cond, zero = ctx.x(0), ctx.const(0.0, g)
    return [None,
            ctx.reduce_to(ctx.op("where", cond, g, zero), ctx.in_type(1).shape) if ctx.need[1] else None,
            ctx.reduce_to(ctx.op("where", cond, zero, g), ctx.in_type(2).shape) if ctx.need[2] else None]


def max_or_min(ctx: GradContext, grads: Grads) -> Grads:
    """``ties="split"`` (PyTorch's amax/amin): the gradient is shared evenly by the elements
    equal to the result. ``ties="first"`` (PyTorch's ``max(x, dim)``): it goes to the element
    argmax/argmin names (the first of them, or the first NaN), selected, as eager does."""
    g = grads[0]
    assert g is not None
    x = ctx.x(0)
    axes = ctx.attrs["axes"]
    kept = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    if not ctx.attrs["keepdims"]:
        g = ctx.op("reshape", g, shape=kept)
    if ctx.attrs.get("ties") == "first":
        (axis,) = axes
        index = ctx.op("arg" + ctx.node.op, x, axis=axis, keepdims=True)
        position = ctx.const(np.arange(x.shape[axis]).reshape((-1,) + (1,) * (x.type.rank - axis - 1)), index)
        return [ctx.op("where", ctx.op("eq", position, index), g, ctx.const(0.0, g))]
    y = ctx.y()
    if not ctx.attrs["keepdims"]:
        y = ctx.op("reshape", y, shape=kept)
    hit = ctx.op("mul", ctx.op("mask_ge", x, y), ctx.op("mask_ge", y, x))
    count = ctx.op("sum", hit, axes=axes, keepdims=True)
    return [ctx.op("mul", hit, ctx.op("div", g, count))]


def gather(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    a = ctx.attrs
    size = ctx.in_type(0).shape[a["axis"]]
    if a.get("padding") is not None:
        g = _without_padding_rows(ctx, g, a["padding"], size)
    return [ctx.op("gather_backward", ctx.x(1), g, axis=a["axis"], size=size, wrap=a["wrap"]), None]


def _without_padding_rows(ctx: GradContext, g: Value, row: int, size: int) -> Value:
    """PyTorch's ``padding_idx``: the gathered rows that read the padding row send it no
    gradient. Selected (``where``), not multiplied by a 0/1 mask: a NaN or infinite gradient
    must not reach the padding row either (eager's is exactly zero)."""
    idx = ctx.x(1)
    keep = ctx.op("ne", idx, ctx.const(row, idx))
    if ctx.attrs["wrap"] and np.iinfo(idx.dtype).min <= row - size:  # -size + row names the row too
        keep = ctx.op("logical_and", keep, ctx.op("ne", idx, ctx.const(row - size, idx)))
    ax = ctx.attrs["axis"]
    keep = ctx.op("reshape", keep, shape=(1,) * ax + idx.shape + (1,) * (g.type.rank - ax - idx.type.rank))
    return ctx.op("where", keep, g, ctx.const(0.0, g))


def gather_backward(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None  # linear in the gradient rows: reading them back is a gather
    return [None, ctx.op("gather", g, ctx.x(0), axis=ctx.attrs["axis"], wrap=ctx.attrs["wrap"])]


def gather_elements(ctx: GradContext, grads: Grads) -> Grads:
    """d x[..., l, ...] = sum over k of g[..., k, ...] where indices[..., k, ...] == l: a one-hot
    of the indices along a new axis after ``axis`` (size L = x's size there), times the gradient,
    summed over the index axis; zero-padded where the indices are smaller than x. Built from
    element-wise ops and a sum (no scatter op): exact, each x element receiving the sum of the
    gradients of the positions that read it, repeated indices included."""
    g = grads[0]
    assert g is not None
    if not ctx.need[0]:
        return [None, None]
    ax = ctx.attrs["axis"]
    x_shape, idx = ctx.in_type(0).shape, ctx.x(1)
    size = x_shape[ax]
    k_shape = idx.shape
    wide = k_shape[:ax + 1] + (1,) + k_shape[ax + 1:]  # the new axis ax + 1 runs over x's positions
    rows = ctx.const(np.arange(size, dtype=np.int64).reshape((size,) + (1,) * (len(k_shape) - ax - 1)), "int64")
    hit = ctx.op("eq", ctx.op("cast", ctx.op("reshape", idx, shape=wide), dtype="int64"), rows)
    picked = ctx.op("where", hit, ctx.op("reshape", g, shape=wide), ctx.const(0.0, g))
    dx = ctx.op("sum", picked, axes=(ax,))  # over the index positions: x's positions remain at ax
    partial = dx.shape
    if partial != x_shape:
        dx = ctx.op("pad", dx, pads=tuple((0, n - p) for p, n in zip(partial, x_shape)), value=0.0)
    return [dx, None]



def scatter(ctx: GradContext, grads: Grads) -> Grads:
    """x's gradient is g with the written positions zeroed (a scatter of zeros); a new slice's
    gradient is g read at its position (a gather) if it is the last write there, else zero (a
    slice written over later reaches nothing; PyTorch leaves repeated positions undefined and
    agrees wherever the positions differ)."""
    g = grads[0]
    assert g is not None
    ax = ctx.attrs["axis"]
    idx = ctx.x(1)
    dx = dupd = None
    if ctx.need[0]:
        dx = ctx.op("scatter", g, idx, ctx.zeros(ctx.in_type(2)), axis=ax)
    if ctx.need[2]:
        size, count = ctx.in_type(0).shape[ax], ctx.in_type(1).shape[0]
        p = ctx.op("cast", idx, dtype="int64")
        p = ctx.op("where", ctx.op("lt", p, ctx.const(0, "int64")), ctx.op("add", p, ctx.const(size, "int64")), p)
        same = ctx.op("eq", ctx.op("reshape", p, shape=(count, 1)), ctx.op("reshape", p, shape=(1, count)))
        later = ctx.const(np.triu(np.ones((count, count), dtype=bool), k=1), "bool")  # [j, k]: k written after j
        overwritten = ctx.op("sum", ctx.op("cast", ctx.op("logical_and", same, later), dtype="int64"), axes=(1,))
        last = ctx.op("eq", overwritten, ctx.const(0, "int64"))
        rank = ctx.in_type(0).rank
        last = ctx.op("reshape", last, shape=(1,) * ax + (count,) + (1,) * (rank - ax - 1))
        dupd = ctx.op("where", last, ctx.op("gather", g, idx, axis=ax, wrap=True, padding=None), ctx.const(0.0, g))
    return [dx, None, dupd]


def scatter_elements(ctx: GradContext, grads: Grads) -> Grads:
    """PyTorch's scatter / scatter_add / scatter_reduce(sum) gradients: an update's gradient is g
    read at the position it went to (gather_elements, zero where the updates are larger than the
    index), every update, repeated positions included, as eager's ``grad.gather(dim, index)``;
    x's is g where x's value stays in the result (a sum with include_self), else g with the
    positions named zeroed (a scatter of zeros). prod, amax and amin have none in sol: refused."""
    g = grads[0]
    assert g is not None
    a = ctx.attrs
    reduction = a["reduction"]
    if reduction not in ("none", "sum"):
        raise UnsupportedOpError(f"scatter_elements with reduction {reduction!r} has no gradient rule in sol: "
                                 "it cannot train through it", op="scatter_elements", source=ctx.node.source)
    ax, idx = a["axis"], ctx.x(1)
    upd = ctx.in_type(2)
    dx = dupd = None
    if ctx.need[0]:
        keeps_x = reduction == "sum" and a["include_self"]
        dx = g if keeps_x else ctx.op("scatter_elements", g, idx, ctx.zeros(upd), axis=ax, reduction="none")
    if ctx.need[2]:
        dupd = ctx.op("gather_elements", g, idx, axis=ax)
        if idx.shape != upd.shape:
            dupd = ctx.op("pad", dupd, pads=tuple((0, n - k) for k, n in zip(idx.shape, upd.shape)), value=0.0)
    return [dx, None, dupd]
