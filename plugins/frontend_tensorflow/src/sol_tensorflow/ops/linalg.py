"""Compute-bound and parameter-bound TensorFlow converters: convolution (also depthwise and the
dilated form TensorFlow writes as SpaceToBatchND / Conv2D / BatchToSpaceND), MatMul (a dense
layer when the right operand is a weight), batched matmul and two-operand einsum."""

from __future__ import annotations

from typing import Any

from sol.plugin_api import Value, ValueKind
from sol_tensorflow.ops.base import (
    NCHW,
    Context,
    Result,
    Unsupported,
    _check_nhwc,
    _hw,
    attr,
    converts,
    window_padding,
)

# --- convolution --------------------------------------------------------------------------------


@converts("Conv2D", "DepthwiseConv2dNative")
def _conv2d(ctx: Context, op: Any) -> list[Result]:
    _check_nhwc(op)
    x, w = op.inputs
    kh, kw, cin, cout = (int(d) for d in w.shape)
    stride, dilation = _hw(op, "strides"), _hw(op, "dilations")
    h, wd = int(x.shape[1]), int(x.shape[2])
    pads = window_padding(op, (h, wd), (kh, kw), stride, dilation)
    wv = ctx.tf(w)
    if op.type == "Conv2D":
        groups = int(x.shape[3]) // cin
        weight = ctx.transpose(wv, (3, 2, 0, 1))  # HWIO -> OIHW
    else:  # (kh, kw, C, M): output channel c * M + m reads input channel c
        groups = cin
        weight = ctx.reshape(ctx.transpose(ctx.reshape(wv, (kh, kw, cin * cout)), (2, 0, 1)),
                             (cin * cout, 1, kh, kw))
    y = ctx.emit("conv2d", [ctx.nchw(x), weight], stride=stride, padding=pads, dilation=dilation, groups=groups)
    return [NCHW(y)]


# --- dense, matmul, einsum ----------------------------------------------------------------------


def is_weight(v: Value) -> bool:
    """Computed from parameters and constants only (folded at optimize time)."""
    if v.kind in (ValueKind.PARAM, ValueKind.CONST):
        return True
    return v.producer is not None and all(is_weight(i) for i in v.producer.inputs)


@converts("MatMul")
def _matmul(ctx: Context, op: Any) -> list[Result]:
    a, b = op.inputs
    av = ctx.tf(a)
    if attr(op, "transpose_a", False):
        av = ctx.transpose(av, (1, 0))
    bv = ctx.tf(b)
    if is_weight(bv):
        # x @ W (in, out) is sol's dense with W.T (out, in), folded once at optimize time
        w = bv if attr(op, "transpose_b", False) else ctx.transpose(bv, (1, 0))
        return [ctx.emit("dense", [av, w])]
    if attr(op, "transpose_b", False):
        bv = ctx.transpose(bv, (1, 0))
    return [ctx.emit("matmul", [av, bv])]


@converts("BatchMatMul", "BatchMatMulV2", "BatchMatMulV3")
def _batch_matmul(ctx: Context, op: Any) -> list[Result]:
    a, b = (ctx.tf(t) for t in op.inputs)

    def last2(v: Value) -> Value:
        r = v.type.rank
        return ctx.transpose(v, tuple(range(r - 2)) + (r - 1, r - 2))

    if attr(op, "adj_x", False):
        a = last2(a)
    if attr(op, "adj_y", False):
        b = last2(b)
    if a.type.rank < 2 or b.type.rank < 2:
        raise Unsupported("matmul of a vector")
    return [ctx.emit("matmul", [a, b])]


@converts("Einsum")
def _einsum(ctx: Context, op: Any) -> list[Result]:
    """Two-operand einsum (as Keras' MultiHeadAttention and EinsumDense emit it) as transpose /
    reshape / matmul: indices of both operands and the output are batch, of both only are
    contracted, of one operand only are its free dimensions."""
    eq = attr(op, "equation").replace(" ", "")
    if "..." in eq or "->" not in eq:
        raise Unsupported(f"einsum {eq!r} (ellipsis or implicit output)")
    lhs, out = eq.split("->")
    terms = lhs.split(",")
    if len(terms) != 2 or any(len(set(s)) != len(s) for s in (*terms, out)):
        raise Unsupported(f"einsum {eq!r} (not two operands, or a repeated index)")
    ta, tb = terms
    a, b = (ctx.tf(t) for t in op.inputs)
    for s in (ta, tb):
        if any(c not in out and c not in (tb if s is ta else ta) for c in s):
            raise Unsupported(f"einsum {eq!r} (an index summed within one operand)")
    size = {c: int(d) for s, v in ((ta, a), (tb, b)) for c, d in zip(s, v.shape)}
    batch = [c for c in out if c in ta and c in tb]
    contract = [c for c in ta if c in tb and c not in out]
    left = [c for c in ta if c not in tb]
    right = [c for c in tb if c not in ta]

    def prod(cs: list[str]) -> int:
        n = 1
        for c in cs:
            n *= size[c]
        return n

    bshape = tuple(size[c] for c in batch)
    am = ctx.reshape(ctx.transpose(a, [ta.index(c) for c in batch + left + contract]),
                     bshape + (prod(left), prod(contract)))
    bm = ctx.reshape(ctx.transpose(b, [tb.index(c) for c in batch + contract + right]),
                     bshape + (prod(contract), prod(right)))
    y = ctx.emit("matmul", [am, bm])
    order = batch + left + right
    y = ctx.reshape(y, tuple(size[c] for c in order))
    return [ctx.transpose(y, [order.index(c) for c in out])]


# --- dilated convolution as TensorFlow writes it: SpaceToBatchND, Conv2D, BatchToSpaceND ------


@converts("SpaceToBatchND")
def _space_to_batch(ctx: Context, op: Any) -> list[Result]:
    """The general rearrangement (pad, reshape, transpose); when it only feeds a dilated
    convolution, :func:`_batch_to_space` builds that convolution directly and this is dead code."""
    x, block_t, pads_t = op.inputs
    block = [int(b) for b in ctx.need_static(block_t, "block shape")]
    pads = [tuple(int(p) for p in row) for row in ctx.need_static(pads_t, "paddings")]
    if len(block) != 2 or len(x.shape) != 4:
        raise Unsupported("space-to-batch other than 2-D on NHWC")
    v = ctx.emit("pad", [ctx.tf(x)], pads=((0, 0), pads[0], pads[1], (0, 0)))
    n, h, w, c = v.shape
    (b0, b1) = block
    v = ctx.reshape(v, (n, h // b0, b0, w // b1, b1, c))
    v = ctx.transpose(v, (2, 4, 0, 1, 3, 5))
    return [ctx.reshape(v, (b0 * b1 * n, h // b0, w // b1, c))]


@converts("BatchToSpaceND")
def _batch_to_space(ctx: Context, op: Any) -> list[Result]:
    y, block_t, crops_t = op.inputs
    conv = y.op
    if conv.type not in ("Conv2D", "DepthwiseConv2dNative") or conv.inputs[0].op.type != "SpaceToBatchND":
        raise Unsupported("batch-to-space other than after a dilated convolution")
    s2b = conv.inputs[0].op
    block = [int(b) for b in ctx.need_static(block_t, "block shape")]
    if block != [int(b) for b in ctx.need_static(s2b.inputs[1], "block shape")] or \
            attr(conv, "padding") != "VALID" or _hw(conv, "strides") != (1, 1) or _hw(conv, "dilations") != (1, 1):
        raise Unsupported("batch-to-space around a convolution that is not a plain dilated one")
    pads = ctx.need_static(s2b.inputs[2], "paddings").astype(int)
    crops = ctx.need_static(crops_t, "crops").astype(int)
    padding = tuple((int(p[0] - c[0]), int(p[1] - c[1])) for p, c in zip(pads, crops))
    if any(p < 0 for pair in padding for p in pair):
        raise Unsupported("batch-to-space crops wider than the padding")
    x, w = s2b.inputs[0], conv.inputs[1]
    kh, kw, cin, cout = (int(d) for d in w.shape)
    wv = ctx.tf(w)
    if conv.type == "Conv2D":
        groups = int(x.shape[3]) // cin
        weight = ctx.transpose(wv, (3, 2, 0, 1))
    else:
        groups = cin
        weight = ctx.reshape(ctx.transpose(ctx.reshape(wv, (kh, kw, cin * cout)), (2, 0, 1)),
                             (cin * cout, 1, kh, kw))
    out = ctx.emit("conv2d", [ctx.nchw(x), weight], stride=(1, 1), padding=padding, dilation=tuple(block),
                   groups=groups)
    return [NCHW(out)]

