"""More TensorFlow op converters (registered into :data:`sol_tensorflow.ops.CONVERTERS` on import):
what Keras' transposed convolutions, up-sampling and resizing layers and a few activations lower
to. Same contract as :mod:`sol_tensorflow.ops`; the importer checks each result's shape against
TensorFlow's.
"""

from __future__ import annotations

from typing import Any

from sol.ir import Value
from sol_tensorflow.ops import (
    NCHW,
    Context,
    Result,
    Unsupported,
    _check_nhwc,
    _elementwise,
    _hw,
    attr,
    converts,
    dtype_name,
    same_padding,
    supported_ops,
)

__all__ = ["supported_ops"]  # with this module's converters registered

# --- activations written with sol's element-wise ops --------------------------------------------


def _elu_tail(ctx: Context, x: Value) -> Value:
    """exp(min(x, 0)) - 1: ELU's negative branch, 0 for x >= 0 (and no overflow for large x)."""
    zero, one = ctx.const(0.0, x.dtype), ctx.const(1.0, x.dtype)
    return ctx.emit("sub", [ctx.emit("exp", [ctx.emit("minimum", [x, zero], ties="first")]), one])


def _negative_branch(ctx: Context, x: Value, negative: Value, positive: Value) -> Value:
    """``where(x < 0, negative, positive)``: TensorFlow's EluGrad/SeluGrad take the positive
    branch's gradient at 0 and at NaN, which selecting gives (a sum of pieces would not)."""
    return ctx.emit("where", [ctx.emit("lt", [x, ctx.const(0.0, x.dtype)]), negative, positive])


@converts("Elu")
def _elu(ctx: Context, op: Any) -> list[Result]:
    return _elementwise(ctx, op, lambda xs: _negative_branch(ctx, xs[0], _elu_tail(ctx, xs[0]), xs[0]))


# TensorFlow's SELU constants (tf.nn.selu; Klambauer et al.)
_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


@converts("Selu")
def _selu(ctx: Context, op: Any) -> list[Result]:
    def build(xs: list[Value]) -> Value:
        x = xs[0]
        pos = ctx.emit("mul", [x, ctx.const(_SELU_SCALE, x.dtype)])
        neg = ctx.emit("mul", [_elu_tail(ctx, x), ctx.const(_SELU_SCALE * _SELU_ALPHA, x.dtype)])
        return _negative_branch(ctx, x, neg, pos)

    return _elementwise(ctx, op, build)


@converts("Softsign")
def _softsign(ctx: Context, op: Any) -> list[Result]:
    def build(xs: list[Value]) -> Value:
        x = xs[0]
        return ctx.emit("div", [x, ctx.emit("add", [ctx.const(1.0, x.dtype), ctx.emit("abs", [x])])])

    return _elementwise(ctx, op, build)


# --- tiling (Keras' nearest UpSampling2D repeats rows and columns with Tile) -------------------


@converts("Tile")
def _tile(ctx: Context, op: Any) -> list[Result]:
    """Each axis repeated ``m`` times is the concatenation of ``m`` copies along it."""
    x, multiples_t = op.inputs
    multiples = [int(m) for m in ctx.need_static(multiples_t, "tile multiples")]
    v = ctx.tf(x)
    for axis, m in enumerate(multiples):
        if m == 0:
            raise Unsupported("tiling to an empty tensor")
        if m > 1:
            v = ctx.emit("concat", [v] * m, axis=axis)
    return [v]


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
