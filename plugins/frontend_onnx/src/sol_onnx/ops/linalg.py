"""Convolution, ``Gemm``, ``MatMul`` and the normalizations (``BatchNormalization``,
``LayerNormalization``).

Convolutions: ONNX's 2-D convolutions are core's ``conv2d`` directly (both NCHW, weights
(O, C/g, kh, kw)); 1-D ones run as 2-D over a height of 1. ONNX pads are ``[begin..., end...]``;
``auto_pad`` SAME_UPPER/SAME_LOWER put the odd pixel after/before.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sol.plugin_api import Value, ValueKind
from sol_onnx.ops.base import Context, Unsupported, attr, axis_of, converts

FLOATS = ("float32", "float64", "float16")


def _spatial(node: Any, x: Value, kernel: tuple[int, ...]) -> tuple[tuple[int, int], tuple[int, int],
                                                                   tuple[tuple[int, int], tuple[int, int]]]:
    """(strides, dilations, padding) of a 2-D window op from its ONNX attributes."""
    n = len(kernel)
    strides = tuple(int(s) for s in attr(node, "strides", [1] * n))
    dilations = tuple(int(d) for d in attr(node, "dilations", [1] * n))
    auto_pad = attr(node, "auto_pad", "NOTSET")
    if auto_pad == "NOTSET":
        pads = [int(p) for p in attr(node, "pads", [0] * (2 * n))]
        pairs = tuple((pads[i], pads[i + n]) for i in range(n))
    elif auto_pad == "VALID":
        pairs = tuple((0, 0) for _ in range(n))
    elif auto_pad in ("SAME_UPPER", "SAME_LOWER"):
        pairs = tuple(_same(x.shape[2 + i], kernel[i], strides[i], dilations[i], auto_pad == "SAME_UPPER")
                      for i in range(n))
    else:
        raise Unsupported(f"auto_pad={auto_pad!r}")
    if n == 1:
        return (1, strides[0]), (1, dilations[0]), ((0, 0), pairs[0])
    return (strides[0], strides[1]), (dilations[0], dilations[1]), (pairs[0], pairs[1])


def _same(size: int, k: int, s: int, d: int, upper: bool) -> tuple[int, int]:
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    small, big = total // 2, total - total // 2
    return (small, big) if upper else (big, small)


def as_2d(ctx: Context, x: Value, what: str) -> tuple[Value, bool]:
    """``x`` (N, C, L) as (N, C, 1, L); (N, C, H, W) as it is."""
    if x.type.rank == 3:
        return ctx.reshape(x, (x.shape[0], x.shape[1], 1, x.shape[2])), True
    if x.type.rank != 4:
        raise Unsupported(f"{what} over {x.type.rank - 2} spatial dimensions (sol has 1-D and 2-D)")
    return x, False


def back_from_2d(ctx: Context, y: Value, was_1d: bool) -> Value:
    return ctx.reshape(y, (y.shape[0], y.shape[1], y.shape[3])) if was_1d else y


@converts("Conv")
def conv(ctx: Context, node: Any) -> list[Value]:
    x = ctx.value(node.input[0])
    w = ctx.value(node.input[1])
    if x.dtype not in FLOATS or w.dtype != x.dtype:
        raise Unsupported(f"Conv of {x.dtype}/{w.dtype}")
    kernel = tuple(int(k) for k in (attr(node, "kernel_shape") or w.shape[2:]))
    x2, was_1d = as_2d(ctx, x, "Conv")
    if was_1d:
        w = ctx.reshape(w, (w.shape[0], w.shape[1], 1, w.shape[2]))
    stride, dilation, padding = _spatial(node, x, kernel)
    inputs = [x2, w] + ([ctx.value(node.input[2])] if ctx.has(node, 2) else [])
    y = ctx.emit("conv2d", inputs, stride=stride, padding=padding, dilation=dilation,
                 groups=int(attr(node, "group", 1)))
    return [back_from_2d(ctx, y, was_1d)]


@converts("ConvTranspose")
def conv_transpose(ctx: Context, node: Any) -> list[Value]:
    x = ctx.value(node.input[0])
    w = ctx.value(node.input[1])
    if x.type.rank != 4 or x.dtype not in FLOATS:
        raise Unsupported(f"ConvTranspose of rank {x.type.rank} / {x.dtype}")
    if attr(node, "output_shape") is not None or attr(node, "auto_pad", "NOTSET") != "NOTSET":
        raise Unsupported("output_shape / auto_pad")
    pads = [int(p) for p in attr(node, "pads", [0, 0, 0, 0])]
    out_pad = tuple(int(p) for p in attr(node, "output_padding", [0, 0]))
    inputs = [x, w] + ([ctx.value(node.input[2])] if ctx.has(node, 2) else [])
    return [ctx.emit("conv_transpose2d", inputs, stride=tuple(int(s) for s in attr(node, "strides", [1, 1])),
                     padding=((pads[0], pads[2]), (pads[1], pads[3])), output_padding=out_pad,
                     dilation=tuple(int(d) for d in attr(node, "dilations", [1, 1])),
                     groups=int(attr(node, "group", 1)))]


@converts("MatMul")
def matmul(ctx: Context, node: Any) -> list[Value]:
    a, b = ctx.inputs(node)
    if a.dtype != b.dtype or a.dtype not in FLOATS:
        raise Unsupported(f"MatMul of {a.dtype}/{b.dtype}")
    out_shape = np.matmul(np.empty(a.shape, np.int8), np.empty(b.shape, np.int8)).shape  # NumPy's rule, for 1-D too
    if a.type.rank == 1:
        a = ctx.reshape(a, (1, a.shape[0]))
    if b.type.rank == 1:
        b = ctx.reshape(b, (b.shape[0], 1))
    if b.type.rank == 2 and b.kind is ValueKind.PARAM and a.type.rank >= 2:
        # x @ W with a weight: core's dense (x @ w.T), the weight transposed once, now
        w = ctx.graph.add_param(f"{node.input[1]}#T", np.asarray(np.asarray(b.data).T, order="C"))
        y = ctx.emit("dense", [a, w])
    else:
        y = ctx.emit("matmul", [a, b])
    return [ctx.reshape(y, out_shape)]


@converts("Gemm")
def gemm(ctx: Context, node: Any) -> list[Value]:
    a = ctx.value(node.input[0])
    alpha, beta = float(attr(node, "alpha", 1.0)), float(attr(node, "beta", 1.0))
    trans_a, trans_b = int(attr(node, "transA", 0)), int(attr(node, "transB", 0))
    if a.dtype not in FLOATS:
        raise Unsupported(f"Gemm of {a.dtype}")
    if trans_a:
        a = ctx.emit("transpose", [a], perm=(1, 0))
    b_static = ctx.static(node.input[1])
    c = ctx.value(node.input[2]) if ctx.has(node, 2) else None
    n = b_static.shape[0 if trans_b else 1] if b_static is not None else None
    if b_static is not None and alpha == 1.0 and (c is None or (beta == 1.0 and c.shape in ((n,), (1, n)))):
        w = b_static if trans_b else np.asarray(b_static.T, order="C")
        wv = ctx.value(node.input[1]) if trans_b else ctx.graph.add_param(f"{node.input[1]}#T", w)
        inputs = [a, wv] + ([ctx.reshape(c, (int(b_static.shape[0 if trans_b else 1]),))] if c is not None else [])
        return [ctx.emit("dense", inputs)]
    b = ctx.value(node.input[1])
    if trans_b:
        b = ctx.emit("transpose", [b], perm=(1, 0))
    y = ctx.emit("matmul", [a, b])
    if alpha != 1.0:
        y = ctx.emit("mul", [y, ctx.scalar(alpha, y)])
    if c is not None and beta != 0.0:
        if beta != 1.0:
            c = ctx.emit("mul", [c, ctx.scalar(beta, c)])
        y = ctx.emit("add", [y, c])
    return [y]


@converts("BatchNormalization")
def batch_norm(ctx: Context, node: Any) -> list[Value]:
    x, scale, bias, mean, var = (ctx.value(n) for n in node.input[:5])
    if int(attr(node, "training_mode", 0)) or any(o for o in node.output[1:]):
        raise Unsupported("training mode (batch statistics, running-statistics outputs)")
    if x.dtype not in FLOATS or len({v.dtype for v in (x, scale, bias, mean, var)}) != 1:
        raise Unsupported("BatchNormalization with mixed dtypes")
    return [ctx.emit("batch_norm", [x, mean, var, scale, bias], eps=float(attr(node, "epsilon", 1e-5)), axis=1)]


@converts("LayerNormalization")
def layer_norm(ctx: Context, node: Any) -> list[Value | None]:
    """(x - mean) / sqrt(var + eps) * scale + bias over the axes from ``axis`` on, as core ops
    (mean and variance in one pass each; core fuses the element-wise rest)."""
    x = ctx.value(node.input[0])
    if x.dtype != "float32" or int(attr(node, "stash_type", 1)) != 1:
        raise Unsupported(f"LayerNormalization in {x.dtype}")
    axis = axis_of(int(attr(node, "axis", -1)), x.type.rank)
    axes = tuple(range(axis, x.type.rank))
    mean = ctx.emit("mean", [x], axes=axes, keepdims=True)
    var = ctx.emit("variance", [x, mean], axes=axes, keepdims=True)
    eps = ctx.scalar(float(attr(node, "epsilon", 1e-5)), x)
    std = ctx.emit("sqrt", [ctx.emit("add", [var, eps])])
    y = ctx.emit("mul", [ctx.emit("div", [ctx.emit("sub", [x, mean]), std]), ctx.value(node.input[1])])
    if ctx.has(node, 2):
        y = ctx.emit("add", [y, ctx.value(node.input[2])])
    wanted = [bool(o) for o in list(node.output[1:3]) + ["", ""]][:2]  # the optional Mean and InvStdDev outputs
    extra: list[Value | None] = [mean if wanted[0] else None,
                                 ctx.emit("div", [ctx.scalar(1.0, x), std]) if wanted[1] else None]
    return [y, *extra[:len(node.output) - 1]]


def _normalized(ctx: Context, x: Value, axes: tuple[int, ...], eps: float, centred: bool = True) -> Value:
    """(x - mean) / sqrt(var + eps) over ``axes`` (``centred=False``: x / sqrt(mean(x^2) + eps))."""
    if centred:
        mean = ctx.emit("mean", [x], axes=axes, keepdims=True)
        var = ctx.emit("variance", [x, mean], axes=axes, keepdims=True)
        x = ctx.emit("sub", [x, mean])
    else:
        var = ctx.emit("mean", [ctx.emit("mul", [x, x])], axes=axes, keepdims=True)
    return ctx.emit("div", [x, ctx.emit("sqrt", [ctx.emit("add", [var, ctx.scalar(eps, x)])])])


def _per_channel(ctx: Context, v: Value, rank: int) -> Value:
    """A (C,) scale or bias shaped to broadcast over (N, C, ...)."""
    return ctx.reshape(v, (1, v.shape[0]) + (1,) * (rank - 2))


@converts("RMSNormalization")
def rms_norm(ctx: Context, node: Any) -> list[Value]:
    x = ctx.value(node.input[0])
    if x.dtype != "float32" or int(attr(node, "stash_type", 1)) != 1:
        raise Unsupported(f"RMSNormalization in {x.dtype}")
    axis = axis_of(int(attr(node, "axis", -1)), x.type.rank)
    y = _normalized(ctx, x, tuple(range(axis, x.type.rank)), float(attr(node, "epsilon", 1e-5)), centred=False)
    return [ctx.emit("mul", [y, ctx.value(node.input[1])])]


@converts("InstanceNormalization")
def instance_norm(ctx: Context, node: Any) -> list[Value]:
    x, scale, bias = (ctx.value(n) for n in node.input[:3])
    if x.dtype != "float32" or x.type.rank < 3:
        raise Unsupported(f"InstanceNormalization of {x.type}")
    y = _normalized(ctx, x, tuple(range(2, x.type.rank)), float(attr(node, "epsilon", 1e-5)))
    y = ctx.emit("mul", [y, _per_channel(ctx, scale, x.type.rank)])
    return [ctx.emit("add", [y, _per_channel(ctx, bias, x.type.rank)])]


@converts("GroupNormalization")
def group_norm(ctx: Context, node: Any) -> list[Value]:
    """Opset 21's form: scale and bias per channel (opset 18's per group is converted by ONNX's adapter)."""
    x, scale, bias = (ctx.value(n) for n in node.input[:3])
    groups = int(attr(node, "num_groups"))
    if x.dtype != "float32" or x.type.rank < 3 or int(attr(node, "stash_type", 1)) != 1:
        raise Unsupported(f"GroupNormalization of {x.type}")
    n, c = x.shape[:2]
    if c % groups or scale.shape != (c,):
        raise Unsupported(f"{groups} groups of {c} channels with a scale of {scale.shape}")
    g = ctx.reshape(x, (n, groups, -1))
    y = ctx.reshape(_normalized(ctx, g, (2,), float(attr(node, "epsilon", 1e-5))), x.shape)
    y = ctx.emit("mul", [y, _per_channel(ctx, scale, x.type.rank)])
    return [ctx.emit("add", [y, _per_channel(ctx, bias, x.type.rank)])]


@converts("MeanVarianceNormalization")
def mean_variance_norm(ctx: Context, node: Any) -> list[Value]:
    (x,) = ctx.inputs(node)
    if x.dtype != "float32":
        raise Unsupported(f"MeanVarianceNormalization of {x.dtype}")
    axes = tuple(sorted({axis_of(int(a), x.type.rank) for a in attr(node, "axes", [0, 2, 3])}))
    return [_normalized(ctx, x, axes, 1e-9)]


@converts("LpNormalization")
def lp_norm(ctx: Context, node: Any) -> list[Value]:
    (x,) = ctx.inputs(node)
    p = int(attr(node, "p", 2))
    if x.dtype not in FLOATS or p not in (1, 2):
        raise Unsupported(f"LpNormalization p={p} of {x.dtype}")
    axis = axis_of(int(attr(node, "axis", -1)), x.type.rank)
    if p == 1:
        norm = ctx.emit("sum", [ctx.emit("abs", [x])], axes=(axis,), keepdims=True)
    else:
        norm = ctx.emit("sqrt", [ctx.emit("sum", [ctx.emit("mul", [x, x])], axes=(axis,), keepdims=True)])
    zero = ctx.emit("eq", [norm, ctx.scalar(0.0, norm)])  # ONNX: a zero norm gives zeros, not NaN
    safe = ctx.emit("where", [zero, ctx.scalar(1.0, norm), norm])
    return [ctx.emit("where", [zero, ctx.scalar(0.0, x), ctx.emit("div", [x, safe])])]
