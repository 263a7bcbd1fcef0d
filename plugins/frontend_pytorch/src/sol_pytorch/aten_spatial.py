"""ATen converters for decoder-style image models (U-Net and friends): transposed convolution,
upsampling (nearest, nearest-exact, bilinear) and group / instance normalization.

Registered into :data:`sol_pytorch.aten.CONVERTERS` when :mod:`sol_pytorch.aten` is imported.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sol.ir import Value
from sol_pytorch.aten import Args, Emitter, Unsupported, _batch_norm, _tensor, converts

# --- transposed convolution -------------------------------------------------------------------


def conv_transpose(em: Emitter, x: Value, w: Value, b: Any, stride: Any, padding: Any, output_padding: Any,
                   dilation: Any, groups: int) -> Value:
    """1-D and 2-D transposed convolution (batched or not) as sol's conv_transpose2d; 1-D runs
    as H=1. The weight stays in PyTorch's (C, O/groups, k...) layout, which the op takes as is."""
    spatial = w.type.rank - 2
    if spatial not in (1, 2):
        raise Unsupported(f"{spatial}-D transposed convolution")
    if x.type.rank == w.type.rank - 1:
        x = em.reshape(x, (1,) + x.shape)

    def per_dim(v: Any, name: str) -> list[int]:
        items = [v] if isinstance(v, int) else [int(i) for i in v]
        if len(items) == 1:
            items = items * spatial
        if len(items) != spatial:
            raise Unsupported(f"{name} {v!r} for a {spatial}-D transposed convolution")
        return items

    stride, dilation = per_dim(stride, "stride"), per_dim(dilation, "dilation")
    pads, extra = per_dim(padding, "padding"), per_dim(output_padding, "output_padding")
    if spatial == 1:
        x = em.reshape(x, x.shape[:2] + (1,) + x.shape[2:])
        w = em.reshape(w, w.shape[:2] + (1,) + w.shape[2:])
        stride, dilation, pads, extra = [1] + stride, [1] + dilation, [0] + pads, [0] + extra
    inputs = [x, w] + ([b] if b is not None else [])
    y = em.emit("conv_transpose2d", inputs, stride=tuple(stride), padding=tuple((p, p) for p in pads),
                output_padding=tuple(extra), dilation=tuple(dilation), groups=int(groups))
    return em.reshape(y, em.out.shape)


@converts("aten.conv_transpose2d.input", "aten.conv_transpose1d.default")
def _conv_transpose(em: Emitter, a: Args) -> Value:
    return conv_transpose(em, _tensor(a, "input"), _tensor(a, "weight"), a["bias"], a["stride"], a["padding"],
                          a["output_padding"], a["dilation"], a["groups"])


# --- upsampling -------------------------------------------------------------------------------


def _resize(em: Emitter, x: Value, mode: str, align_corners: bool, scales: Sequence[Any] | None) -> Value:
    """The output size is PyTorch's (the node's result); ``scales`` are the scale factors the
    kernel gets, which change the source-index rule (1 / scale instead of in / out)."""
    if x.type.rank != 4:
        raise Unsupported(f"2-D upsampling of a rank-{x.type.rank} tensor")
    if scales is not None:
        scales = tuple(None if s is None else float(s) for s in scales)
        if len(scales) != 2:
            raise Unsupported(f"scale factors {scales} for 2-D upsampling")
    return em.emit("resize2d", [x], size=tuple(em.out.shape[-2:]), mode=mode, align_corners=bool(align_corners),
                   scales=scales)


@converts("aten.upsample_nearest2d.vec")
def _upsample_nearest_vec(em: Emitter, a: Args) -> Value:
    return _resize(em, _tensor(a, "input"), "nearest", False, a["scale_factors"])


@converts("aten.upsample_nearest2d.default")
def _upsample_nearest(em: Emitter, a: Args) -> Value:
    return _resize(em, _tensor(a, "self"), "nearest", False, (a.get("scales_h"), a.get("scales_w")))


@converts("aten._upsample_nearest_exact2d.vec")
def _upsample_nearest_exact_vec(em: Emitter, a: Args) -> Value:
    return _resize(em, _tensor(a, "input"), "nearest_exact", False, a["scale_factors"])


@converts("aten._upsample_nearest_exact2d.default")
def _upsample_nearest_exact(em: Emitter, a: Args) -> Value:
    return _resize(em, _tensor(a, "self"), "nearest_exact", False, (a.get("scales_h"), a.get("scales_w")))


@converts("aten.upsample_bilinear2d.vec")
def _upsample_bilinear_vec(em: Emitter, a: Args) -> Value:
    return _resize(em, _tensor(a, "input"), "bilinear", a["align_corners"], a["scale_factors"])


@converts("aten.upsample_bilinear2d.default")
def _upsample_bilinear(em: Emitter, a: Args) -> Value:
    return _resize(em, _tensor(a, "self"), "bilinear", a["align_corners"], (a.get("scales_h"), a.get("scales_w")))


# --- group and instance normalization ---------------------------------------------------------


def group_norm(em: Emitter, x: Value, groups: int, weight: Any, bias: Any, eps: float) -> Value:
    """(x - mean) * rsqrt(var + eps) per (sample, group), then the per-channel affine.

    A decomposition into mean / sub / mul / rsqrt / add rather than a core op: computed in the
    (N, G, C/G, H*W) view, every step (statistics and affine) shares the outer (N, G) loops, so
    the planner fuses the whole normalization into one depth-first loop nest whose per-group
    slice stays in scratch memory, on every device, without a template of its own. The affine
    parameters are reshaped to (G, C/G, 1) so that they broadcast in that same view."""
    if x.type.rank < 2:
        raise Unsupported(f"group_norm of a rank-{x.type.rank} tensor")
    n, c = x.shape[:2]
    if groups < 1 or c % groups:
        raise Unsupported(f"group_norm with {groups} groups of {c} channels")
    cg, dt = c // groups, x.dtype
    hw = int(np.prod(x.shape[2:], dtype=np.int64))
    v = em.reshape(x, (n, groups, cg, hw))
    mean = em.emit("mean", [v], axes=(2, 3), keepdims=True)
    d = em.emit("sub", [v, mean])
    var = em.emit("mean", [em.emit("mul", [d, d])], axes=(2, 3), keepdims=True)
    y = em.emit("mul", [d, em.emit("rsqrt", [em.emit("add", [var, em.const(eps, dt)])])])
    if weight is not None:
        y = em.emit("mul", [y, em.reshape(em.operand(weight, dt), (groups, cg, 1))])
    if bias is not None:
        y = em.emit("add", [y, em.reshape(em.operand(bias, dt), (groups, cg, 1))])
    return em.reshape(y, x.shape)


@converts("aten.group_norm.default")
def _group_norm(em: Emitter, a: Args) -> Value:
    return group_norm(em, _tensor(a, "input"), int(a["num_groups"]), a["weight"], a["bias"], float(a["eps"]))


@converts("aten.native_group_norm.default")
def _native_group_norm(em: Emitter, a: Args) -> tuple[Value, None, None]:
    y = group_norm(em, _tensor(a, "input"), int(a["group"]), a["weight"], a["bias"], float(a["eps"]))
    return y, None, None  # saved mean / rstd: training only


@converts("aten.instance_norm.default")
def _instance_norm(em: Emitter, a: Args) -> Value:
    """Per-sample statistics: group_norm with one group per channel; with tracked running
    statistics in eval mode (use_input_stats=False) it is a batch_norm."""
    x = _tensor(a, "input")
    if a["use_input_stats"]:
        return group_norm(em, x, x.shape[1], a["weight"], a["bias"], float(a["eps"]))
    return _batch_norm(em, x, a["weight"], a["bias"], a["running_mean"], a["running_var"], a["eps"])
