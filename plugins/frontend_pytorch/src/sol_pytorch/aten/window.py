"""Pooling ATen converters (2-D max, average and adaptive average pooling over NCHW)."""

from __future__ import annotations

from typing import Any

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
