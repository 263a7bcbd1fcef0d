"""Reductions (``ReduceMean`` ... over the axes given as attribute or input), ``Softmax`` /
``LogSoftmax`` and ``ArgMax`` / ``ArgMin``."""

from __future__ import annotations

from typing import Any

import numpy as np

from sol.plugin_api import Value
from sol_onnx.ops.base import Context, Unsupported, attr, axes_input, axis_of, converts
from sol_onnx.ops.linalg import FLOATS

_REDUCE = {"ReduceMean": "mean", "ReduceSum": "sum", "ReduceMax": "max", "ReduceMin": "min",
           "ReduceSumSquare": "sum", "ReduceL2": "sum"}


@converts(*_REDUCE)
def reduce(ctx: Context, node: Any) -> list[Value]:
    x = ctx.value(node.input[0])
    if x.dtype not in FLOATS:
        raise Unsupported(f"{node.op_type} of {x.dtype}")
    axes = axes_input(ctx, node, 1)
    keepdims = bool(attr(node, "keepdims", 1))
    if not axes:  # none given: every axis, unless the node says "none given: nothing"
        if int(attr(node, "noop_with_empty_axes", 0)):
            return [ctx.emit("identity", [x])]
        axes = list(range(x.type.rank))
    norm = tuple(sorted({axis_of(a, x.type.rank) for a in axes}))
    if any(x.shape[a] == 0 for a in norm):
        raise Unsupported("a reduction over an empty axis")
    if node.op_type in ("ReduceSumSquare", "ReduceL2"):
        x = ctx.emit("mul", [x, x])
    y = ctx.emit(_REDUCE[node.op_type], [x], axes=norm, keepdims=keepdims)
    return [ctx.emit("sqrt", [y]) if node.op_type == "ReduceL2" else y]


@converts("Softmax", "LogSoftmax")
def softmax(ctx: Context, node: Any) -> list[Value]:
    x = ctx.value(node.input[0])
    if x.dtype not in FLOATS:
        raise Unsupported(f"{node.op_type} of {x.dtype}")
    axis = axis_of(int(attr(node, "axis", -1)), x.type.rank)
    return [ctx.emit("softmax" if node.op_type == "Softmax" else "log_softmax", [x], axis=axis)]


@converts("ArgMax", "ArgMin")
def argmax(ctx: Context, node: Any) -> list[Value]:
    x = ctx.value(node.input[0])
    if int(attr(node, "select_last_index", 0)):
        raise Unsupported("select_last_index=1")
    axis = axis_of(int(attr(node, "axis", 0)), x.type.rank)
    op = "argmax" if node.op_type == "ArgMax" else "argmin"
    return [ctx.emit(op, [x], axis=axis, keepdims=bool(attr(node, "keepdims", 1)))]


@converts("Hardmax")
def hardmax(ctx: Context, node: Any) -> list[Value]:
    """1 at the first maximum along ``axis``, 0 elsewhere: argmax compared with the positions."""
    x = ctx.value(node.input[0])
    if x.dtype not in FLOATS:
        raise Unsupported(f"Hardmax of {x.dtype}")
    axis = axis_of(int(attr(node, "axis", -1)), x.type.rank)
    first = ctx.emit("argmax", [x], axis=axis, keepdims=True)
    positions = np.arange(x.shape[axis], dtype=np.int64).reshape((-1,) + (1,) * (x.type.rank - axis - 1))
    return [ctx.emit("cast", [ctx.emit("eq", [first, ctx.const(positions)])], dtype=x.dtype)]


@converts("CumSum")
def cumsum(ctx: Context, node: Any) -> list[Value]:
    """A running sum along the axis (a known scalar input). ``exclusive`` and ``reverse`` are not
    converted: ONNX Runtime runs them (a shifted or flipped sum would round differently from its
    own loop only by float rounding, but sol has no flip op yet)."""
    x = ctx.value(node.input[0])
    if int(attr(node, "exclusive", 0)) or int(attr(node, "reverse", 0)):
        raise Unsupported("exclusive or reverse running sums")
    if x.dtype not in (*FLOATS, "int32", "int64"):
        raise Unsupported(f"a running sum of {x.dtype}")
    axis = int(np.asarray(ctx.need_static(node.input[1], "axis")).reshape(()))
    return [ctx.emit("cumsum", [x], axis=axis_of(axis, x.type.rank))]
