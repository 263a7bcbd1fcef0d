"""Pooling: ``MaxPool``, ``AveragePool`` (2-D, and 1-D over a height of 1), the global poolings
as reductions over the spatial axes."""

from __future__ import annotations

from typing import Any

from sol.plugin_api import Value
from sol_onnx.ops.base import Context, Unsupported, attr, converts
from sol_onnx.ops.linalg import FLOATS, _spatial, as_2d, back_from_2d


def _window(ctx: Context, node: Any) -> tuple[Value, bool, dict[str, Any]]:
    x = ctx.value(node.input[0])
    if x.dtype not in FLOATS:
        raise Unsupported(f"{node.op_type} of {x.dtype}")
    kernel = tuple(int(k) for k in attr(node, "kernel_shape"))
    x2, was_1d = as_2d(ctx, x, node.op_type)
    stride, dilation, padding = _spatial(node, x, kernel)
    k2 = (1, kernel[0]) if was_1d else (kernel[0], kernel[1])
    args = {"kernel": k2, "stride": stride, "padding": padding, "ceil_mode": bool(attr(node, "ceil_mode", 0))}
    if args["ceil_mode"] and _last_window_starts_in_padding(x2.shape[2:], k2, stride, dilation, padding):
        # ONNX and PyTorch (whose rule sol's pooling follows) differ on a ceil_mode window that
        # would start within the right padding: PyTorch drops it, ONNX keeps it. Elsewhere they
        # agree: both drop a window starting past the padded input (ONNX's
        # test_maxpool_2d_ceil_output_size_reduce_by_one), and where ceil changes nothing
        # (GoogLeNet's 3x3 stride-1 poolings with padding 1) there is no such window.
        raise Unsupported("ceil_mode with a last window starting in the padding")
    if dilation != (1, 1):
        args["dilation"] = dilation
    return x2, was_1d, args


def _last_window_starts_in_padding(size: tuple[int, ...], kernel: tuple[int, int], stride: tuple[int, int],
                                   dilation: tuple[int, int], padding: Any) -> bool:
    """Whether, with ceil_mode, the last window along some axis starts in the right padding
    (not before it, not past it)."""
    for n, k, s, d, (lo, hi) in zip(size, kernel, stride, dilation, padding):
        out = -(-(n + lo + hi - d * (k - 1) - 1) // s) + 1
        if n + lo <= (out - 1) * s < n + lo + hi:
            return True
    return False


@converts("MaxPool")
def max_pool(ctx: Context, node: Any) -> list[Value]:
    if len(node.output) > 1 and node.output[1]:
        raise Unsupported("the Indices output")
    if int(attr(node, "storage_order", 0)):
        raise Unsupported("storage_order=1")
    x, was_1d, args = _window(ctx, node)
    return [back_from_2d(ctx, ctx.emit("max_pool2d", [x], **args), was_1d)]


@converts("AveragePool")
def avg_pool(ctx: Context, node: Any) -> list[Value]:
    x, was_1d, args = _window(ctx, node)
    if "dilation" in args:
        raise Unsupported("dilated average pooling")
    y = ctx.emit("avg_pool2d", [x], count_include_pad=bool(attr(node, "count_include_pad", 0)), **args)
    return [back_from_2d(ctx, y, was_1d)]


@converts("GlobalAveragePool", "GlobalMaxPool")
def global_pool(ctx: Context, node: Any) -> list[Value]:
    x = ctx.value(node.input[0])
    if x.dtype not in FLOATS or x.type.rank < 3:
        raise Unsupported(f"{node.op_type} of {x.type}")
    op = "mean" if node.op_type == "GlobalAveragePool" else "max"
    return [ctx.emit(op, [x], axes=tuple(range(2, x.type.rank)), keepdims=True)]


@converts("LpPool")
def lp_pool(ctx: Context, node: Any) -> list[Value]:
    """(sum over the window of |x|^p)^(1/p): an average pooling with divisor 1 (padding adds zeros) of |x|^p."""
    x, was_1d, args = _window(ctx, node)
    p = float(attr(node, "p", 2))
    if p <= 0 or "dilation" in args or args["ceil_mode"]:
        raise Unsupported(f"p={p} / dilations / ceil_mode")
    powered = ctx.emit("mul", [x, x]) if p == 2 else ctx.emit("pow", [ctx.emit("abs", [x]), ctx.scalar(p, x)])
    total = ctx.emit("avg_pool2d", [powered], count_include_pad=True, divisor=1, **args)
    y = ctx.emit("sqrt", [total]) if p == 2 else ctx.emit("pow", [total, ctx.scalar(1.0 / p, total)])
    return [back_from_2d(ctx, y, was_1d)]
