"""Gradient rules of the data-movement ops (sol.ops.layout)."""

from __future__ import annotations

import numpy as np

from sol.autodiff.builder import GradContext
from sol.autodiff.rules._common import Grads

# --- data movement ------------------------------------------------------------------------------


def reshape(ctx: GradContext, grads: Grads) -> Grads:
    assert grads[0] is not None
    return [ctx.op("reshape", grads[0], shape=ctx.in_type(0).shape)]


def transpose(ctx: GradContext, grads: Grads) -> Grads:
    assert grads[0] is not None
    perm = ctx.attrs["perm"]
    inverse = tuple(int(i) for i in np.argsort(perm))
    return [ctx.op("transpose", grads[0], perm=inverse)]


def concat(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    axis = ctx.attrs["axis"]
    out: Grads = []
    start = 0
    for i, v in enumerate(ctx.node.inputs):
        stop = start + v.shape[axis]
        out.append(ctx.op("slice", g, axes=(axis,), starts=(start,), stops=(stop,)) if ctx.need[i] else None)
        start = stop
    return out


def pad(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    shape = ctx.in_type(0).shape
    pads = ctx.attrs["pads"]
    axes = tuple(i for i, (lo, hi) in enumerate(pads) if lo or hi)
    if not axes:
        return [g]
    return [ctx.op("slice", g, axes=axes, starts=tuple(pads[a][0] for a in axes),
                   stops=tuple(pads[a][0] + shape[a] for a in axes))]


def slice_(ctx: GradContext, grads: Grads) -> Grads:
    """Zeros around the gradient: a pad per axis; a step s > 1 first interleaves s - 1 zeros
    after each element (reshape to (..., n, 1, ...), pad the new axis to s, reshape back)."""
    g = grads[0]
    assert g is not None
    shape = list(ctx.in_type(0).shape)
    if g.type.numel == 0:
        return [ctx.zeros(ctx.in_type(0))]
    for ax, start, step in zip(ctx.attrs["axes"], ctx.attrs["starts"], ctx.attrs["steps"]):
        n = g.shape[ax]
        if step > 1:
            cur = list(g.shape)
            g = ctx.op("reshape", g, shape=tuple(cur[:ax + 1] + [1] + cur[ax + 1:]))
            pads = [(0, 0)] * g.type.rank
            pads[ax + 1] = (0, step - 1)
            g = ctx.op("pad", g, pads=tuple(pads))
            g = ctx.op("reshape", g, shape=tuple(cur[:ax] + [n * step] + cur[ax + 1:]))
            covered = n * step
            if start + covered > shape[ax]:  # the zeros after the last element hang over the end
                covered = shape[ax] - start
                g = ctx.op("slice", g, axes=(ax,), starts=(0,), stops=(covered,))
        else:
            covered = n
        pads = [(0, 0)] * g.type.rank
        pads[ax] = (start, shape[ax] - start - covered)
        if pads[ax] != (0, 0):
            g = ctx.op("pad", g, pads=tuple(pads))
    return [g]
