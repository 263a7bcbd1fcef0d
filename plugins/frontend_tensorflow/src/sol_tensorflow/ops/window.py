"""Pooling TensorFlow converters (MaxPool, AvgPool over NHWC images, computed in NCHW)."""

from __future__ import annotations

from typing import Any

from sol_tensorflow.ops.base import NCHW, Context, Result, Unsupported, _check_nhwc, _hw, converts, window_padding

# --- pooling ------------------------------------------------------------------------------------


@converts("MaxPool", "AvgPool")
def _pool(ctx: Context, op: Any) -> list[Result]:
    _check_nhwc(op)
    x = op.inputs[0]
    kernel, stride = _hw(op, "ksize"), _hw(op, "strides")
    pads = window_padding(op, (int(x.shape[1]), int(x.shape[2])), kernel, stride, (1, 1))
    for (lo, hi), k in zip(pads, kernel):
        if max(lo, hi) * 2 > k:
            raise Unsupported(f"SAME padding {pads} wider than half the window {kernel}")
    if op.type == "MaxPool":  # TensorFlow's kernel skips NaN, starting from the lowest float
        y = ctx.emit("max_pool2d", [ctx.nchw(x)], kernel=kernel, stride=stride, padding=pads, nan="ignore")
    else:  # TensorFlow's SAME average divides by the pixels inside the input only
        y = ctx.emit("avg_pool2d", [ctx.nchw(x)], kernel=kernel, stride=stride, padding=pads,
                     count_include_pad=False)
    return [NCHW(y)]

