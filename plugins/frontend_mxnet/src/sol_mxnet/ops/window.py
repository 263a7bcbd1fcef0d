"""Pooling (max/avg/sum, global, ``pooling_convention`` valid/full, ``count_include_pad``) and
UpSampling (nearest).

MXNet's ``full`` convention is ``out = 1 + ceil((in + 2 * pad - kernel) / stride)``; sol's
``ceil_mode`` (PyTorch's rule) drops a last window that would start in the right padding, which
MXNet keeps. Where the two sizes differ the converter refuses (a fallback), never computes a
differently sized result.
"""

from __future__ import annotations

import math

from sol.plugin_api import Value
from sol_mxnet.ops.base import Context, MXNode, Unsupported, converts, require_float


def _out_size(size: int, k: int, s: int, p: int, full: bool) -> int:
    span = size + 2 * p - k
    return 1 + (math.ceil(span / s) if full else span // s)


def _ceil_mode_size(size: int, k: int, s: int, p: int) -> int:
    """sol's (PyTorch's) ceil_mode output size."""
    out = math.ceil((size + 2 * p - k) / s) + 1
    if (out - 1) * s >= size + p:
        out -= 1
    return out


@converts("Pooling", "Pooling_v1")
def pooling(ctx: Context, node: MXNode) -> list[Value]:
    (x,) = ctx.inputs(node)
    require_float(x, node.op)
    a = node.attrs
    if a.str("layout") not in (None, "NCW", "NCHW"):
        raise Unsupported(f"layout {a.str('layout')}")
    n = x.type.rank - 2
    if n not in (1, 2):
        raise Unsupported(f"Pooling over {n} spatial dimensions (sol has 1-D and 2-D)")
    kind = a.str("pool_type", "max")
    if kind not in ("max", "avg", "sum"):
        raise Unsupported(f"pool_type={kind!r}")
    x2 = ctx.reshape(x, (x.shape[0], x.shape[1], 1, x.shape[2])) if n == 1 else x
    if a.bool("global_pool", False):
        op = "max" if kind == "max" else ("sum" if kind == "sum" else "mean")
        y = ctx.emit(op, [x2], axes=(2, 3), keepdims=True)
        return [ctx.reshape(y, (x.shape[0], x.shape[1], 1)) if n == 1 else y]
    kernel = a.ints("kernel")
    stride = a.ints("stride", ()) or (1,) * n
    pad = a.ints("pad", ()) or (0,) * n
    if not len(kernel) == len(stride) == len(pad) == n:
        raise Unsupported(f"kernel {kernel}, stride {stride}, pad {pad} on {n}-D data")
    if n == 1:
        kernel, stride, pad = (1, kernel[0]), (1, stride[0]), (0, pad[0])
    convention = a.str("pooling_convention", "valid")
    if convention not in ("valid", "full"):
        raise Unsupported(f"pooling_convention={convention!r}")
    full = convention == "full"
    sizes = x2.shape[2:]
    if full:
        for size, k, s, p in zip(sizes, kernel, stride, pad):
            if _out_size(size, k, s, p, True) != _ceil_mode_size(size, k, s, p):
                raise Unsupported(f"pooling_convention='full' whose last window starts in the padding "
                                  f"(input {size}, kernel {k}, stride {s}, pad {p})")
    padding = ((pad[0], pad[0]), (pad[1], pad[1]))
    if kind == "max":
        y = ctx.emit("max_pool2d", [x2], kernel=tuple(kernel), stride=tuple(stride), padding=padding, ceil_mode=full)
    else:
        include = a.bool("count_include_pad", True)
        attrs: dict = dict(kernel=tuple(kernel), stride=tuple(stride), padding=padding, ceil_mode=full,
                           count_include_pad=include)
        if kind == "sum":
            attrs["divisor"] = 1
        y = ctx.emit("avg_pool2d", [x2], **attrs)
    return [ctx.reshape(y, (y.shape[0], y.shape[1], y.shape[3])) if n == 1 else y]


@converts("UpSampling")
def upsampling(ctx: Context, node: MXNode) -> list[Value]:
    xs = ctx.inputs(node)
    a = node.attrs
    if a.str("sample_type", "nearest") != "nearest" or len(xs) != 1:
        raise Unsupported(f"UpSampling sample_type={a.str('sample_type')!r} with {len(xs)} input(s)")
    (x,) = xs
    require_float(x, node.op)
    if x.type.rank != 4:
        raise Unsupported(f"UpSampling of rank {x.type.rank}")
    s = a.int("scale")
    return [ctx.emit("resize2d", [x], size=(x.shape[2] * s, x.shape[3] * s), mode="nearest")]
