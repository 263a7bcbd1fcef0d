"""Pooling ATen converters (2-D max, average and adaptive average pooling over NCHW)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sol.plugin_api import Value
from sol_pytorch.aten.base import Args, Emitter, Unsupported, _tensor, converts, pair, symmetric, tensor_type

# --- windows: pooling -------------------------------------------------------------------------


def _as_batched(em: Emitter, x: Value) -> Value:
    """Unbatched (C, H, W) input as (1, C, H, W): sol's window ops take NCHW."""
    if x.type.rank == 3:
        return em.reshape(x, (1,) + x.shape)
    if x.type.rank != 4:
        raise Unsupported(f"2-D pooling of a rank-{x.type.rank} tensor")
    return x


def _pool_attrs(a: Args) -> dict[str, Any]:
    kernel = pair(a["kernel_size"], "kernel_size")
    stride = pair(a["stride"], "stride") if a.get("stride") else kernel
    return {"kernel": kernel, "stride": stride, "padding": symmetric(pair(a["padding"], "padding")),
            "ceil_mode": bool(a["ceil_mode"])}


@converts("aten.max_pool2d.default")
def _max_pool(em: Emitter, a: Args) -> Value:
    x = _as_batched(em, _tensor(a, "self"))
    y = em.emit("max_pool2d", [x], dilation=pair(a["dilation"], "dilation"), **_pool_attrs(a))
    return em.reshape(y, em.out.shape)


@converts("aten.max_pool2d_with_indices.default")
def _max_pool_with_indices(em: Emitter, a: Args) -> tuple[Value, Value]:
    """Values and PyTorch's indices (see :func:`_pool_indices`); unused indices are pruned."""
    x = _as_batched(em, _tensor(a, "self"))
    attrs = {"dilation": pair(a["dilation"], "dilation"), **_pool_attrs(a)}
    dt = _index_float(x, x.shape[2] * x.shape[3])
    t = _iota(em, x.shape, dt)
    y = em.emit("max_pool2d", [x], **attrs)
    idx = em.emit("max_pool2d_select", [em.cast(x, dt), t], **attrs)
    return em.reshape(y, em.out.shape), _as_indices(em, idx)


@converts("aten.avg_pool2d.default")
def _avg_pool(em: Emitter, a: Args) -> Value:
    x = _as_batched(em, _tensor(a, "self"))
    divisor = a.get("divisor_override")
    y = em.emit("avg_pool2d", [x], count_include_pad=bool(a["count_include_pad"]),
                divisor=None if divisor is None else int(divisor), **_pool_attrs(a))
    return em.reshape(y, em.out.shape)


@converts("aten.adaptive_avg_pool2d.default", "aten._adaptive_avg_pool2d.default")
def _adaptive_avg_pool(em: Emitter, a: Args) -> Value:
    x = _as_batched(em, _tensor(a, "self"))
    y = em.emit("adaptive_avg_pool2d", [x], output_size=tuple(em.out.shape[-2:]))
    return em.reshape(y, em.out.shape)


# --- adaptive pooling of any rank: one axis at a time ------------------------------------------

_ADAPTIVE_WINDOW_LIMIT = 64  # uneven windows take a slice and a reduction per output position


def _adaptive_axis(em: Emitter, x: Value, axis: int, out: int, op: str) -> Value:
    """``op`` (max or mean) over PyTorch's adaptive windows along ``axis``: output i covers
    [floor(i * n / out), ceil((i + 1) * n / out)). Even windows are one reshape and reduction;
    uneven ones one slice and reduction each, concatenated. A window's max (mean) over several
    axes is the max (mean) along one axis of those along the others: the windows form a grid and,
    along each axis, every window has the same extent across the others."""
    n = x.shape[axis]
    if out == n:
        return x
    if n % out == 0:
        k = n // out
        split = em.reshape(x, x.shape[:axis] + (out, k) + x.shape[axis + 1:])
        return em.reshape(em.emit(op, [split], axes=(axis + 1,), keepdims=False),
                          x.shape[:axis] + (out,) + x.shape[axis + 1:])
    if out > _ADAPTIVE_WINDOW_LIMIT:
        raise Unsupported(f"adaptive pooling of {n} into {out} uneven windows")
    parts = []
    for i in range(out):
        start, stop = (i * n) // out, -(-((i + 1) * n) // out)
        piece = em.emit("slice", [x], axes=(axis,), starts=(start,), stops=(stop,)) if stop - start < n else x
        parts.append(em.emit(op, [piece], axes=(axis,), keepdims=True))
    return parts[0] if len(parts) == 1 else em.emit("concat", parts, axis=axis)


def _adaptive(op: str, dims: int) -> Any:
    def convert(em: Emitter, a: Args) -> Any:
        x = _tensor(a, "self")
        t = tuple(int(d) for d in (em.val[0] if isinstance(em.val, (tuple, list)) else em.val).shape)
        if x.type.rank not in (dims + 1, dims + 2) or (x.type.numel == 0 and 0 not in t):
            raise Unsupported(f"{dims}-D adaptive pooling of {x.type}")
        if x.type.numel == 0:  # an empty batch: an empty result
            y = em.graph.add_const(np.zeros(t, dtype=x.dtype), hint="empty")
        else:
            y = x
            for axis in range(x.type.rank - dims, x.type.rank):
                y = _adaptive_axis(em, y, axis, t[axis], op)
            y = em.reshape(y, t)
        return (y, None) if op == "max" else y  # max: the indices are for max_unpool / training only

    return convert


converts("aten._adaptive_avg_pool3d.default", "aten.adaptive_avg_pool3d.default")(_adaptive("mean", 3))


# --- max pooling with PyTorch's indices ---------------------------------------------------------
# PyTorch's indices: for each output, the flat position (within its (n, c) plane) of the element
# its window picked: the first maximum in window order, the last NaN of a window holding NaN,
# the first valid element of an all -inf window; padding is never picked. Core's
# ``max_pool2d_select`` applies exactly that rule (it routes max pooling's gradient), so the
# indices are the selection of a tensor holding each element's own flat position, carried in a
# float type that holds every position exactly. A window over several axes is pooled one axis at
# a time, innermost first: the element picked in window order (d, h, w) is the one picked along
# w, then among those along h, then along d, for the first maximum and for the last NaN alike.

_EXACT_INTEGERS = {"float16": 2 ** 11, "float32": 2 ** 24, "float64": 2 ** 53}


def _index_float(x: Value, positions: int) -> str:
    """The float type the positions travel in: x's own where it holds all of them exactly."""
    if positions <= _EXACT_INTEGERS.get(x.dtype, 0):
        return x.dtype
    if positions > _EXACT_INTEGERS["float64"] or not x.dtype.startswith("float"):
        raise Unsupported(f"max pooling indices of a {x.type}")
    return "float64"


def _iota(em: Emitter, shape: tuple[int, ...], dtype: str) -> Value:
    """Each element's flat position within its (n, c) plane, broadcast to ``shape`` (N, C, ...)."""
    plane = shape[2:]
    positions = em.const(np.arange(int(np.prod(plane)), dtype=np.float64).reshape((1, 1) + plane), dtype)
    return em.emit("broadcast_to", [positions], shape=shape)


def _as_indices(em: Emitter, idx: Value) -> Value:
    want = tensor_type(em.val[1])
    return em.reshape(em.cast(idx, want.dtype), want.shape)


def _pool_axis(em: Emitter, v: Value, t: Value, axis: int, attrs: dict[str, Any]) -> tuple[Value, Value]:
    """Max pooling of ``v`` along ``axis`` alone (``attrs`` for that axis as max_pool2d's first),
    and ``t`` at the elements picked: both through a (prefix, 1, axis, suffix) view."""
    pre, n = int(np.prod(v.shape[:axis])), v.shape[axis]
    view = (pre, 1, n, int(np.prod(v.shape[axis + 1:])))
    v4, t4 = em.reshape(v, view), em.reshape(t, view)
    y = em.emit("max_pool2d", [v4], **attrs)
    idx = em.emit("max_pool2d_select", [v4, t4], **attrs)
    shape = v.shape[:axis] + (y.shape[2],) + v.shape[axis + 1:]
    return em.reshape(y, shape), em.reshape(idx, shape)


def _axis_attrs(k: int, s: int, p: int, d: int, ceil: bool) -> dict[str, Any]:
    return {"kernel": (k, 1), "stride": (s, 1), "padding": ((p, p), (0, 0)), "dilation": (d, 1), "ceil_mode": ceil}


def _adaptive_axis_indexed(em: Emitter, v: Value, t: Value, axis: int, out: int) -> tuple[Value, Value]:
    """Adaptive max pooling along ``axis`` with the picked positions: an even split is a plain
    pooling; uneven windows are gathered into rows of the longest window's length (a shorter one
    repeats its last element, which changes neither the first maximum nor the last NaN's
    position) and pooled row by row."""
    n = v.shape[axis]
    if n == out:
        return v, t
    if n % out == 0:
        return _pool_axis(em, v, t, axis, _axis_attrs(n // out, n // out, 0, 1, False))
    bounds = [((i * n) // out, -(-((i + 1) * n) // out)) for i in range(out)]
    k = max(stop - start for start, stop in bounds)
    table = np.array([[min(start + j, stop - 1) for j in range(k)] for start, stop in bounds], dtype=np.int64)
    rows = em.const(table.reshape(-1), "int64")
    vg = em.emit("gather", [v, rows], axis=axis, wrap=False)
    tg = em.emit("gather", [t, rows], axis=axis, wrap=False)
    return _pool_axis(em, vg, tg, axis, _axis_attrs(k, k, 0, 1, False))


def _empty_result(em: Emitter) -> tuple[Value, Value]:
    """An empty batch: empty values and indices, as PyTorch returns them."""
    vals = [tensor_type(v) for v in em.val]
    return tuple(em.graph.add_const(np.zeros(t.shape, dtype=t.dtype), hint="empty") for t in vals)  # type: ignore[return-value]


def _adaptive_max(dims: int) -> Any:
    def convert(em: Emitter, a: Args) -> tuple[Value, Value]:
        x = _tensor(a, "self")
        if x.type.rank not in (dims + 1, dims + 2):
            raise Unsupported(f"{dims}-D adaptive max pooling of {x.type}")
        if x.type.numel == 0:
            return _empty_result(em)
        values = _adaptive("max", dims)(em, a)[0]
        x = em.reshape(x, (1,) * (dims + 2 - x.type.rank) + x.shape)
        dt = _index_float(x, int(np.prod(x.shape[2:])))
        v, t = em.cast(x, dt), _iota(em, x.shape, dt)
        out = tensor_type(em.val[1]).shape[-dims:]
        for axis in range(x.type.rank - 1, 1, -1):
            v, t = _adaptive_axis_indexed(em, v, t, axis, out[axis - 2])
        return values, _as_indices(em, t)

    return convert


converts("aten.adaptive_max_pool2d.default")(_adaptive_max(2))
converts("aten.adaptive_max_pool3d.default")(_adaptive_max(3))


def _triple(v: Any, name: str) -> tuple[int, int, int]:
    items = [int(v)] if isinstance(v, int) else [int(x) for x in v]
    if len(items) == 1:
        items *= 3
    if len(items) != 3:
        raise Unsupported(f"{name} {items} is not 3-D")
    return items[0], items[1], items[2]


@converts("aten.max_pool3d_with_indices.default")
def _max_pool3d(em: Emitter, a: Args) -> tuple[Value, Value]:
    """3-D max pooling: a 2-D pooling of every depth slice, then a pooling along depth (the
    maximum over a box is the maximum along d of the maxima over (h, w)); the indices follow
    the same steps (see above)."""
    x = _tensor(a, "self")
    if x.type.rank not in (4, 5):
        raise Unsupported(f"3-D max pooling of {x.type}")
    if x.type.numel == 0:
        return _empty_result(em)
    x = em.reshape(x, (1,) * (5 - x.type.rank) + x.shape)
    k, d = _triple(a["kernel_size"], "kernel_size"), _triple(a["dilation"], "dilation")
    s = _triple(a["stride"], "stride") if a.get("stride") else k
    p, ceil = _triple(a["padding"], "padding"), bool(a["ceil_mode"])
    n, c, depth, h, w = x.shape
    dt = _index_float(x, depth * h * w)
    plane = em.reshape(em.cast(x, dt), (n, c * depth, h, w))
    attrs2 = {"kernel": k[1:], "stride": s[1:], "padding": symmetric(p[1:]), "dilation": d[1:], "ceil_mode": ceil}
    v = em.emit("max_pool2d", [plane], **attrs2)
    t = em.emit("max_pool2d_select", [plane, _iota(em, plane.shape, dt)], **attrs2)
    oh, ow = v.shape[2:]
    v, t = em.reshape(v, (n, c, depth, oh * ow)), em.reshape(t, (n, c, depth, oh * ow))
    offsets = em.const(np.arange(depth, dtype=np.float64).reshape(1, 1, depth, 1) * (h * w), dt)
    t = em.emit("add", [t, offsets])
    v, t = _pool_axis(em, v, t, 2, _axis_attrs(k[0], s[0], p[0], d[0], ceil))
    return em.reshape(em.cast(v, x.dtype), em.out.shape), _as_indices(em, t)


def _avg_extent(size: int, out: int, k: int, s: int, p: int, include_pad: bool) -> np.ndarray:
    """How many elements of each window along one axis count: PyTorch's avg_pool3d rule (the
    padded input bounds the window; without count_include_pad only the input counts)."""
    start = np.arange(out) * s - p
    stop = np.minimum(start + k, size + p)
    if include_pad:
        return stop - start
    return np.minimum(stop, size) - np.maximum(start, 0)


@converts("aten.avg_pool3d.default")
def _avg_pool3d(em: Emitter, a: Args) -> Value:
    """3-D average pooling: the sum over a box is a sum along each axis in turn (an average
    pooling with divisor 1 per axis), divided by PyTorch's divisor of each window (the divisor
    override, or the product of the counted extents along the axes)."""
    x = _tensor(a, "self")
    if x.type.rank not in (4, 5) or not x.dtype.startswith("float"):
        raise Unsupported(f"3-D average pooling of {x.type}")
    want = em.out
    if x.type.numel == 0:
        return em.graph.add_const(np.zeros(want.shape, dtype=want.dtype), hint="empty")
    k = _triple(a["kernel_size"], "kernel_size")
    s = _triple(a["stride"], "stride") if a.get("stride") else k
    p, ceil = _triple(a["padding"], "padding"), bool(a["ceil_mode"])
    y = em.reshape(x, (1,) * (5 - x.type.rank) + x.shape)
    sizes = y.shape[2:]
    for axis in (4, 3, 2):
        i = axis - 2
        pre, n = int(np.prod(y.shape[:axis])), y.shape[axis]
        view = em.reshape(y, (pre, 1, n, int(np.prod(y.shape[axis + 1:]))))
        summed = em.emit("avg_pool2d", [view], kernel=(k[i], 1), stride=(s[i], 1), padding=((p[i], p[i]), (0, 0)),
                         ceil_mode=ceil, count_include_pad=True, divisor=1)
        y = em.reshape(summed, y.shape[:axis] + (summed.shape[2],) + y.shape[axis + 1:])
    divisor = a.get("divisor_override")
    if divisor is not None:
        counts = np.full((1, 1, 1), float(divisor))
    else:
        include = bool(a["count_include_pad"])
        e = [_avg_extent(sizes[i], y.shape[2 + i], k[i], s[i], p[i], include).astype(np.float64) for i in range(3)]
        counts = e[0][:, None, None] * e[1][None, :, None] * e[2][None, None, :]
    y = em.emit("div", [y, em.const(counts, y.dtype)])
    return em.reshape(y, want.shape)


@converts("aten.max_pool2d_with_indices_backward.default")
def _max_pool_backward(em: Emitter, a: Args) -> Value:
    """The gradient max pooling routes through ``indices`` (as given, not recomputed): each
    output gradient added at its index within its plane. An index outside the plane (PyTorch
    does not check) adds nowhere: it is sent to one spare element dropped afterwards."""
    g, idx = _tensor(a, "grad_output"), _tensor(a, "indices")
    x = em.out
    if g.shape != idx.shape or g.type.rank not in (3, 4) or x.rank != g.type.rank:
        raise Unsupported(f"max_pool2d_with_indices_backward of {g.type} with indices {idx.type}")
    plane = x.shape[-1] * x.shape[-2]
    planes = int(np.prod(x.shape[:-2]))
    size = planes * plane
    per_plane = int(np.prod(g.shape[-2:]))
    idx = em.cast(idx, "int64")
    inside = em.emit("logical_and", [em.emit("ge", [idx, em.const(0, "int64")]),
                                     em.emit("lt", [idx, em.const(plane, "int64")])])
    base = em.const(np.repeat(np.arange(planes, dtype=np.int64) * plane, per_plane).reshape(idx.shape), "int64")
    flat = em.emit("where", [inside, em.emit("add", [idx, base]), em.const(size, "int64")])
    n = planes * per_plane
    grad = em.emit("gather_backward", [em.reshape(flat, (n,)), em.reshape(em.cast(g, x.dtype), (n,))],
                   axis=0, size=size + 1, wrap=False)
    grad = em.emit("slice", [grad], axes=(0,), starts=(0,), stops=(size,))
    return em.reshape(grad, x.shape)
