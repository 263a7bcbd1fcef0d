"""Pooling ATen converters (2-D max, average and adaptive average pooling over NCHW)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sol.plugin_api import Value
from sol_pytorch.aten.base import Args, Emitter, Unsupported, _tensor, converts, pair, symmetric

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
def _max_pool_with_indices(em: Emitter, a: Args) -> tuple[Value, None]:
    return _max_pool(em, a), None  # indices: only for max_unpool / training


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
converts("aten.adaptive_max_pool2d.default")(_adaptive("max", 2))
converts("aten.adaptive_max_pool3d.default")(_adaptive("max", 3))
