"""Shapes and data movement: Reshape (MXNet's special codes), Flatten, transpose, SwapAxis,
expand_dims, squeeze, Concat, slice, slice_axis, split, Pad."""

from __future__ import annotations

import math
from collections.abc import Sequence

from sol.plugin_api import Value
from sol_mxnet.ops.base import Context, MXNode, Unsupported, axis_of, converts


def mxnet_reshape(shape: Sequence[int], target: Sequence[int], reverse: bool = False) -> tuple[int, ...]:
    """The output shape of MXNet's ``Reshape(shape=target)`` on an input of ``shape``: ``0``
    copies an input dimension, ``-1`` is inferred, ``-2`` copies the remaining ones, ``-3``
    merges two, ``-4`` splits one into the next two values (one may be -1); ``reverse`` reads
    both right to left."""
    src, want = list(shape), list(target)
    if reverse:
        src, want = src[::-1], want[::-1]
        # -4's two following values are read in order; reversed they precede it: swap them back
        i = 0
        fixed: list[int] = []
        while i < len(want):
            if i + 2 < len(want) and want[i + 2] == -4:
                fixed += [-4, want[i + 1], want[i]]
                i += 3
            else:
                fixed.append(want[i])
                i += 1
        want = fixed
    out: list[int] = []
    infer = -1
    j = 0
    i = 0
    while i < len(want):
        p = want[i]
        if p == 0:
            _need(src, j, target)
            out.append(src[j])
            j += 1
        elif p == -1:
            if infer >= 0:
                raise Unsupported(f"Reshape {tuple(target)}: two -1")
            infer = len(out)
            out.append(1)
            j += 1
        elif p == -2:
            out += src[j:]
            j = len(src)
        elif p == -3:
            _need(src, j + 1, target)
            out.append(src[j] * src[j + 1])
            j += 2
        elif p == -4:
            if i + 2 >= len(want):
                raise Unsupported(f"Reshape {tuple(target)}: -4 needs two values after it")
            _need(src, j, target)
            d, d0, d1 = src[j], want[i + 1], want[i + 2]
            if d0 == -1:
                d0 = d // d1
            if d1 == -1:
                d1 = d // d0
            if d0 * d1 != d:
                raise Unsupported(f"Reshape {tuple(target)}: cannot split {d} into {d0} x {d1}")
            out += [d0, d1]
            j += 1
            i += 2
        elif p > 0:
            out.append(p)
            j += 1
        else:
            raise Unsupported(f"Reshape {tuple(target)}: code {p}")
        i += 1
    total = math.prod(shape)
    if infer >= 0:
        rest = math.prod(d for k, d in enumerate(out) if k != infer)
        if rest == 0 or total % rest:
            raise Unsupported(f"Reshape {tuple(target)} of {tuple(shape)}: cannot infer -1")
        out[infer] = total // rest
    if math.prod(out) != total:
        raise Unsupported(f"Reshape {tuple(target)} of {tuple(shape)} gives {tuple(out)}: sizes differ")
    return tuple(out[::-1] if reverse else out)


def _need(src: list[int], j: int, target: Sequence[int]) -> None:
    if j >= len(src):
        raise Unsupported(f"Reshape {tuple(target)} reads past the input's {len(src)} dimensions")


@converts("Reshape", "reshape")
def reshape(ctx: Context, node: MXNode) -> list[Value]:
    (x,) = ctx.inputs(node)
    a = node.attrs
    if a.has("target_shape") and any(a.ints("target_shape", ())):
        raise Unsupported("Reshape with the deprecated target_shape")
    shape = mxnet_reshape(x.shape, a.ints("shape", ()), a.bool("reverse", False))
    return [ctx.emit("reshape", [x], shape=shape)]


@converts("Flatten", "flatten")
def flatten(ctx: Context, node: MXNode) -> list[Value]:
    (x,) = ctx.inputs(node)
    if x.type.rank == 0:
        raise Unsupported("Flatten of a scalar")
    return [ctx.emit("reshape", [x], shape=(x.shape[0], math.prod(x.shape[1:])))]


@converts("expand_dims")
def expand_dims(ctx: Context, node: MXNode) -> list[Value]:
    (x,) = ctx.inputs(node)
    axis = axis_of(node.attrs.int("axis"), x.type.rank + 1)
    shape = list(x.shape)
    shape.insert(axis, 1)
    return [ctx.emit("reshape", [x], shape=tuple(shape))]


@converts("squeeze")
def squeeze(ctx: Context, node: MXNode) -> list[Value]:
    (x,) = ctx.inputs(node)
    axes = node.attrs.optional_ints("axis")
    drop = {i for i, d in enumerate(x.shape) if d == 1} if axes is None else \
        {axis_of(int(i or 0), x.type.rank) for i in axes}
    if any(x.shape[i] != 1 for i in drop):
        raise Unsupported(f"squeeze of axes {sorted(drop)} of shape {x.shape}")
    shape = tuple(d for i, d in enumerate(x.shape) if i not in drop) or (1,)
    return [ctx.emit("reshape", [x], shape=shape)]


@converts("transpose")
def transpose(ctx: Context, node: MXNode) -> list[Value]:
    (x,) = ctx.inputs(node)
    axes = node.attrs.ints("axes", ())
    perm = tuple(axis_of(a, x.type.rank) for a in axes) if axes else tuple(range(x.type.rank))[::-1]
    if sorted(perm) != list(range(x.type.rank)):
        raise Unsupported(f"transpose axes {axes} for rank {x.type.rank}")
    return [ctx.emit("transpose", [x], perm=perm)]


@converts("SwapAxis", "swapaxes")
def swap_axis(ctx: Context, node: MXNode) -> list[Value]:
    (x,) = ctx.inputs(node)
    d1, d2 = (axis_of(node.attrs.int(k, 0), x.type.rank) for k in ("dim1", "dim2"))
    perm = list(range(x.type.rank))
    perm[d1], perm[d2] = perm[d2], perm[d1]
    return [ctx.emit("transpose", [x], perm=tuple(perm))]


@converts("Concat", "concat")
def concat(ctx: Context, node: MXNode) -> list[Value]:
    xs = ctx.inputs(node)
    if len({x.dtype for x in xs}) != 1:
        raise Unsupported(f"{node.op} of mixed dtypes")
    axis = axis_of(node.attrs.int("dim", 1), xs[0].type.rank)
    return [ctx.emit("concat", xs, axis=axis)]


def _slice(ctx: Context, x: Value, axes: Sequence[int], starts: Sequence[int], stops: Sequence[int],
           steps: Sequence[int] | None = None) -> Value:
    return ctx.emit("slice", [x], axes=tuple(axes), starts=tuple(starts), stops=tuple(stops),
                    steps=tuple(steps) if steps is not None else None)


_BIG = 2**62  # "to the end" for a slice bound (sol's slice clamps bounds, as Python's does)


@converts("slice", "crop")
def slice_op(ctx: Context, node: MXNode) -> list[Value]:
    (x,) = ctx.inputs(node)
    begin = node.attrs.optional_ints("begin") or ()
    end = node.attrs.optional_ints("end") or ()
    step = node.attrs.optional_ints("step") or ()
    if len(begin) != len(end) or len(begin) > x.type.rank:
        raise Unsupported(f"slice begin {begin} end {end} on rank {x.type.rank}")
    axes: list[int] = []
    starts: list[int] = []
    stops: list[int] = []
    steps: list[int] = []
    for i, (b, e) in enumerate(zip(begin, end)):
        given = step[i] if i < len(step) else None
        s = 1 if given is None else given
        if s <= 0:
            raise Unsupported(f"slice step {s}")
        axes.append(i)
        starts.append(0 if b is None else b)
        stops.append(_BIG if e is None else e)
        steps.append(s)
    if not axes:
        return [ctx.emit("identity", [x])]
    return [_slice(ctx, x, axes, starts, stops, steps)]


@converts("slice_axis")
def slice_axis(ctx: Context, node: MXNode) -> list[Value]:
    (x,) = ctx.inputs(node)
    axis = axis_of(node.attrs.int("axis"), x.type.rank)
    begin = node.attrs.int("begin", 0)
    end = node.attrs.optional_ints("end")
    stop = _BIG if end is None or end[0] is None else end[0]
    return [_slice(ctx, x, [axis], [begin], [stop])]


@converts("split", "SliceChannel", "_split_v2")
def split(ctx: Context, node: MXNode) -> list[Value]:
    (x,) = ctx.inputs(node)
    a = node.attrs
    axis = axis_of(a.int("axis", 1), x.type.rank)
    size = x.shape[axis]
    if node.op == "_split_v2":
        indices = list(a.ints("indices", ()))
        sections = a.int("sections", 0)
        if sections:
            if size % sections:
                raise Unsupported(f"split of {size} into {sections} sections")
            bounds = [i * size // sections for i in range(sections)] + [size]
        else:
            bounds = indices + [size]
            if bounds[0] != 0:
                bounds = [0] + bounds
    else:
        n = a.int("num_outputs")
        if size % n:
            raise Unsupported(f"split of {size} into {n} outputs")
        bounds = [i * size // n for i in range(n + 1)]
    squeeze = a.bool("squeeze_axis", False)
    outs = []
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        y = _slice(ctx, x, [axis], [lo], [hi])
        if squeeze:
            if hi - lo != 1:
                raise Unsupported("squeeze_axis on parts longer than 1")
            y = ctx.reshape(y, tuple(d for i, d in enumerate(y.shape) if i != axis))
        outs.append(y)
    return outs


@converts("Pad", "pad")
def pad(ctx: Context, node: MXNode) -> list[Value]:
    (x,) = ctx.inputs(node)
    a = node.attrs
    mode = a.str("mode", "constant")
    if mode not in ("constant", "edge", "reflect"):
        raise Unsupported(f"Pad mode={mode!r}")
    width = a.ints("pad_width")
    if len(width) != 2 * x.type.rank:
        raise Unsupported(f"pad_width {width} for rank {x.type.rank}")
    pads = tuple((width[2 * i], width[2 * i + 1]) for i in range(x.type.rank))
    if mode == "constant":
        return [ctx.emit("pad", [x], pads=pads, value=a.float("constant_value", 0.0))]
    for axis, (lo, hi) in enumerate(pads):
        if lo or hi:
            x = _pad_copies(ctx, x, axis, lo, hi, mode)
    return [x]


_MAX_COPIED_PAD = 16  # each padded row is one slice: a wider pad is MXNet's (a fallback)


def _pad_copies(ctx: Context, x: Value, axis: int, lo: int, hi: int, mode: str) -> Value:
    """``x`` padded along ``axis`` with copies of its own rows (core's pad is constant only):
    ``edge`` repeats the first/last row, ``reflect`` mirrors around them without repeating them
    (numpy's and MXNet's ``reflect``: row ``lo`` ... 1 before, ``n-2`` ... after)."""
    n = x.shape[axis]
    if max(lo, hi) > _MAX_COPIED_PAD or (mode == "reflect" and max(lo, hi) >= n):
        raise Unsupported(f"Pad mode={mode!r} of {lo}+{hi} rows on a dimension of {n}")
    if mode == "edge":
        before, after = [0] * lo, [n - 1] * hi
    else:
        before, after = list(range(lo, 0, -1)), list(range(n - 2, n - 2 - hi, -1))
    parts = [_slice(ctx, x, [axis], [i], [i + 1]) for i in before] + [x] + \
        [_slice(ctx, x, [axis], [i], [i + 1]) for i in after]
    return ctx.emit("concat", parts, axis=axis)
