"""Convolution (compute bound), dense (parameter-memory bound) and matmul."""

from __future__ import annotations

from typing import Any

import numpy as np

from sol.errors import SolError
from sol.ir import TensorType
from sol.ops._util import broadcast_shape, f64, padding2d, pair, same_dtype
from sol.ops.registry import LayerClass, OpDef


def _conv_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    return {"stride": pair(attrs["stride"]), "padding": padding2d(attrs["padding"]),
            "dilation": pair(attrs["dilation"]), "groups": int(attrs["groups"])}


def _conv_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, w = types[0], types[1]
    if x.rank != 4 or w.rank != 4:
        raise SolError(f"conv2d expects input (N, C, H, W) and weight (O, C/groups, kh, kw), got {x} and {w}")
    g = a["groups"]
    if x.shape[1] != w.shape[1] * g or w.shape[0] % g:
        raise SolError(f"conv2d with groups={g}: input channels {x.shape[1]} and weight {w.shape} disagree")
    if len(types) == 3 and types[2].shape != (w.shape[0],):
        raise SolError(f"conv2d bias must have shape ({w.shape[0]},), got {types[2]}")
    out = []
    for i in range(2):
        size = x.shape[2 + i] + sum(a["padding"][i])
        eff = a["dilation"][i] * (w.shape[2 + i] - 1) + 1
        if size < eff:
            raise SolError(f"conv2d kernel {w.shape[2:]} (dilation {a['dilation']}) "
                           f"larger than padded input {x.shape[2:]}")
        out.append((size - eff) // a["stride"][i] + 1)
    return [TensorType((x.shape[0], w.shape[0], out[0], out[1]), same_dtype(types))]


def tap_range(size: int, out: int, stride: int, offset: int) -> tuple[int, int, int]:
    """Outputs o in [lo, hi) whose input index o * stride + offset lies inside [0, size), and the
    first such input index."""
    lo = 0
    while lo < out and lo * stride + offset < 0:
        lo += 1
    hi = lo
    while hi < out and hi * stride + offset < size:
        hi += 1
    return lo, hi, lo * stride + offset


def _conv_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    """Tap by tap over the input positions that exist: padding contributes nothing, not 0 * w
    (which is NaN for an infinite or NaN weight; PyTorch's and oneDNN's convolutions skip it)."""
    x, w = f64(xs[0]), f64(xs[1])
    (pt, _), (pl, _) = a["padding"]
    sh, sw = a["stride"]
    dh, dw = a["dilation"]
    g = a["groups"]
    n, c, h, wd = x.shape
    o, cg, kh, kw = w.shape
    oh, ow = _conv_infer([TensorType(x.shape), TensorType(w.shape)], a)[0].shape[2:]
    xg = x.reshape(n, g, cg, h, wd)
    wg = w.reshape(g, o // g, cg, kh, kw)
    y = np.zeros((n, g, o // g, oh, ow))
    for i in range(kh):
        r0, r1, h0 = tap_range(h, oh, sh, i * dh - pt)
        for j in range(kw):
            c0, c1, w0 = tap_range(wd, ow, sw, j * dw - pl)
            if r0 >= r1 or c0 >= c1:
                continue
            part = xg[:, :, :, h0:h0 + (r1 - r0 - 1) * sh + 1:sh, w0:w0 + (c1 - c0 - 1) * sw + 1:sw]
            y[:, :, :, r0:r1, c0:c1] += np.einsum("ngchw,goc->ngohw", part, wg[:, :, :, i, j], optimize=True)
    y = y.reshape(n, o, oh, ow)
    if len(xs) == 3:
        y = y + f64(xs[2]).reshape(1, -1, 1, 1)
    return [y.astype(xs[0].dtype)]


def _conv_nhwc_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    return {**_conv_normalize(attrs, types), "input_nhwc": bool(attrs["input_nhwc"]),
            "output_nhwc": bool(attrs["output_nhwc"])}


def _conv_nhwc_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = types[0]
    if x.rank != 4:
        raise SolError(f"conv2d_nhwc expects a 4-D input, got {x}")
    (y,) = _conv_infer([_to_nchw(x) if a["input_nhwc"] else x, *types[1:]], a)
    return [_to_nhwc(y) if a["output_nhwc"] else y]


def _to_nchw(t: TensorType) -> TensorType:
    n, h, w, c = t.shape
    return TensorType((n, c, h, w), t.dtype)


def _to_nhwc(t: TensorType) -> TensorType:
    n, c, h, w = t.shape
    return TensorType((n, h, w, c), t.dtype)


def _conv_nhwc_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x = np.transpose(xs[0], (0, 3, 1, 2)) if a["input_nhwc"] else xs[0]
    (y,) = _conv_ref([x, *xs[1:]], a)
    return [np.ascontiguousarray(np.transpose(y, (0, 2, 3, 1))) if a["output_nhwc"] else y]


def _dense_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, w = types[0], types[1]
    if w.rank != 2 or x.rank < 1 or x.shape[-1] != w.shape[1]:
        raise SolError(f"dense expects input (..., {w.shape[1] if w.rank == 2 else 'in'}) and weight (out, in), "
                       f"got {x} and {w}")
    if len(types) == 3 and types[2].shape != (w.shape[0],):
        raise SolError(f"dense bias must have shape ({w.shape[0]},), got {types[2]}")
    return [TensorType(x.shape[:-1] + (w.shape[0],), same_dtype(types))]


def _dense_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    y = f64(xs[0]) @ f64(xs[1]).T
    if len(xs) == 3:
        y = y + f64(xs[2])
    return [y.astype(xs[0].dtype)]


def _matmul_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, y = types
    if x.rank < 2 or y.rank < 2 or x.shape[-1] != y.shape[-2]:
        raise SolError(f"matmul expects (..., m, k) @ (..., k, n), got {x} and {y}")
    batch = broadcast_shape(x.shape[:-2], y.shape[:-2])
    return [TensorType(batch + (x.shape[-2], y.shape[-1]), same_dtype(types))]


def ops() -> list[OpDef]:
    # Gradient rules and FLOP counts are imported here, when the registry is
    # filled, not at import time (sol.ops.registry explains why).
    from sol import workload
    from sol.autodiff.rules import linalg as grad
    from sol.lowering import compute

    # Not fusible (c_loops None): a device's library backend claims these, or the generator's
    # reference loops (c_reference) where a device registers them (sol.lowering.reference_loops).
    out = [
        OpDef("conv2d", LayerClass.COMPUTE_BOUND, _conv_infer, _conv_ref, (2, 3),
              {"stride": 1, "padding": 0, "dilation": 1, "groups": 1}, normalize=_conv_normalize,
              gradient=grad.conv2d, flops=workload.conv2d, c_reference=compute.conv),
        # conv2d with channels-last activations: x (N, H, W, C) if input_nhwc (else NCHW), y
        # (N, OH, OW, O) if output_nhwc (else NCHW); the weight (O, C/g, kh, kw) and the other
        # attributes as conv2d's. No frontend makes it: the planner does (sol.planner.layout),
        # for a device whose convolution library prefers that layout.
        OpDef("conv2d_nhwc", LayerClass.COMPUTE_BOUND, _conv_nhwc_infer, _conv_nhwc_ref, (2, 3),
              {"stride": 1, "padding": 0, "dilation": 1, "groups": 1, "input_nhwc": True, "output_nhwc": True},
              normalize=_conv_nhwc_normalize, flops=workload.conv2d_nhwc, gradient=grad.conv2d_nhwc,
              doc="conv2d on channels-last (N, H, W, C) input and/or output: made by the planner's layout rewrite"),
        OpDef("dense", LayerClass.PARAM_BOUND, _dense_infer, _dense_ref, (2, 3), gradient=grad.dense,
              flops=workload.dense, c_reference=compute.dense),
        OpDef("matmul", LayerClass.COMPUTE_BOUND, _matmul_infer,
              lambda xs, a: [np.matmul(f64(xs[0]), f64(xs[1])).astype(xs[0].dtype)], (2, 2), gradient=grad.matmul,
              flops=workload.matmul, c_reference=compute.matmul),
    ]
    # Sums of products of finite values are finite, overflow aside (sol.passes.finite).
    for o in out:
        o.preserves_finite = True
    return out
