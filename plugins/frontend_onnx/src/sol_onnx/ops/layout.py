"""Shapes and data movement: ``Reshape``, ``Flatten``, ``Transpose``, ``Concat``, ``Squeeze`` /
``Unsqueeze``, ``Slice``, ``Split``, ``Pad``, ``Expand``, ``Gather``; and the operators whose
results are known when optimizing (``Shape``, ``Size``, ``Constant``, ``ConstantOfShape``,
``Range``): exported models compute reshape targets from ``Shape`` subgraphs, which fold to
arrays here (the importer evaluates any node whose inputs are all known)."""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import numpy_helper

from sol.plugin_api import Value
from sol_onnx.ops.base import ONNX_DTYPES, Context, Result, Unsupported, attr, axes_input, axis_of, converts


@converts("Reshape")
def reshape(ctx: Context, node: Any) -> list[Value]:
    x = ctx.value(node.input[0])
    shape = [int(d) for d in ctx.need_static(node.input[1], "the target shape").reshape(-1)]
    if not int(attr(node, "allowzero", 0)):
        shape = [x.shape[i] if d == 0 and i < x.type.rank else d for i, d in enumerate(shape)]
    return [ctx.emit("reshape", [x], shape=tuple(shape))]


@converts("Flatten")
def flatten(ctx: Context, node: Any) -> list[Value]:
    x = ctx.value(node.input[0])
    axis = int(attr(node, "axis", 1))
    axis = axis + x.type.rank if axis < 0 else axis
    if not 0 <= axis <= x.type.rank:
        raise Unsupported(f"axis {axis} for rank {x.type.rank}")
    return [ctx.emit("reshape", [x], shape=(int(np.prod(x.shape[:axis])), int(np.prod(x.shape[axis:]))))]


@converts("Transpose")
def transpose(ctx: Context, node: Any) -> list[Value]:
    x = ctx.value(node.input[0])
    perm = attr(node, "perm") or list(reversed(range(x.type.rank)))
    if list(perm) == list(range(x.type.rank)):
        return [ctx.emit("identity", [x])]
    return [ctx.emit("transpose", [x], perm=tuple(int(p) for p in perm))]


@converts("Concat")
def concat(ctx: Context, node: Any) -> list[Value]:
    values = [v for v in ctx.inputs(node)]
    rank = values[0].type.rank
    if len({v.dtype for v in values}) != 1:
        raise Unsupported("operands of different dtypes")
    axis = axis_of(int(attr(node, "axis")), rank)
    kept = [v for v in values if v.shape[axis] != 0] or values[:1]
    return [ctx.emit("concat", kept, axis=axis) if len(kept) > 1 else ctx.emit("identity", kept)]


@converts("Squeeze")
def squeeze(ctx: Context, node: Any) -> list[Value]:
    x = ctx.value(node.input[0])
    axes = axes_input(ctx, node, 1)
    if axes is None:
        drop = {i for i, d in enumerate(x.shape) if d == 1}
    else:
        drop = {axis_of(a, x.type.rank) for a in axes}
        if any(x.shape[a] != 1 for a in drop):
            raise Unsupported(f"squeezing axes {sorted(drop)} of {x.type}: not of size 1")
    return [ctx.emit("reshape", [x], shape=tuple(d for i, d in enumerate(x.shape) if i not in drop))]


@converts("Unsqueeze")
def unsqueeze(ctx: Context, node: Any) -> list[Value]:
    x = ctx.value(node.input[0])
    axes = axes_input(ctx, node, 1)
    if axes is None:
        raise Unsupported("no axes")
    rank = x.type.rank + len(axes)
    new = {axis_of(a, rank) for a in axes}
    dims = iter(x.shape)
    return [ctx.emit("reshape", [x], shape=tuple(1 if i in new else next(dims) for i in range(rank)))]


@converts("Slice")
def slice_(ctx: Context, node: Any) -> list[Value]:
    x = ctx.value(node.input[0])
    starts = [int(s) for s in ctx.need_static(node.input[1], "starts").reshape(-1)]
    ends = [int(e) for e in ctx.need_static(node.input[2], "ends").reshape(-1)]
    axes = axes_input(ctx, node, 3) or list(range(len(starts)))
    steps = [int(s) for s in ctx.need_static(node.input[4], "steps").reshape(-1)] if ctx.has(node, 4) \
        else [1] * len(starts)
    if any(s < 1 for s in steps):
        raise Unsupported(f"steps {steps} (sol slices forward only)")
    big = 2**62  # ONNX's INT_MAX/INT_MIN ends: Python's slice clamps them
    axes = [axis_of(a, x.type.rank) for a in axes]
    return [ctx.emit("slice", [x], axes=tuple(axes), starts=tuple(max(min(s, big), -big) for s in starts),
                     stops=tuple(max(min(e, big), -big) for e in ends), steps=tuple(steps))]


@converts("Split")
def split(ctx: Context, node: Any) -> list[Value]:
    x = ctx.value(node.input[0])
    axis = axis_of(int(attr(node, "axis", 0)), x.type.rank)
    size = x.shape[axis]
    if ctx.has(node, 1):
        sizes = [int(s) for s in ctx.need_static(node.input[1], "split sizes").reshape(-1)]
    elif attr(node, "split") is not None:
        sizes = [int(s) for s in attr(node, "split")]
    else:
        n = int(attr(node, "num_outputs", len(node.output)))
        chunk = -(-size // n)
        sizes = [min(chunk, size - i * chunk) for i in range(n)]
    if sum(sizes) != size or len(sizes) != len(node.output) or min(sizes) < 0:
        raise Unsupported(f"split sizes {sizes} of {size} into {len(node.output)} outputs")
    outs, start = [], 0
    for s in sizes:
        outs.append(ctx.emit("slice", [x], axes=(axis,), starts=(start,), stops=(start + s,), steps=(1,)))
        start += s
    return outs


@converts("Pad")
def pad(ctx: Context, node: Any) -> list[Value]:
    x = ctx.value(node.input[0])
    mode = attr(node, "mode", "constant")
    if mode != "constant":
        raise Unsupported(f"mode={mode!r}")
    rank = x.type.rank
    pads = [int(p) for p in (ctx.need_static(node.input[1], "pads").reshape(-1) if ctx.has(node, 1)
                             else attr(node, "pads"))]
    value = 0.0
    if ctx.has(node, 2):
        value = float(ctx.need_static(node.input[2], "the padding value").reshape(()))
    elif attr(node, "value") is not None:
        value = float(attr(node, "value"))
    axes = axes_input(ctx, node, 3) if ctx.opset >= 18 else None
    axes = [axis_of(a, rank) for a in axes] if axes else list(range(rank))
    n = len(axes)
    pairs = [(0, 0)] * rank
    for i, a in enumerate(axes):
        pairs[a] = (pads[i], pads[i + n])
    if any(lo < 0 or hi < 0 for lo, hi in pairs):  # negative pads crop: a slice first
        cut = [a for a in range(rank) if min(pairs[a]) < 0]
        x = ctx.emit("slice", [x], axes=tuple(cut), starts=tuple(-min(pairs[a][0], 0) for a in cut),
                     stops=tuple(x.shape[a] + min(pairs[a][1], 0) for a in cut), steps=(1,) * len(cut))
        pairs = [(max(lo, 0), max(hi, 0)) for lo, hi in pairs]
    if not any(lo or hi for lo, hi in pairs):
        return [ctx.emit("identity", [x])]
    return [ctx.emit("pad", [x], pads=tuple(pairs), value=value)]


@converts("Expand")
def expand(ctx: Context, node: Any) -> list[Value]:
    x = ctx.value(node.input[0])
    shape = [int(d) for d in ctx.need_static(node.input[1], "the target shape").reshape(-1)]
    try:
        out = tuple(np.broadcast_shapes(x.shape, tuple(shape)))
    except ValueError as exc:
        raise Unsupported(str(exc)) from None
    if out == x.shape:
        return [ctx.emit("identity", [x])]
    return [ctx.emit("broadcast_to", [ctx.reshape(x, (1,) * (len(out) - x.type.rank) + x.shape)], shape=out)]


@converts("Gather")
def gather(ctx: Context, node: Any) -> list[Value]:
    x, indices = ctx.inputs(node)
    if indices.dtype not in ("int64", "int32"):
        raise Unsupported(f"indices of {indices.dtype}")
    axis = axis_of(int(attr(node, "axis", 0)), x.type.rank)
    return [ctx.emit("gather", [x, indices], axis=axis, wrap=True)]


@converts("GatherElements")
def gather_elements(ctx: Context, node: Any) -> list[Value]:
    """``out[..., i, ...] = x[..., indices[..., i, ...], ...]`` along ``axis``. ONNX allows negative
    indices (counting from the end); sol's op takes [0, n): negatives are wrapped first (once, at
    optimize time, for known indices). Any other index is an error at run time, as in ONNX Runtime."""
    x = ctx.value(node.input[0])
    axis = axis_of(int(attr(node, "axis", 0)), x.type.rank)
    n = x.shape[axis]
    known = ctx.static(node.input[1])
    if known is not None:
        if known.dtype.kind not in "iu":
            raise Unsupported(f"indices of {known.dtype}")
        wrapped = np.where(known < 0, known + n, known).astype(np.int64)
        return [ctx.emit("gather_elements", [x, ctx.const(wrapped)], axis=axis)]
    indices = ctx.value(node.input[1])
    if indices.dtype not in ("int64", "int32"):
        raise Unsupported(f"indices of {indices.dtype}")
    zero, size = ctx.const(0, indices.dtype), ctx.const(n, indices.dtype)
    wrapped_v = ctx.emit("where", [ctx.emit("lt", [indices, zero]), ctx.emit("add", [indices, size]), indices])
    return [ctx.emit("gather_elements", [x, wrapped_v], axis=axis)]


# --- values known when optimizing ------------------------------------------------------------


@converts("Shape")
def shape(ctx: Context, node: Any) -> list[Result]:
    known = ctx.static(node.input[0])
    dims = np.asarray(known.shape if known is not None else ctx.value(node.input[0]).shape, dtype=np.int64)
    rank = len(dims)
    start, end = int(attr(node, "start", 0)), attr(node, "end")
    start = min(max(start + rank if start < 0 else start, 0), rank)
    stop = rank if end is None else min(max(int(end) + rank if int(end) < 0 else int(end), 0), rank)
    return [dims[start:stop].copy()]


@converts("Size")
def size(ctx: Context, node: Any) -> list[Result]:
    e = ctx.entry(node.input[0])
    n = e.static.size if e.static is not None else ctx.value(node.input[0]).type.numel
    return [np.asarray(n, dtype=np.int64)]


@converts("Constant")
def constant(ctx: Context, node: Any) -> list[Result]:
    if len(node.attribute) != 1:
        raise Unsupported("a Constant without exactly one value attribute")
    a = node.attribute[0]
    if a.name == "value":
        return [numpy_helper.to_array(a.t)]
    scalars = {"value_float": np.float32, "value_floats": np.float32, "value_int": np.int64, "value_ints": np.int64}
    if a.name in scalars:
        return [np.asarray(attr(node, a.name), dtype=scalars[a.name])]
    raise Unsupported(f"a constant given as {a.name}")


@converts("ConstantOfShape")
def constant_of_shape(ctx: Context, node: Any) -> list[Result]:
    dims = [int(d) for d in ctx.need_static(node.input[0], "the shape").reshape(-1)]
    value = attr(node, "value")
    fill = numpy_helper.to_array(value).reshape(-1)[0] if value is not None else np.float32(0)
    if str(fill.dtype) not in ONNX_DTYPES.values():
        raise Unsupported(f"a {fill.dtype} fill value")
    return [np.full(dims, fill, dtype=fill.dtype)]


@converts("Range")
def range_(ctx: Context, node: Any) -> list[Result]:
    start, limit, delta = (ctx.need_static(n, "Range's bounds").reshape(()) for n in node.input[:3])
    return [np.arange(start.item(), limit.item(), delta.item()).astype(start.dtype)]


@converts("DepthToSpace", "SpaceToDepth")
def depth_space(ctx: Context, node: Any) -> list[Value]:
    """Reshape, transpose, reshape (the channels in DCR or CRD order)."""
    x = ctx.value(node.input[0])
    if x.type.rank != 4:
        raise Unsupported(f"{node.op_type} of {x.type}")
    b = int(attr(node, "blocksize"))
    n, c, h, w = x.shape
    if node.op_type == "SpaceToDepth":
        if h % b or w % b:
            raise Unsupported(f"{h}x{w} by blocks of {b}")
        t = ctx.emit("reshape", [x], shape=(n, c, h // b, b, w // b, b))
        crd = attr(node, "mode", "DCR") == "CRD"  # channels (c, b, b) rather than (b, b, c)
        t = ctx.emit("transpose", [t], perm=(0, 1, 3, 5, 2, 4) if crd else (0, 3, 5, 1, 2, 4))
        return [ctx.emit("reshape", [t], shape=(n, c * b * b, h // b, w // b))]
    if c % (b * b):
        raise Unsupported(f"{c} channels by blocks of {b}")
    if attr(node, "mode", "DCR") == "DCR":
        t = ctx.emit("reshape", [x], shape=(n, b, b, c // (b * b), h, w))
        t = ctx.emit("transpose", [t], perm=(0, 3, 4, 1, 5, 2))
    else:
        t = ctx.emit("reshape", [x], shape=(n, c // (b * b), b, b, h, w))
        t = ctx.emit("transpose", [t], perm=(0, 1, 4, 2, 5, 3))
    return [ctx.emit("reshape", [t], shape=(n, c // (b * b), h * b, w * b))]


@converts("Resize")
def resize(ctx: Context, node: Any) -> list[Value]:
    """The 2-D resizes PyTorch's exporter writes, as core's ``resize2d`` (PyTorch's source-index
    rules): ``nearest`` with ``asymmetric`` coordinates rounded down, ``linear`` with
    ``half_pixel`` or ``align_corners`` coordinates. Other modes are refused (a fallback)."""
    x = ctx.value(node.input[0])
    if x.type.rank != 4 or x.dtype not in ("float32", "float64"):
        raise Unsupported(f"Resize of {x.type} (sol resizes N, C, H, W images)")
    mode = attr(node, "mode", "nearest")
    coords = attr(node, "coordinate_transformation_mode", "half_pixel")
    if mode == "nearest" and coords == "asymmetric" and attr(node, "nearest_mode", "round_prefer_floor") == "floor":
        kind, align = "nearest", False
    elif mode == "linear" and coords in ("half_pixel", "pytorch_half_pixel", "align_corners"):
        kind, align = "bilinear", coords == "align_corners"
    else:
        raise Unsupported(f"mode={mode!r} with coordinate_transformation_mode={coords!r}")
    if int(attr(node, "antialias", 0)) or attr(node, "axes") is not None or \
            attr(node, "keep_aspect_ratio_policy", "stretch") != "stretch":
        raise Unsupported("antialias / axes / keep_aspect_ratio_policy")
    scales = ctx.need_static(node.input[2], "scales").reshape(-1) if ctx.has(node, 2) else np.zeros(0)
    sizes = ctx.need_static(node.input[3], "sizes").reshape(-1) if ctx.has(node, 3) else np.zeros(0)
    if sizes.size == 4:
        size = (int(sizes[2]), int(sizes[3]))
        given: tuple[float, float] | None = None
        if tuple(int(s) for s in sizes[:2]) != x.shape[:2]:
            raise Unsupported("resizing batch or channels")
    elif scales.size == 4:
        if float(scales[0]) != 1.0 or float(scales[1]) != 1.0:
            raise Unsupported("scaling batch or channels")
        given = (float(scales[2]), float(scales[3]))
        size = (int(np.floor(x.shape[2] * given[0])), int(np.floor(x.shape[3] * given[1])))
    else:
        raise Unsupported("neither 4 scales nor 4 sizes")
    if coords == "pytorch_half_pixel" and min(size) == 1:
        raise Unsupported("pytorch_half_pixel to a size of 1")
    return [ctx.emit("resize2d", [x], size=size, mode=kind, align_corners=align,
                     scales=None if align or given is None else given)]
