"""2-D window ops over NCHW (I/O-memory bound: each output reads a small window per channel)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sol.errors import SolError
from sol.ir import Node, TensorType
from sol.ops._util import expect_rank, f64, padding2d, pair
from sol.ops.registry import REQUIRED, LayerClass, OpDef


def _core2(node: Node) -> int:
    return 2


def pool_out(size: int, k: int, s: int, pad: tuple[int, int], d: int, ceil: bool) -> int:
    """PyTorch's output-size rule; with ceil_mode the last window must start inside the input
    or its left padding."""
    eff = d * (k - 1) + 1
    span = size + pad[0] + pad[1] - eff
    out = (math.ceil(span / s) if ceil else span // s) + 1
    if ceil and (out - 1) * s >= size + pad[0]:
        out -= 1
    if out < 1:
        raise SolError(f"pooling window {k} (dilation {d}) does not fit input size {size} with padding {pad}")
    return out


# How max pooling treats NaN, where frameworks differ (set by each frontend's converter):
# "propagate" (PyTorch): a NaN in the window makes the output NaN; "ignore" (TensorFlow's CPU
# kernel): NaN is skipped and the maximum starts from the lowest finite value, so a window of
# only NaN and -inf gives that value (-3.4028235e38 for float32), as TensorFlow computes it.
MAX_POOL_NAN = ("propagate", "ignore")


def _normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    out = dict(attrs)
    if out.get("nan", "propagate") not in MAX_POOL_NAN:
        raise SolError(f"max_pool2d nan must be one of {MAX_POOL_NAN}, got {out['nan']!r}")
    out["kernel"] = pair(attrs["kernel"])
    out["stride"] = pair(attrs["stride"]) if attrs.get("stride") not in (None, ()) else out["kernel"]
    out["padding"] = padding2d(attrs["padding"])
    if "dilation" in attrs:
        out["dilation"] = pair(attrs["dilation"])
    out["ceil_mode"] = bool(attrs["ceil_mode"])
    for (lo, hi), k in zip(out["padding"], out["kernel"]):
        if max(lo, hi) * 2 > k:
            raise SolError(f"padding {out['padding']} must be at most half the kernel {out['kernel']}")
    return out


def _pool_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = types[0]
    expect_rank(x, 4, "2-D pooling input (N, C, H, W)")
    d = a.get("dilation", (1, 1))
    oh = pool_out(x.shape[2], a["kernel"][0], a["stride"][0], a["padding"][0], d[0], a["ceil_mode"])
    ow = pool_out(x.shape[3], a["kernel"][1], a["stride"][1], a["padding"][1], d[1], a["ceil_mode"])
    return [TensorType((x.shape[0], x.shape[1], oh, ow), x.dtype)]


def _windows(x: np.ndarray, a: dict[str, Any], fill: float, out_hw: tuple[int, int]) -> np.ndarray:
    """(N, C, OH, OW, KH, KW) view of the padded input; padding beyond the input uses `fill`."""
    (pt, pb), (pl, pr) = a["padding"]
    kh, kw = a["kernel"]
    sh, sw = a["stride"]
    dh, dw = a.get("dilation", (1, 1))
    oh, ow = out_hw
    need_h = (oh - 1) * sh + dh * (kh - 1) + 1
    need_w = (ow - 1) * sw + dw * (kw - 1) + 1
    n, c, h, w = x.shape
    xp = np.full((n, c, max(need_h, h + pt), max(need_w, w + pl)), fill, dtype=x.dtype)
    xp[:, :, pt:pt + h, pl:pl + w] = x
    s = xp.strides
    return np.lib.stride_tricks.as_strided(
        xp, (n, c, oh, ow, kh, kw), (s[0], s[1], s[2] * sh, s[3] * sw, s[2] * dh, s[3] * dw), writeable=False)


def _max_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x = f64(xs[0])
    oh, ow = _pool_infer([TensorType(x.shape)], a)[0].shape[2:]
    if a.get("nan", "propagate") == "ignore":
        lowest = float(np.finfo(xs[0].dtype).min)
        windows = _windows(x, a, np.nan, (oh, ow))  # padding is skipped like NaN
        return [np.fmax.reduce(windows, axis=(4, 5), initial=lowest).astype(xs[0].dtype)]
    return [_windows(x, a, -np.inf, (oh, ow)).max(axis=(4, 5)).astype(xs[0].dtype)]


def _avg_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x = f64(xs[0])
    n, c, h, w = x.shape
    oh, ow = _pool_infer([TensorType(x.shape)], a)[0].shape[2:]
    total = _windows(x, a, 0.0, (oh, ow)).sum(axis=(4, 5))
    if a["divisor"] is not None:
        return [(total / a["divisor"]).astype(xs[0].dtype)]
    # Count per window: padded positions count only with count_include_pad, and never the part
    # of a ceil_mode window hanging beyond the padded input.
    (pt, pb), (pl, pr) = a["padding"]
    padded_region = np.zeros((1, 1, h + pt + pb, w + pl + pr))
    if a["count_include_pad"]:
        padded_region[...] = 1.0
    else:
        padded_region[:, :, pt:pt + h, pl:pl + w] = 1.0
    # Reuse the window view on the indicator, with zero padding already applied.
    a2 = dict(a, padding=((0, 0), (0, 0)))
    counts = _windows(padded_region, a2, 0.0, (oh, ow)).sum(axis=(4, 5))
    return [(total / counts).astype(xs[0].dtype)]


def _nchw(t: TensorType) -> TensorType:
    n, h, w, c = t.shape
    return TensorType((n, c, h, w), t.dtype)


def _nhwc_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    expect_rank(types[0], 4, "channels-last pooling input (N, H, W, C)")
    (y,) = _pool_infer([_nchw(types[0])], a)
    n, c, oh, ow = y.shape
    return [TensorType((n, oh, ow, c), y.dtype)]


def _nhwc_ref(ref: Any) -> Any:
    """The NCHW pooling's reference on the transposed input, its result transposed back."""
    def run(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
        (y,) = ref([np.transpose(xs[0], (0, 3, 1, 2))], a)
        return [np.ascontiguousarray(np.transpose(y, (0, 2, 3, 1)))]
    return run


def _adaptive_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = types[0]
    expect_rank(x, 4, "adaptive pooling input (N, C, H, W)")
    return [TensorType(x.shape[:2] + a["output_size"], x.dtype)]


def adaptive_bounds(size: int, out: int) -> list[tuple[int, int]]:
    """PyTorch's rule: window i covers [floor(i*size/out), ceil((i+1)*size/out))."""
    return [((i * size) // out, -((-(i + 1) * size) // out)) for i in range(out)]


def _adaptive_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x = f64(xs[0])
    oh, ow = a["output_size"]
    out = np.empty(x.shape[:2] + (oh, ow))
    for i, (h0, h1) in enumerate(adaptive_bounds(x.shape[2], oh)):
        for j, (w0, w1) in enumerate(adaptive_bounds(x.shape[3], ow)):
            out[:, :, i, j] = x[:, :, h0:h1, w0:w1].mean(axis=(2, 3))
    return [out.astype(xs[0].dtype)]


def _adaptive_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    size = pair(attrs["output_size"])
    if min(size) < 1:
        raise SolError(f"adaptive pooling output_size must be positive, got {size}")
    return {"output_size": size}


def ops() -> list[OpDef]:
    # Gradient rules, loop lowerings and FLOP counts are imported here, when the registry is
    # filled, not at import time (sol.ops.registry explains why).
    from sol import workload
    from sol.autodiff.rules import window as grad
    from sol.lowering import loops

    pool = {"kernel": REQUIRED, "stride": None, "padding": 0, "ceil_mode": False}
    out = [
        OpDef("max_pool2d", LayerClass.IO_BOUND, _pool_infer, _max_ref, (1, 1),
              {**pool, "dilation": 1, "nan": "propagate"}, normalize=_normalize, core_dims=_core2,
              gradient=grad.max_pool2d, flops=workload.window, c_loops=loops.pool),
        # max_pool2d on channels-last (N, H, W, C) tensors, made by the planner's layout rewrite
        # (sol.planner.layout) inside channels-last regions.
        OpDef("max_pool2d_nhwc", LayerClass.IO_BOUND, _nhwc_infer, _nhwc_ref(_max_ref), (1, 1),
              {**pool, "dilation": 1, "nan": "propagate"}, normalize=_normalize, core_dims=lambda n: 3,
              gradient=grad.max_pool2d_nhwc, flops=workload.window, c_loops=loops.pool_nhwc,
              doc="max_pool2d on (N, H, W, C): made by the planner's channels-last regions"),
        OpDef("avg_pool2d_nhwc", LayerClass.IO_BOUND, _nhwc_infer, _nhwc_ref(_avg_ref), (1, 1),
              {**pool, "count_include_pad": True, "divisor": None}, normalize=_normalize, core_dims=lambda n: 3,
              gradient=grad.avg_pool2d_nhwc, flops=workload.window, c_loops=loops.pool_nhwc,
              doc="avg_pool2d on (N, H, W, C): made by the planner's channels-last regions"),
        OpDef("avg_pool2d", LayerClass.IO_BOUND, _pool_infer, _avg_ref, (1, 1),
              {**pool, "count_include_pad": True, "divisor": None}, normalize=_normalize, core_dims=_core2,
              gradient=grad.avg_pool2d, flops=workload.window, c_loops=loops.pool),
        OpDef("adaptive_avg_pool2d", LayerClass.IO_BOUND, _adaptive_infer, _adaptive_ref, (1, 1),
              {"output_size": REQUIRED}, normalize=_adaptive_normalize, core_dims=_core2,
              gradient=grad.adaptive_avg_pool2d, flops=workload.per_input, c_loops=loops.pool),
    ]
    # Every window holds part of the input (pool_out); an average divides by its count or a
    # divisor, which must not be 0 (sol.passes.finite).
    for o in out:
        o.preserves_finite = True
    for name in ("avg_pool2d", "avg_pool2d_nhwc"):
        next(o for o in out if o.name == name).preserves_finite = lambda n: n.attrs["divisor"] != 0
    return out
