"""ATen converters for decoder-style image models (U-Net and friends): transposed convolution and
upsampling (nearest, nearest-exact, bilinear), as core's :mod:`sol.ops.spatial`. Group and
instance normalization are in :mod:`sol_pytorch.aten.reduce`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sol.plugin_api import Value
from sol_pytorch.aten.base import Args, Emitter, Unsupported, _tensor, converts
from sol_pytorch.aten.volume import conv_transpose3d

# --- transposed convolution -------------------------------------------------------------------


def conv_transpose(em: Emitter, x: Value, w: Value, b: Any, stride: Any, padding: Any, output_padding: Any,
                   dilation: Any, groups: int) -> Value:
    """1-D and 2-D transposed convolution (batched or not) as sol's conv_transpose2d; 1-D runs
    as H=1. The weight stays in PyTorch's (C, O/groups, k...) layout, which the op takes as is."""
    spatial = w.type.rank - 2
    if spatial == 3:
        return conv_transpose3d(em, x, w, b, stride, padding, output_padding, dilation, groups)
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
