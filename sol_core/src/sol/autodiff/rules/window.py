"""Gradient rules of pooling (sol.ops.window) and of max pooling's backward ops (sol.ops.grad_ops)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sol.autodiff.builder import GradContext
from sol.autodiff.rules._common import Grads, _pool_attrs
from sol.ir import Value
from sol.ops.window import adaptive_bounds

# --- windows --------------------------------------------------------------------------------


def max_pool2d(ctx: GradContext, grads: Grads) -> Grads:
    """Each window's gradient goes to the element the forward picked. Where the forward ignores
    NaN (TensorFlow), that is its largest non-NaN element, or the first of an all-NaN window: the
    routing of ``max_pool2d_backward`` (first maximum, last NaN) on ``x`` with NaN as -inf."""
    assert grads[0] is not None
    a = ctx.attrs
    x = ctx.x(0)
    if a.get("nan", "propagate") == "ignore":
        x = ctx.op("where", ctx.op("ne", x, x), ctx.const(-np.inf, x), x)
    return [ctx.op("max_pool2d_backward", x, grads[0], **_pool_attrs(a))]


def max_pool2d_nhwc(ctx: GradContext, grads: Grads) -> Grads:
    """max_pool2d's rule on the NCHW views, the input gradient transposed back."""
    assert grads[0] is not None
    a = ctx.attrs
    x = ctx.op("transpose", ctx.x(0), perm=(0, 3, 1, 2))
    if a.get("nan", "propagate") == "ignore":
        x = ctx.op("where", ctx.op("ne", x, x), ctx.const(-np.inf, x), x)
    g = ctx.op("transpose", grads[0], perm=(0, 3, 1, 2))
    dx = ctx.op("max_pool2d_backward", x, g, **_pool_attrs(a))
    return [ctx.op("transpose", dx, perm=(0, 2, 3, 1))]


def avg_pool_counts(a: dict[str, Any], h: int, w: int, oh: int, ow: int) -> np.ndarray:
    """The divisor of each output of avg_pool2d, (OH, OW): the same rule as the forward op."""
    (pt, pb), (pl, pr) = a["padding"]
    kh, kw = a["kernel"]
    sh, sw = a["stride"]

    def extent(size: int, out: int, k: int, s: int, lo: int, hi: int) -> np.ndarray:
        start = np.arange(out) * s - lo
        if a["count_include_pad"]:
            return np.minimum(start + k, size + hi) - start
        return np.minimum(start + k, size) - np.maximum(start, 0)

    return np.outer(extent(h, oh, kh, sh, pt, pb), extent(w, ow, kw, sw, pl, pr)).astype(np.float64)


def avg_pool2d(ctx: GradContext, grads: Grads) -> Grads:
    """Each output gradient, divided by its window's divisor, spreads evenly over its window: the
    input gradient of a depthwise convolution with an all-ones kernel (a library primitive)."""
    g = grads[0]
    assert g is not None
    return [_avg_pool_input_grad(ctx, g, ctx.in_type(0).shape)]


def avg_pool2d_nhwc(ctx: GradContext, grads: Grads) -> Grads:
    """avg_pool2d's rule on the NCHW views, the input gradient transposed back."""
    assert grads[0] is not None
    n, h, w, c = ctx.in_type(0).shape
    g = ctx.op("transpose", grads[0], perm=(0, 3, 1, 2))
    return [ctx.op("transpose", _avg_pool_input_grad(ctx, g, (n, c, h, w)), perm=(0, 2, 3, 1))]


def _avg_pool_input_grad(ctx: GradContext, g: Value, x_shape: tuple[int, ...]) -> Value:
    """The input gradient (NCHW, ``x_shape``) of an average pooling with ``ctx``'s attributes
    from its output gradient ``g`` (NCHW)."""
    a = ctx.attrs
    n, c, h, w = x_shape
    oh, ow = g.shape[2:]
    kh, kw = a["kernel"]
    if a["divisor"] is not None:
        g = ctx.scale(g, 1.0 / a["divisor"])
    else:
        g = ctx.op("mul", g, ctx.const(1.0 / avg_pool_counts(a, h, w, oh, ow), g))
    (pt, pb), (pl, pr) = a["padding"]
    # ceil_mode windows may hang over the bottom/right padding: pad the convolution to match.
    pb = max(pb, (oh - 1) * a["stride"][0] + kh - h - pt)
    pr = max(pr, (ow - 1) * a["stride"][1] + kw - w - pl)
    ones = ctx.const(np.ones((c, 1, kh, kw)), g)
    return ctx.op("conv2d_backward_data", g, ones, shape=tuple(x_shape), stride=a["stride"],
                  padding=((pt, pb), (pl, pr)), dilation=1, groups=c)


def _window_matrix(size: int, out: int) -> np.ndarray:
    """(out, size): row i averages adaptive window i."""
    m = np.zeros((out, size))
    for i, (lo, hi) in enumerate(adaptive_bounds(size, out)):
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


def adaptive_avg_pool2d(ctx: GradContext, grads: Grads) -> Grads:
    """y = A x B^T per plane (A, B average the windows), so dx = A^T g B: two matrix products
    with constant matrices; global pooling is a plain broadcast."""
    g = grads[0]
    assert g is not None
    shape = ctx.in_type(0).shape
    h, w = shape[2:]
    oh, ow = ctx.attrs["output_size"]
    if (oh, ow) == (1, 1):
        return [ctx.scale(ctx.op("broadcast_to", g, shape=shape), 1.0 / (h * w))]
    t = ctx.op("matmul", g, ctx.const(_window_matrix(w, ow), g))  # (N, C, OH, W)
    return [ctx.op("matmul", ctx.const(_window_matrix(h, oh).T.copy(), g), t)]  # (N, C, H, W)



def max_pool2d_backward(ctx: GradContext, grads: Grads) -> Grads:
    """Piecewise constant in x; linear in the output gradient, and its transpose reads the
    incoming gradient back at the chosen positions."""
    g = grads[0]
    assert g is not None
    return [None, ctx.op("max_pool2d_select", ctx.x(0), g, **_pool_attrs(ctx.attrs))]


def max_pool2d_select(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    return [None, ctx.op("max_pool2d_backward", ctx.x(0), g, **_pool_attrs(ctx.attrs))]
