"""Data-movement TensorFlow converters: reshapes, transposes, concatenation and stacking, padding,
strided slices and tiling."""

from __future__ import annotations

from typing import Any

from sol_tensorflow.ops.base import NCHW, TO_NCHW, Context, Result, Unsupported, attr, converts, out_type

# --- layout ---------------------------------------------------------------------------------


@converts("Reshape", "Squeeze", "ExpandDims")
def _reshape(ctx: Context, op: Any) -> list[Result]:
    return [ctx.reshape(ctx.tf(op.inputs[0]), out_type(op).shape)]


@converts("Transpose")
def _transpose(ctx: Context, op: Any) -> list[Result]:
    x, perm_t = op.inputs
    perm = tuple(int(p) for p in ctx.need_static(perm_t, "transpose permutation"))
    if len(perm) == 4 and ctx.is_nchw(x):
        if perm == TO_NCHW:
            return [ctx.nchw(x)]
        return [ctx.transpose(ctx.nchw(x), [TO_NCHW[p] for p in perm])]
    return [ctx.transpose(ctx.tf(x), perm)]


@converts("ConcatV2")
def _concat(ctx: Context, op: Any) -> list[Result]:
    *xs, axis_t = op.inputs
    rank = len(op.outputs[0].shape)
    axis = int(ctx.need_static(axis_t, "concat axis")) % rank
    if rank == 4 and any(ctx.is_nchw(t) for t in xs):
        return [NCHW(ctx.emit("concat", [ctx.nchw(t) for t in xs], axis=TO_NCHW.index(axis)))]
    return [ctx.emit("concat", [ctx.tf(t) for t in xs], axis=axis)]


@converts("Pack")
def _pack(ctx: Context, op: Any) -> list[Result]:
    axis = int(attr(op, "axis", 0))
    rank = len(op.outputs[0].shape)
    axis %= rank
    parts = []
    for t in op.inputs:
        v = ctx.tf(t)
        parts.append(ctx.reshape(v, v.shape[:axis] + (1,) + v.shape[axis:]))
    return [ctx.emit("concat", parts, axis=axis)]


@converts("Pad", "PadV2")
def _pad(ctx: Context, op: Any) -> list[Result]:
    x, pads_t = op.inputs[:2]
    value = 0.0
    if op.type == "PadV2":
        value = float(ctx.need_static(op.inputs[2], "pad value"))
    pads = [tuple(int(p) for p in row) for row in ctx.need_static(pads_t, "paddings")]
    if len(pads) == 4 and ctx.is_nchw(x):
        return [NCHW(ctx.emit("pad", [ctx.nchw(x)], pads=tuple(pads[a] for a in TO_NCHW), value=value))]
    return [ctx.emit("pad", [ctx.tf(x)], pads=tuple(pads), value=value)]


@converts("StridedSlice")
def _strided_slice(ctx: Context, op: Any) -> list[Result]:
    x, begin_t, end_t, strides_t = op.inputs
    begin = [int(v) for v in ctx.need_static(begin_t, "slice begin")]
    end = [int(v) for v in ctx.need_static(end_t, "slice end")]
    strides = [int(v) for v in ctx.need_static(strides_t, "slice strides")]
    if attr(op, "ellipsis_mask", 0) or attr(op, "new_axis_mask", 0):
        raise Unsupported("strided slice with an ellipsis or a new axis")
    bm, em, sm = attr(op, "begin_mask", 0), attr(op, "end_mask", 0), attr(op, "shrink_axis_mask", 0)
    v = ctx.tf(x)
    axes, starts, stops, steps = [], [], [], []
    for i, (b, e, s) in enumerate(zip(begin, end, strides)):
        if s <= 0:
            raise Unsupported("strided slice with a negative step")
        dim = v.shape[i]
        b = 0 if bm >> i & 1 else b
        e = dim if em >> i & 1 else e
        if sm >> i & 1:
            b = b % dim if dim else 0
            e, s = b + 1, 1
        if (b, e, s) != (0, dim, 1):
            axes.append(i)
            starts.append(b)
            stops.append(e)
            steps.append(s)
    if axes:
        v = ctx.emit("slice", [v], axes=tuple(axes), starts=tuple(starts), stops=tuple(stops), steps=tuple(steps))
    return [ctx.reshape(v, out_type(op).shape)]


# --- tiling (Keras' nearest UpSampling2D repeats rows and columns with Tile) -------------------


@converts("Tile")
def _tile(ctx: Context, op: Any) -> list[Result]:
    """Each axis repeated ``m`` times is the concatenation of ``m`` copies along it."""
    x, multiples_t = op.inputs
    multiples = [int(m) for m in ctx.need_static(multiples_t, "tile multiples")]
    v = ctx.tf(x)
    for axis, m in enumerate(multiples):
        if m == 0:
            raise Unsupported("tiling to an empty tensor")
        if m > 1:
            v = ctx.emit("concat", [v] * m, axis=axis)
    return [v]

