"""Spatial resampling over NCHW: transposed convolution (compute bound) and 2-D resizing
(nearest / bilinear interpolation, I/O-memory bound).

Resizing follows PyTorch's CPU kernels to the index: which source rows and columns an output
pixel reads is decided by float32 arithmetic (``scale * index`` rounded down), so a rule computed
in float64 would pick a different neighbour whenever the product lands next to an integer.
:func:`resize_table` is that rule, written once: the NumPy reference and every device's lowering
read the same tables, so no device re-derives (and possibly FMA-contracts) the index arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from sol.errors import SolError
from sol.ir import Node, TensorType
from sol.ops._util import expect_rank, f64, padding2d, pair, same_dtype
from sol.ops.registry import REQUIRED, LayerClass, OpDef

# --- transposed convolution -------------------------------------------------------------------


def _deconv_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    stride, padding, extra = pair(attrs["stride"]), padding2d(attrs["padding"]), pair(attrs["output_padding"])
    dilation, groups = pair(attrs["dilation"]), int(attrs["groups"])
    out = {"stride": stride, "padding": padding, "output_padding": extra, "dilation": dilation, "groups": groups}
    if min(stride) < 1 or min(dilation) < 1 or groups < 1:
        raise SolError(f"conv_transpose2d needs positive stride, dilation and groups, got {out}")
    if min(min(p) for p in padding) < 0 or min(extra) < 0:
        raise SolError(f"conv_transpose2d padding and output_padding must not be negative, got {out}")
    return out


def deconv_out(size: int, k: int, s: int, pad: tuple[int, int], extra: int, d: int) -> int:
    """PyTorch's rule: (size - 1) * stride - padding + dilation * (k - 1) + output_padding + 1,
    padding being the sum of both sides (sol allows them to differ)."""
    return (size - 1) * s - pad[0] - pad[1] + d * (k - 1) + extra + 1


def _deconv_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, w = types[0], types[1]
    if x.rank != 4 or w.rank != 4:
        raise SolError(f"conv_transpose2d expects input (N, C, H, W) and weight (C, O/groups, kh, kw), "
                       f"got {x} and {w}")
    g = a["groups"]
    if x.shape[1] != w.shape[0] or w.shape[0] % g:
        raise SolError(f"conv_transpose2d with groups={g}: input channels {x.shape[1]} and weight {w.shape} "
                       "disagree (the weight is (C, O/groups, kh, kw), as PyTorch stores it)")
    o = w.shape[1] * g
    if len(types) == 3 and types[2].shape != (o,):
        raise SolError(f"conv_transpose2d bias must have shape ({o},), got {types[2]}")
    size = [deconv_out(x.shape[2 + i], w.shape[2 + i], a["stride"][i], a["padding"][i], a["output_padding"][i],
                       a["dilation"][i]) for i in range(2)]
    if min(size) < 1:
        raise SolError(f"conv_transpose2d of {x} with kernel {w.shape[2:]} and padding {a['padding']} "
                       f"leaves an empty output {tuple(size)}")
    return [TensorType((x.shape[0], o, size[0], size[1]), same_dtype(types))]


def _deconv_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    """Scatter form: every input pixel adds its weighted kernel into the (uncropped) output at
    stride spacing; the padding then crops the borders (output_padding extends the end)."""
    x, w = f64(xs[0]), f64(xs[1])
    n, c, h, wd = x.shape
    _, og, kh, kw = w.shape
    g = a["groups"]
    cg = c // g
    sh, sw = a["stride"]
    dh, dw = a["dilation"]
    (pt, _), (pl, _) = a["padding"]
    oh, ow = _deconv_infer([TensorType(x.shape), TensorType(w.shape)], a)[0].shape[2:]
    full = np.zeros((n, g * og, max((h - 1) * sh + dh * (kh - 1) + 1, pt + oh),
                     max((wd - 1) * sw + dw * (kw - 1) + 1, pl + ow)))
    xg = x.reshape(n, g, cg, h, wd)
    wg = w.reshape(g, cg, og, kh, kw)
    for i in range(kh):
        for j in range(kw):
            part = np.einsum("ngchw,gco->ngohw", xg, wg[:, :, :, i, j], optimize=True).reshape(n, g * og, h, wd)
            full[:, :, i * dh: i * dh + (h - 1) * sh + 1: sh, j * dw: j * dw + (wd - 1) * sw + 1: sw] += part
    y = full[:, :, pt: pt + oh, pl: pl + ow]
    if len(xs) == 3:
        y = y + f64(xs[2]).reshape(1, -1, 1, 1)
    return [np.asarray(y, order="C").astype(xs[0].dtype)]


# --- resize -----------------------------------------------------------------------------------

RESIZE_MODES = ("nearest", "nearest_exact", "bilinear")


@dataclass(frozen=True)
class ResizeTable:
    """Output index o reads source indices ``i0[o]`` and ``i1[o]`` with weights ``l0[o]`` and
    ``l1[o]`` (float32, as PyTorch computes them); nearest modes have i1 == i0, l0 = 1, l1 = 0."""

    i0: np.ndarray
    i1: np.ndarray
    l0: np.ndarray
    l1: np.ndarray


def _source_scale(size: int, out: int, align_corners: bool, scale: float | None) -> np.float32:
    """PyTorch's area_pixel_compute_scale in float32: with align_corners the corner pixels map
    onto each other; otherwise the user's scale_factor (as 1 / scale, computed in double) when
    one was given, else the size ratio."""
    if align_corners:
        return np.float32(size - 1) / np.float32(out - 1) if out > 1 else np.float32(0)
    if scale is not None and scale > 0:
        return np.float32(1.0 / scale)
    return np.float32(size) / np.float32(out)


def resize_table(size: int, out: int, mode: str, align_corners: bool, scale: float | None) -> ResizeTable:
    """The source indices and weights of one resized axis (PyTorch's CPU kernels, float32)."""
    o = np.arange(out, dtype=np.float32)
    r = _source_scale(size, out, align_corners, scale)
    ones, zeros = np.ones(out, np.float32), np.zeros(out, np.float32)
    if mode == "nearest":
        # PyTorch's nearest_idx: a copy at 1x, a shift at 2x, else floor(scale * o) in float
        # (OpenCV's INTER_NEAREST). Only a scale_factor that disagrees with the size ratio (2.0001
        # giving exactly 2x) tells these apart, and there PyTorch's own CPU code paths differ
        # (by tensor width and memory format); sol follows nearest_idx.
        if out == size:
            i0 = np.arange(out, dtype=np.int64)
        elif out == 2 * size:
            i0 = np.arange(out, dtype=np.int64) >> 1
        else:
            i0 = np.minimum(np.floor(r * o).astype(np.int64), size - 1)
        return ResizeTable(i0, i0, ones, zeros)
    if mode == "nearest_exact":  # floor((o + 0.5) * scale): the product in double, floored as float
        src = ((np.arange(out, dtype=np.float64) + 0.5) * np.float64(r)).astype(np.float32)
        i0 = np.minimum(np.floor(src).astype(np.int64), size - 1)
        return ResizeTable(i0, i0, ones, zeros)
    # Pixel centres: (o + 0.5) * scale - 0.5 in float, clamped at 0 (align_corners: scale * o).
    src = r * o if align_corners else np.maximum(r * (o + np.float32(0.5)) - np.float32(0.5), np.float32(0))
    if out == size:  # PyTorch copies: no arithmetic at all
        i = np.arange(out, dtype=np.int64)
        return ResizeTable(i, i, ones, zeros)
    i0 = np.minimum(np.floor(src).astype(np.int64), size - 1)
    l1 = np.clip(src - i0.astype(np.float32), np.float32(0), np.float32(1)).astype(np.float32)
    i1 = i0 + (i0 < size - 1)
    return ResizeTable(i0, i1, (np.float32(1) - l1).astype(np.float32), l1)


def resize_tables(node_or_attrs: Node | dict[str, Any], in_hw: tuple[int, int]) -> tuple[ResizeTable, ResizeTable]:
    """Row and column tables of a resize2d node (or its attributes) for input size ``in_hw``."""
    a = node_or_attrs.attrs if isinstance(node_or_attrs, Node) else node_or_attrs
    scales = a["scales"] or (None, None)
    return tuple(resize_table(in_hw[i], a["size"][i], a["mode"], a["align_corners"], scales[i])  # type: ignore[return-value]
                 for i in range(2))


def _resize_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    size = pair(attrs["size"])
    if min(size) < 1:
        raise SolError(f"resize2d output size must be positive, got {size}")
    mode = str(attrs["mode"])
    if mode not in RESIZE_MODES:
        raise SolError(f"resize2d mode must be one of {', '.join(RESIZE_MODES)}, got {mode!r}")
    align = bool(attrs["align_corners"])
    if align and mode != "bilinear":
        raise SolError(f"resize2d: align_corners only applies to bilinear interpolation, not {mode!r}")
    scales = attrs["scales"]
    if scales is not None:
        if isinstance(scales, (int, float)):
            scales = (scales, scales)
        scales = tuple(None if s is None else float(s) for s in scales)
        if len(scales) != 2:
            raise SolError(f"resize2d scales must be a pair (scale_h, scale_w), got {attrs['scales']!r}")
        if all(s is None for s in scales):
            scales = None
    return {"size": size, "mode": mode, "align_corners": align, "scales": scales}


def _resize_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = types[0]
    expect_rank(x, 4, "resize2d input (N, C, H, W)")
    if x.dtype not in ("float32", "float64") and a["mode"] == "bilinear":
        raise SolError(f"bilinear resize2d needs a floating-point input, got {x}")
    return [TensorType(x.shape[:2] + a["size"], x.dtype)]


def _resize_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x = xs[0]
    rows, cols = resize_tables(a, x.shape[2:])
    if a["mode"] != "bilinear":
        return [np.asarray(x[:, :, rows.i0][:, :, :, cols.i0], order="C")]
    x = f64(x)
    lw0, lw1 = cols.l0.astype(np.float64), cols.l1.astype(np.float64)
    top = x[:, :, rows.i0][:, :, :, cols.i0] * lw0 + x[:, :, rows.i0][:, :, :, cols.i1] * lw1
    bottom = x[:, :, rows.i1][:, :, :, cols.i0] * lw0 + x[:, :, rows.i1][:, :, :, cols.i1] * lw1
    y = top * rows.l0.astype(np.float64)[:, None] + bottom * rows.l1.astype(np.float64)[:, None]
    return [y.astype(xs[0].dtype)]


# --- gradients (sol.autodiff's rule contract: (ctx, output grads) -> one grad per input) -------


def _deconv_grad(ctx: Any, grads: list[Any]) -> list[Any]:
    """conv_transpose2d is conv2d's input gradient (its adjoint), so: dx is the convolution of
    g with the same weight and geometry, dw conv2d's weight gradient with g as the convolution's
    input and x as its output gradient, db the sum of g over all but the channel axis."""
    g = grads[0]
    assert g is not None
    a = ctx.attrs
    conv = {"stride": a["stride"], "padding": a["padding"], "dilation": a["dilation"], "groups": a["groups"]}
    if any(e >= s for e, s in zip(a["output_padding"], a["stride"])):
        raise SolError(f"no gradient for conv_transpose2d with output_padding {a['output_padding']} not below the "
                       f"stride {a['stride']} (rows beyond the convolution's reach)")
    out: list[Any] = [None] * len(ctx.node.inputs)
    if ctx.need[0]:
        out[0] = ctx.op("conv2d", g, ctx.x(1), **conv)
    if ctx.need[1]:
        out[1] = ctx.op("conv2d_backward_weight", g, ctx.x(0), shape=ctx.in_type(1).shape, **conv)
    if len(out) == 3 and ctx.need[2]:
        out[2] = ctx.op("sum", g, axes=(0, 2, 3), keepdims=False)
    return out


def _resize_matrix(table: ResizeTable, size: int) -> np.ndarray:
    """(out, size): row o holds the weights with which output o reads the source indices."""
    m = np.zeros((len(table.i0), size))
    rows = np.arange(len(table.i0))
    np.add.at(m, (rows, table.i0), table.l0.astype(np.float64))
    np.add.at(m, (rows, table.i1), table.l1.astype(np.float64))
    return m


def _resize_grad(ctx: Any, grads: list[Any]) -> list[Any]:
    """Per plane y = Rh x Rw^T with constant interpolation matrices, so dx = Rh^T g Rw: two
    matrix products (nearest modes: the same, with one 1 per row)."""
    g = grads[0]
    assert g is not None
    h, w = ctx.in_type(0).shape[2:]
    rows, cols = resize_tables(ctx.attrs, (h, w))
    t = ctx.op("matmul", g, ctx.const(_resize_matrix(cols, w), g))  # (N, C, OH, W)
    return [ctx.op("matmul", ctx.const(_resize_matrix(rows, h).T.copy(), g), t)]  # (N, C, H, W)


def ops() -> list[OpDef]:
    # FLOP counts and resize2d's loop lowering are imported here, when the registry is
    # filled, not at import time (sol.ops.registry explains why).
    from sol import workload
    from sol.lowering import compute
    from sol.lowering import spatial as lower

    out = [
        OpDef("conv_transpose2d", LayerClass.COMPUTE_BOUND, _deconv_infer, _deconv_ref, (2, 3),
              {"stride": 1, "padding": 0, "output_padding": 0, "dilation": 1, "groups": 1},
              normalize=_deconv_normalize, gradient=_deconv_grad, flops=workload.conv_transpose2d,
              c_reference=compute.conv,  # a library or the reference loops (sol.lowering.compute)
              doc="transposed convolution (the gradient of conv2d w.r.t. its input); weight (C, O/groups, kh, kw)"),
        OpDef("resize2d", LayerClass.IO_BOUND, _resize_infer, _resize_ref, (1, 1),
              {"size": REQUIRED, "mode": "nearest", "align_corners": False, "scales": None},
              normalize=_resize_normalize, core_dims=lambda n: 2, gradient=_resize_grad, flops=workload.resize2d,
              c_loops=lower.lower,
              doc="nearest / nearest_exact / bilinear interpolation of H and W to size (PyTorch's index rules)"),
    ]
    # Weighted sums of finite values (sol.passes.finite).
    for o in out:
        o.preserves_finite = True
    return out
