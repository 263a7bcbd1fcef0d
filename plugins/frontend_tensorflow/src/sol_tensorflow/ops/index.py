"""TensorFlow converters for token models: gathers (Keras ``Embedding``, ``tf.gather``),
comparisons, logical ops, ``Select``/``SelectV2`` (``tf.where``), ArgMax/ArgMin and general
Max and Min (the selecting reductions, as core's :mod:`sol.ops.index`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sol.plugin_api import Value
from sol_tensorflow.ops.base import NCHW, Context, Result, Unsupported, _layout_of, _wrap, attr, converts, dtype_name

# --- gather ------------------------------------------------------------------------------------


def _gather(ctx: Context, params: Value, indices: Value, axis: int, batch_dims: int) -> Value:
    if batch_dims:
        raise Unsupported(f"gather with batch_dims={batch_dims}")
    if indices.dtype not in ("int32", "int64"):
        raise Unsupported(f"gather indices of dtype {indices.dtype}")
    # TensorFlow rejects negative indices on CPU (no counting from the end): wrap=False.
    return ctx.emit("gather", [params, indices], axis=axis % max(params.type.rank, 1), wrap=False)


@converts("GatherV2")
def _gather_v2(ctx: Context, op: Any) -> list[Result]:
    params, indices, axis_t = op.inputs
    axis = int(np.asarray(ctx.need_static(axis_t, "gather axis")).reshape(()))
    return [_gather(ctx, ctx.tf(params), ctx.tf(indices), axis, int(attr(op, "batch_dims", 0)))]


@converts("ResourceGather")
def _resource_gather(ctx: Context, op: Any) -> list[Result]:
    """``tf.nn.embedding_lookup`` on a variable: the resource handle of a captured variable."""
    handle, indices = op.inputs  # the importer has put the variable's value where its handle is
    return [_gather(ctx, ctx.tf(handle), ctx.tf(indices), 0, int(attr(op, "batch_dims", 0)))]


# --- comparisons, logical ops, select ----------------------------------------------------------

_COMPARE = {"Equal": "eq", "NotEqual": "ne", "Less": "lt", "LessEqual": "le", "Greater": "gt",
            "GreaterEqual": "ge"}
_LOGICAL = {"LogicalAnd": "logical_and", "LogicalOr": "logical_or", "LogicalNot": "logical_not"}


def _operands(ctx: Context, op: Any, tensors: list[Any]) -> tuple[list[Value], bool]:
    """Operands in one layout: NCHW when the rank-4 result has an operand held only in NCHW."""
    nchw = _layout_of(ctx, op)
    rank = len(op.outputs[0].shape)
    return [ctx.operand(t, nchw, rank) for t in tensors], nchw


@converts(*_COMPARE)
def _compare(ctx: Context, op: Any) -> list[Result]:
    (a, b), nchw = _operands(ctx, op, list(op.inputs[:2]))
    if a.dtype != b.dtype:
        raise Unsupported(f"comparison of {a.dtype} with {b.dtype}")
    return [_wrap(ctx.emit(_COMPARE[op.type], [a, b]), nchw)]


@converts("IsNan", "IsInf")
def _classify(ctx: Context, op: Any) -> list[Result]:
    (x,), nchw = _operands(ctx, op, [op.inputs[0]])
    return [_wrap(ctx.emit("isnan" if op.type == "IsNan" else "isinf", [x]), nchw)]


@converts(*_LOGICAL)
def _logical(ctx: Context, op: Any) -> list[Result]:
    xs, nchw = _operands(ctx, op, list(op.inputs))
    return [_wrap(ctx.emit(_LOGICAL[op.type], xs), nchw)]


@converts("Select", "SelectV2")
def _select(ctx: Context, op: Any) -> list[Result]:
    """``tf.where(cond, x, y)``. SelectV2 broadcasts all three; the original Select also takes a
    vector condition that picks whole rows of x and y (its length is their first dimension)."""
    cond_t, x_t, y_t = op.inputs
    rank = len(op.outputs[0].shape)
    if op.type == "Select" and len(cond_t.shape) == 1 and rank > 1:
        x, y = ctx.tf(x_t), ctx.tf(y_t)
        cond = ctx.reshape(ctx.tf(cond_t), (int(cond_t.shape[0]),) + (1,) * (rank - 1))
        return [ctx.emit("where", [cond, x, y])]
    (cond, x, y), nchw = _operands(ctx, op, [cond_t, x_t, y_t])
    return [_wrap(ctx.emit("where", [cond, x, y]), nchw)]


# --- argmax / argmin, max, min -------------------------------------------------------------------


@converts("ArgMax", "ArgMin")
def _arg(ctx: Context, op: Any) -> list[Result]:
    x_t, axis_t = op.inputs
    rank = len(x_t.shape)
    axis = int(np.asarray(ctx.need_static(axis_t, "axis")).reshape(())) % max(rank, 1)
    y = ctx.emit("argmax" if op.type == "ArgMax" else "argmin", [ctx.tf(x_t)], axis=axis)
    out = dtype_name(op.outputs[0].dtype)
    return [y if out == "int64" else ctx.emit("cast", [y], dtype=out)]


def reduce_select(ctx: Context, op: Any, kind: str) -> Result:
    """``tf.reduce_max`` / ``tf.reduce_min`` over static axes (TensorFlow's axis numbering)."""
    x_t, axes_t = op.inputs
    rank = len(x_t.shape)
    axes = tuple(sorted({int(a) % max(rank, 1) for a in np.atleast_1d(ctx.need_static(axes_t, "axes"))}))
    x = ctx.tf(x_t)
    if not axes or rank == 0:
        return x
    return ctx.emit(kind, [x], axes=axes, keepdims=bool(attr(op, "keep_dims", False)))


@converts("Min")
def _reduce_min(ctx: Context, op: Any) -> list[Result]:
    return [reduce_select(ctx, op, "min")]


@converts("Max")
def _reduce_max(ctx: Context, op: Any) -> list[Result]:
    """The spatial maximum of an image (GlobalMaxPooling2D) is a max pool over the whole plane
    (it stays in NCHW); other maxima are max reductions."""
    x, axes_t = op.inputs
    axes = sorted({int(a) % max(len(x.shape), 1) for a in np.atleast_1d(ctx.need_static(axes_t, "axes"))})
    if len(x.shape) != 4 or axes != [1, 2]:
        return [reduce_select(ctx, op, "max")]  # any other maximum: sol's max reduction
    h, w = int(x.shape[1]), int(x.shape[2])
    y = ctx.emit("max_pool2d", [ctx.nchw(x)], kernel=(h, w), stride=(h, w))
    if attr(op, "keep_dims", False):
        return [NCHW(y)]
    return [ctx.reshape(y, (int(x.shape[0]), int(x.shape[3])))]

