"""Spatial TensorFlow converters, as core's :mod:`sol.ops.spatial`: transposed convolution
(``Conv2DBackpropInput``: Keras' Conv2DTranspose and Conv1DTranspose) and image resizing
(``ResizeBilinear``, ``ResizeNearestNeighbor``: Keras' Resizing and bilinear UpSampling2D)."""

from __future__ import annotations

from typing import Any

from sol_tensorflow.ops.base import (
    NCHW,
    Context,
    Result,
    Unsupported,
    _check_nhwc,
    _hw,
    attr,
    converts,
    dtype_name,
    same_padding,
)

# --- resizing ---------------------------------------------------------------------------------


def _resize(ctx: Context, op: Any, mode: str) -> list[Result]:
    """TensorFlow's half-pixel rules are PyTorch's ``align_corners=False`` (bilinear) and
    ``nearest-exact``; ``align_corners=True`` bilinear is the same in both; TensorFlow's legacy
    nearest rule (neither flag) is PyTorch's ``nearest``. Scales are the size ratios in both."""
    x, size_t = op.inputs
    size = tuple(int(s) for s in ctx.need_static(size_t, "resize size"))
    align = bool(attr(op, "align_corners", False))
    half = bool(attr(op, "half_pixel_centers", False))
    if len(x.shape) != 4:
        raise Unsupported(f"resizing a rank-{len(x.shape)} tensor")
    if dtype_name(x.dtype) != dtype_name(op.outputs[0].dtype):
        raise Unsupported(f"resizing {dtype_name(x.dtype)} images to {dtype_name(op.outputs[0].dtype)}")
    if mode == "bilinear":
        if not (align or half):
            raise Unsupported("TensorFlow's legacy bilinear rule (half_pixel_centers=False, align_corners=False)")
    elif align:
        raise Unsupported("nearest-neighbour resizing with align_corners=True (rounded source indices)")
    else:
        mode = "nearest_exact" if half else "nearest"
    y = ctx.emit("resize2d", [ctx.nchw(x)], size=size, mode=mode, align_corners=align and mode == "bilinear",
                 scales=None)
    return [NCHW(y)]


@converts("ResizeBilinear")
def _resize_bilinear(ctx: Context, op: Any) -> list[Result]:
    return _resize(ctx, op, "bilinear")


@converts("ResizeNearestNeighbor")
def _resize_nearest(ctx: Context, op: Any) -> list[Result]:
    return _resize(ctx, op, "nearest")


# --- transposed convolution -------------------------------------------------------------------


@converts("Conv2DBackpropInput")
def _conv2d_transpose(ctx: Context, op: Any) -> list[Result]:
    """``tf.nn.conv2d_transpose`` (Keras' Conv2DTranspose and Conv1DTranspose): the gradient of
    a convolution whose output has ``input_sizes``; its padding is that convolution's padding,
    and the rows and columns the padding rule leaves over become sol's ``output_padding``."""
    _check_nhwc(op)
    sizes_t, w, dy = op.inputs
    out = [int(v) for v in ctx.need_static(sizes_t, "output size")]
    kh, kw, cout, cin = (int(d) for d in w.shape)  # (kh, kw, output channels, input channels)
    if int(dy.shape[3]) != cin:
        raise Unsupported(f"grouped transposed convolution ({dy.shape[3]} input channels, filter {w.shape})")
    stride, dilation = _hw(op, "strides"), _hw(op, "dilations")
    k = (kh, kw)
    padding = attr(op, "padding")
    if padding == "VALID":
        pads = ((0, 0), (0, 0))
    elif padding == "SAME":
        pads = tuple(same_padding(out[1 + i], k[i], stride[i], dilation[i]) for i in range(2))  # type: ignore[assignment]
    elif padding == "EXPLICIT":
        p = list(attr(op, "explicit_paddings"))
        pads = ((p[2], p[3]), (p[4], p[5]))
    else:
        raise Unsupported(f"padding {padding!r}")
    extra = []
    for i in range(2):
        size = (int(dy.shape[1 + i]) - 1) * stride[i] - sum(pads[i]) + dilation[i] * (k[i] - 1) + 1
        if out[1 + i] < size:
            raise Unsupported(f"output size {out[1:3]} smaller than the transposed convolution gives")
        extra.append(out[1 + i] - size)
    weight = ctx.transpose(ctx.tf(w), (3, 2, 0, 1))  # (kh, kw, O, C) -> sol's (C, O, kh, kw)
    y = ctx.emit("conv_transpose2d", [ctx.nchw(dy), weight], stride=stride, padding=pads,
                 output_padding=tuple(extra), dilation=dilation, groups=1)
    return [NCHW(y)]
