"""Reductions and softmax: Mean, Sum, Softmax, LogSoftmax (over NCHW axes where the input is held
in NCHW). The selecting reductions (Max, Min, ArgMax, ArgMin) are in :mod:`sol_tensorflow.ops.index`."""

from __future__ import annotations

from typing import Any

import numpy as np

from sol_tensorflow.ops.base import NCHW, TO_NCHW, Context, Result, attr, converts

# --- reductions and softmax ---------------------------------------------------------------------


@converts("Mean", "Sum")
def _reduce(ctx: Context, op: Any) -> list[Result]:
    x, axes_t = op.inputs
    rank = len(x.shape)
    axes = tuple(sorted({int(a) % rank for a in np.atleast_1d(ctx.need_static(axes_t, "reduction axes"))}))
    keep = bool(attr(op, "keep_dims", False))
    sol_op = "mean" if op.type == "Mean" else "sum"
    if not axes:
        return [ctx.tf(x)]
    if rank == 4 and ctx.is_nchw(x):
        nchw_axes = tuple(sorted(TO_NCHW.index(a) for a in axes))
        y = ctx.emit(sol_op, [ctx.nchw(x)], axes=nchw_axes, keepdims=keep)
        if keep:
            return [NCHW(y)]
        kept = [a for a in range(4) if a not in nchw_axes]  # NCHW positions still there, in order
        tf_order = [TO_NCHW[a] for a in kept]  # their TF axis numbers
        return [ctx.transpose(y, np.argsort(tf_order).tolist())]
    return [ctx.emit(sol_op, [ctx.tf(x)], axes=axes, keepdims=keep)]


@converts("Softmax", "LogSoftmax")
def _softmax(ctx: Context, op: Any) -> list[Result]:
    x = op.inputs[0]
    sol_op = "softmax" if op.type == "Softmax" else "log_softmax"
    # TensorFlow's Softmax keeps a NaN to its own entry (the rest of the row 0); its LogSoftmax
    # makes the row NaN, sol's default.
    nan = {"nan": "element"} if sol_op == "softmax" else {}
    if len(x.shape) == 4 and ctx.is_nchw(x):
        return [NCHW(ctx.emit(sol_op, [ctx.nchw(x)], axis=1, **nan))]
    v = ctx.tf(x)
    return [ctx.emit(sol_op, [v], axis=v.type.rank - 1, **nan)]

