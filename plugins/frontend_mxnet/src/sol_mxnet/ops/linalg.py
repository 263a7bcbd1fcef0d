"""Convolution, Deconvolution, FullyConnected, dot/batch_dot, Embedding and the normalizations
(BatchNorm, LayerNorm, InstanceNorm).

MXNet and sol agree on the layouts that matter: NCHW data, convolution weights
(O, C/g, kh, kw), deconvolution weights (C, O/g, kh, kw), dense weights (out, in). 1-D
convolutions (NCW) run as 2-D ones over a height of 1.

BatchNorm in training mode (a training-mode call of the wrapper, ``use_global_stats=False``)
normalizes with the batch's mean and biased variance and computes MXNet's running-statistics
update, ``running = running * momentum + batch * (1 - momentum)``, as extra outputs the wrapper
writes into the block's ``running_mean``/``running_var`` after the call (MXNet updates them
with the biased batch variance too: checked against MXNet in the tests).
"""

from __future__ import annotations

import numpy as np

from sol.plugin_api import Value
from sol_mxnet.ops.base import Context, MXNode, Unsupported, axis_of, converts, require_float


def _window(node: MXNode, n: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(kernel, stride, dilate, pad) of an ``n``-D window op, MXNet's empty tuples filled in."""
    a = node.attrs
    kernel = a.ints("kernel")
    if len(kernel) != n:
        raise Unsupported(f"{len(kernel)}-D kernel on {n}-D data")
    stride = a.ints("stride", ()) or (1,) * n
    dilate = a.ints("dilate", ()) or (1,) * n
    pad = a.ints("pad", ()) or (0,) * n
    if not len(stride) == len(dilate) == len(pad) == n:
        raise Unsupported(f"stride {stride}, dilate {dilate}, pad {pad} for a {n}-D kernel")
    return kernel, stride, dilate, pad


def _as_2d(v: tuple[int, ...], one: int) -> tuple[int, int]:
    return (one, v[0]) if len(v) == 1 else (v[0], v[1])


def _spatial_rank(ctx: Context, node: MXNode, x: Value) -> int:
    layout = node.attrs.str("layout")
    n = x.type.rank - 2
    if n not in (1, 2):
        raise Unsupported(f"{node.op} over {n} spatial dimensions (sol has 1-D and 2-D)")
    if layout not in (None, "NCW", "NCHW"):
        raise Unsupported(f"layout {layout}")
    return n


@converts("Convolution")
def convolution(ctx: Context, node: MXNode) -> list[Value]:
    xs = ctx.inputs(node)
    x, w = xs[0], xs[1]
    require_float(x, node.op)
    n = _spatial_rank(ctx, node, x)
    kernel, stride, dilate, pad = _window(node, n)
    no_bias = node.attrs.bool("no_bias", False)
    if n == 1:
        x = ctx.reshape(x, (x.shape[0], x.shape[1], 1, x.shape[2]))
        w = ctx.reshape(w, (w.shape[0], w.shape[1], 1, w.shape[2]))
    inputs = [x, w] + ([] if no_bias else [xs[2]])
    p = _as_2d(pad, 0)
    y = ctx.emit("conv2d", inputs, stride=_as_2d(stride, 1), padding=((p[0], p[0]), (p[1], p[1])),
                 dilation=_as_2d(dilate, 1), groups=node.attrs.int("num_group", 1))
    return [ctx.reshape(y, (y.shape[0], y.shape[1], y.shape[3])) if n == 1 else y]


@converts("Deconvolution")
def deconvolution(ctx: Context, node: MXNode) -> list[Value]:
    xs = ctx.inputs(node)
    x, w = xs[0], xs[1]
    require_float(x, node.op)
    n = _spatial_rank(ctx, node, x)
    kernel, stride, dilate, pad = _window(node, n)
    if node.attrs.has("target_shape") and any(node.attrs.ints("target_shape", ())):
        raise Unsupported("Deconvolution with target_shape")
    adj = node.attrs.ints("adj", ()) or (0,) * n
    no_bias = node.attrs.bool("no_bias", True)
    if n == 1:
        x = ctx.reshape(x, (x.shape[0], x.shape[1], 1, x.shape[2]))
        w = ctx.reshape(w, (w.shape[0], w.shape[1], 1, w.shape[2]))
    inputs = [x, w] + ([] if no_bias else [xs[2]])
    p = _as_2d(pad, 0)
    y = ctx.emit("conv_transpose2d", inputs, stride=_as_2d(stride, 1), padding=((p[0], p[0]), (p[1], p[1])),
                 output_padding=_as_2d(adj, 0), dilation=_as_2d(dilate, 1), groups=node.attrs.int("num_group", 1))
    return [ctx.reshape(y, (y.shape[0], y.shape[1], y.shape[3])) if n == 1 else y]


@converts("FullyConnected")
def fully_connected(ctx: Context, node: MXNode) -> list[Value]:
    xs = ctx.inputs(node)
    x, w = xs[0], xs[1]
    require_float(x, node.op)
    if node.attrs.bool("flatten", True) and x.type.rank != 2:
        rest = 1
        for d in x.shape[1:]:
            rest *= d
        x = ctx.reshape(x, (x.shape[0], rest))
    inputs = [x, w] + ([] if node.attrs.bool("no_bias", False) else [xs[2]])
    return [ctx.emit("dense", inputs)]


@converts("dot", "batch_dot")
def dot(ctx: Context, node: MXNode) -> list[Value]:
    a, b = ctx.inputs(node)
    require_float(a, node.op)
    rank = 2 if node.op == "dot" else 3
    if a.type.rank != rank or b.type.rank != rank or a.dtype != b.dtype:
        raise Unsupported(f"{node.op} of shapes {a.shape} and {b.shape}")
    perm = (1, 0) if rank == 2 else (0, 2, 1)
    if node.attrs.bool("transpose_a", False):
        a = ctx.emit("transpose", [a], perm=perm)
    if node.attrs.bool("transpose_b", False):
        b = ctx.emit("transpose", [b], perm=perm)
    return [ctx.emit("matmul", [a, b])]


@converts("Embedding")
def embedding(ctx: Context, node: MXNode) -> list[Value]:
    """MXNet takes the indices as floats and clips them into [0, input_dim - 1]: the same here
    (a clamp, then a cast that truncates like MXNet's), then a row gather."""
    ids, w = ctx.inputs(node)
    n = w.shape[0]
    if ids.dtype.startswith("float"):
        ids = ctx.emit("clamp", [ids], min=0.0, max=float(n - 1))
    else:
        raise Unsupported(f"Embedding with {ids.dtype} indices")
    idx = ctx.cast(ids, "int64")
    return [ctx.emit("gather", [w, idx], axis=0, wrap=False)]


def _broadcast_along(ctx: Context, v: Value, axis: int, rank: int) -> Value:
    """A 1-D per-channel vector shaped to broadcast along ``axis`` of a rank-``rank`` tensor."""
    return ctx.reshape(v, tuple(v.shape[0] if i == axis else 1 for i in range(rank)))


@converts("BatchNorm", "BatchNorm_v1", "_contrib_SyncBatchNorm")
def batch_norm(ctx: Context, node: MXNode) -> list[Value]:
    x, gamma, beta, mean, var = ctx.inputs(node)
    require_float(x, node.op)
    a = node.attrs
    if a.bool("output_mean_var", False):
        raise Unsupported("BatchNorm with output_mean_var")
    axis = axis_of(a.int("axis", 1), x.type.rank)
    eps = a.float("eps", 1e-3)
    fix_gamma = a.bool("fix_gamma", True)
    if fix_gamma:
        gamma = ctx.const(np.ones(x.shape[axis], dtype=x.dtype))  # MXNet ignores gamma (and gives it no gradient)
    if not ctx.training or a.bool("use_global_stats", False):
        return [ctx.emit("batch_norm", [x, mean, var, gamma, beta], eps=eps, axis=axis)]
    axes = tuple(i for i in range(x.type.rank) if i != axis)
    bmean = ctx.emit("mean", [x], axes=axes, keepdims=True)
    bvar = ctx.emit("variance", [x, bmean], axes=axes, keepdims=True)
    std = ctx.emit("sqrt", [ctx.emit("add", [bvar, ctx.scalar(eps, x)])])
    y = ctx.emit("div", [ctx.emit("sub", [x, bmean]), std])
    y = ctx.emit("add", [ctx.emit("mul", [y, _broadcast_along(ctx, gamma, axis, x.type.rank)]),
                         _broadcast_along(ctx, beta, axis, x.type.rank)])
    m = a.float("momentum", 0.9)
    c = x.shape[axis]
    for aux, batch in ((node.inputs[3], bmean), (node.inputs[4], bvar)):
        name = ctx.names.get(aux)
        if name is None:
            raise Unsupported("BatchNorm whose running statistics are not parameters of the block")
        old = ctx.value(aux)
        new = ctx.emit("add", [ctx.emit("mul", [old, ctx.scalar(m, old)]),
                               ctx.emit("mul", [ctx.reshape(batch, (c,)), ctx.scalar(1.0 - m, old)])])
        ctx.updates.append((name, ctx.emit("stop_gradient", [new])))
    return [y]


def _normalized(ctx: Context, x: Value, axes: tuple[int, ...], eps: float) -> Value:
    mean = ctx.emit("mean", [x], axes=axes, keepdims=True)
    var = ctx.emit("variance", [x, mean], axes=axes, keepdims=True)
    return ctx.emit("div", [ctx.emit("sub", [x, mean]), ctx.emit("sqrt", [ctx.emit("add", [var, ctx.scalar(eps, x)])])])


@converts("LayerNorm")
def layer_norm(ctx: Context, node: MXNode) -> list[Value]:
    x, gamma, beta = ctx.inputs(node)
    require_float(x, node.op)
    if node.attrs.bool("output_mean_var", False):
        raise Unsupported("LayerNorm with output_mean_var")
    axis = axis_of(node.attrs.int("axis", -1), x.type.rank)
    y = _normalized(ctx, x, (axis,), node.attrs.float("eps", 1e-5))
    r = x.type.rank
    y = ctx.emit("mul", [y, _broadcast_along(ctx, gamma, axis, r)])
    return [ctx.emit("add", [y, _broadcast_along(ctx, beta, axis, r)])]


@converts("InstanceNorm")
def instance_norm(ctx: Context, node: MXNode) -> list[Value]:
    x, gamma, beta = ctx.inputs(node)
    require_float(x, node.op)
    if x.type.rank < 3:
        raise Unsupported(f"InstanceNorm of rank {x.type.rank}")
    r = x.type.rank
    y = _normalized(ctx, x, tuple(range(2, r)), node.attrs.float("eps", 1e-3))
    y = ctx.emit("mul", [y, _broadcast_along(ctx, gamma, 1, r)])
    return [ctx.emit("add", [y, _broadcast_along(ctx, beta, 1, r)])]
