"""TensorFlow ops -> sol IR: one small converter per TensorFlow op type.

Layout. TensorFlow images are NHWC; sol's IR is logical NCHW. Rather than transposing around
every convolution, a TensorFlow tensor of rank 4 may be held in either layout (or both): a
convolution or pooling reads and produces NCHW, element-wise ops between them run in whichever
layout their image operand already has (their small operands, a bias or a BatchNormalization
scale, are moved to NCHW once, at optimize time), and a TensorFlow-layout copy is made only where
an op needs one (a reshape, a softmax over channels, the model's output). So a Keras network of
conv / BN / activation / add / concat / pool layers has no transposes inside.

Every converter gets the :class:`Context` and the ``tf.Operation``; it returns one result per
op output: a :class:`~sol.ir.Value` in TensorFlow layout, an :class:`NCHW` value, or a NumPy
array (a value known at optimize time, e.g. shape arithmetic). The importer checks each result's
shape against the one TensorFlow inferred, so a wrong mapping fails at import, never at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sol.converters import ConverterTable
from sol.ir import Graph, TensorType, Value, ValueKind

TO_NCHW = (0, 3, 1, 2)
TO_NHWC = (0, 2, 3, 1)


class Unsupported(Exception):
    """A converter cannot express this use of its op; the importer adds the op and layer."""


@dataclass(frozen=True)
class NCHW:
    """A converter's result held in NCHW layout (the TensorFlow tensor is its NHWC transpose)."""

    value: Value


Result = Value | NCHW | np.ndarray
Converter = Callable[["Context", Any], Sequence[Result]]
CONVERTERS: ConverterTable[Converter] = ConverterTable("TensorFlow")
converts = CONVERTERS.converts
"""Registers a converter for op names (core's :class:`~sol.converters.ConverterTable`)."""


def supported_ops() -> list[str]:
    """The TensorFlow op types sol's TensorFlow frontend compiles."""
    return sorted(CONVERTERS)


def dtype_name(dtype: Any) -> str:
    return str(getattr(dtype, "name", dtype))


@dataclass
class Entry:
    """What one TensorFlow tensor is in the IR: a static array, or a value in TF layout and/or
    NCHW layout (whichever were needed so far)."""

    static: np.ndarray | None = None
    tf: Value | None = None
    nchw: Value | None = None


class Context:
    """The graph being built and the TensorFlow tensors converted so far."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.env: dict[str, Entry] = {}
        self.source: str | None = None

    # --- reading operands -----------------------------------------------------------------
    def entry(self, t: Any) -> Entry:
        try:
            return self.env[t.name]
        except KeyError:
            raise Unsupported(f"input {t.name} was not converted") from None

    def static(self, t: Any) -> np.ndarray | None:
        return self.entry(t).static

    def need_static(self, t: Any, what: str) -> np.ndarray:
        value = self.static(t)
        if value is None:
            raise Unsupported(f"{what} ({t.name}) must be known when optimizing, not computed at run time")
        return value

    def is_nchw(self, t: Any) -> bool:
        e = self.entry(t)
        return e.nchw is not None and e.tf is None

    def tf(self, t: Any) -> Value:
        """The tensor in TensorFlow's layout."""
        e = self.entry(t)
        if e.tf is None:
            if e.static is not None:
                e.tf = self.const(e.static)
            else:
                assert e.nchw is not None
                e.tf = self.emit("transpose", [e.nchw], perm=TO_NHWC)
        return e.tf

    def nchw(self, t: Any) -> Value:
        """A rank-4 NHWC tensor as NCHW."""
        e = self.entry(t)
        if e.nchw is None:
            if len(t.shape) != 4:
                raise Unsupported(f"expected a rank-4 NHWC tensor, got shape {t.shape}")
            e.nchw = self.emit("transpose", [self.tf(t)], perm=TO_NCHW)
        return e.nchw

    def operand(self, t: Any, nchw: bool, rank: int) -> Value:
        """An element-wise operand in the layout of a rank-``rank`` result: in NCHW, a smaller
        operand (a bias of shape (C,)) is right-aligned to rank 4, then transposed."""
        if not nchw:
            return self.tf(t)
        if len(t.shape) == 4:
            return self.nchw(t)
        v = self.tf(t)
        v = self.reshape(v, (1,) * (rank - len(t.shape)) + tuple(v.shape))
        return self.emit("transpose", [v], perm=TO_NCHW)

    # --- building -------------------------------------------------------------------------
    def emit(self, op: str, inputs: Sequence[Value], **attrs: Any) -> Value:
        return self.graph.add_node(op, list(inputs), attrs, source=self.source).output

    def const(self, value: Any, dtype: str | None = None) -> Value:
        return self.graph.add_const(np.asarray(value, dtype=dtype), hint="k")

    def reshape(self, v: Value, shape: Sequence[int]) -> Value:
        shape = tuple(int(d) for d in shape)
        return v if v.shape == shape else self.emit("reshape", [v], shape=shape)

    def transpose(self, v: Value, perm: Sequence[int]) -> Value:
        perm = tuple(int(p) % max(v.type.rank, 1) for p in perm)
        return v if perm == tuple(range(len(perm))) else self.emit("transpose", [v], perm=perm)


def out_type(op: Any, i: int = 0) -> TensorType:
    t = op.outputs[i]
    return TensorType(tuple(int(d) for d in t.shape), dtype_name(t.dtype))


def attr(op: Any, name: str, default: Any = None) -> Any:
    try:
        value = op.get_attr(name)
    except ValueError:
        return default
    return value.decode() if isinstance(value, bytes) else value


def _check_nhwc(op: Any) -> None:
    fmt = attr(op, "data_format", "NHWC")
    if fmt != "NHWC":
        raise Unsupported(f"data_format {fmt} (sol's TensorFlow frontend reads NHWC graphs)")


def same_padding(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's SAME rule: output ceil(size / s); the odd pixel of padding goes after."""
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return (total // 2, total - total // 2)


def window_padding(op: Any, hw: tuple[int, int], k: tuple[int, int], s: tuple[int, int],
                   d: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    padding = attr(op, "padding")
    if padding == "VALID":
        return ((0, 0), (0, 0))
    if padding == "SAME":
        return (same_padding(hw[0], k[0], s[0], d[0]), same_padding(hw[1], k[1], s[1], d[1]))
    if padding == "EXPLICIT":
        p = list(attr(op, "explicit_paddings"))
        return ((p[2], p[3]), (p[4], p[5]))
    raise Unsupported(f"padding {padding!r}")


# --- pass-through and static values -----------------------------------------------------------


@converts("StopGradient")
def _stop_gradient(ctx: Context, op: Any) -> list[Result]:
    """``tf.stop_gradient``: core's ``stop_gradient`` (the value; no gradient through it, removed
    before planning), in whichever layout the value is held."""
    e = ctx.entry(op.inputs[0])
    if e.static is not None:
        return [e.static]  # a constant takes no gradient anyway
    if e.tf is None:
        assert e.nchw is not None
        return [NCHW(ctx.emit("stop_gradient", [e.nchw]))]
    return [ctx.emit("stop_gradient", [e.tf])]


@converts("Identity", "Snapshot", "PreventGradient", "IdentityN", "EnsureShape")
def _identity(ctx: Context, op: Any) -> list[Result]:
    outs: list[Result] = []
    for t in op.inputs[:len(op.outputs)]:
        e = ctx.entry(t)
        if e.static is not None:
            outs.append(e.static)
        elif e.tf is None:
            assert e.nchw is not None
            outs.append(NCHW(e.nchw))
        else:
            outs.append(e.tf)
    return outs


@converts("Shape")
def _shape(ctx: Context, op: Any) -> list[Result]:
    return [np.asarray(tuple(int(d) for d in op.inputs[0].shape), dtype=dtype_name(op.outputs[0].dtype))]


# --- element-wise -------------------------------------------------------------------------------

_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Exp": "exp", "Log": "log", "Sqrt": "sqrt",
          "Rsqrt": "rsqrt", "Neg": "neg", "Abs": "abs", "Erf": "erf"}
_BINARY = {"AddV2": "add", "Add": "add", "Sub": "sub", "Mul": "mul", "RealDiv": "div", "Maximum": "maximum",
           "Minimum": "minimum", "Pow": "pow"}


def _layout_of(ctx: Context, op: Any) -> bool:
    """Compute in NCHW when the result is rank 4 and an operand is only held in NCHW."""
    return len(op.outputs[0].shape) == 4 and any(
        len(t.shape) == 4 and ctx.is_nchw(t) for t in op.inputs)


def _wrap(v: Value, nchw: bool) -> Result:
    return NCHW(v) if nchw else v


def _elementwise(ctx: Context, op: Any, build: Callable[[list[Value]], Value]) -> list[Result]:
    nchw = _layout_of(ctx, op)
    rank = len(op.outputs[0].shape)
    dtype = dtype_name(op.outputs[0].dtype)
    ins = []
    for t in op.inputs:
        v = ctx.operand(t, nchw, rank)
        if v.dtype != dtype:
            raise Unsupported(f"operand dtype {v.dtype}, result dtype {dtype}")
        ins.append(v)
    return [_wrap(build(ins), nchw)]


@converts(*_UNARY)
def _unary(ctx: Context, op: Any) -> list[Result]:
    return _elementwise(ctx, op, lambda xs: ctx.emit(_UNARY[op.type], xs))


@converts(*_BINARY)
def _binary(ctx: Context, op: Any) -> list[Result]:
    name = _BINARY[op.type]
    # TensorFlow's Maximum/Minimum gradient gives a tie to the first operand (x >= y)
    ties = {"ties": "first"} if name in ("maximum", "minimum") else {}
    return _elementwise(ctx, op, lambda xs: ctx.emit(name, xs, **ties))


@converts("Relu6")
def _relu6(ctx: Context, op: Any) -> list[Result]:
    return _elementwise(ctx, op, lambda xs: ctx.emit("clamp", xs, min=0.0, max=6.0, bounds_grad="exclusive"))


@converts("LeakyRelu")
def _leaky_relu(ctx: Context, op: Any) -> list[Result]:
    return _elementwise(ctx, op, lambda xs: ctx.emit("leaky_relu", xs, alpha=float(attr(op, "alpha", 0.2))))


@converts("Square")
def _square(ctx: Context, op: Any) -> list[Result]:
    return _elementwise(ctx, op, lambda xs: ctx.emit("mul", [xs[0], xs[0]]))


@converts("SquaredDifference")
def _squared_difference(ctx: Context, op: Any) -> list[Result]:
    def build(xs: list[Value]) -> Value:
        d = ctx.emit("sub", xs)
        return ctx.emit("mul", [d, d])

    return _elementwise(ctx, op, build)


@converts("Erfc")
def _erfc(ctx: Context, op: Any) -> list[Result]:
    """erfc(x) = 1 - erf(x): Keras' exact GELU is 0.5 * x * erfc(-x / sqrt(2))."""
    return _elementwise(ctx, op, lambda xs: ctx.emit("sub", [ctx.const(1.0, xs[0].dtype), ctx.emit("erf", xs)]))


@converts("Reciprocal", "Inv")
def _reciprocal(ctx: Context, op: Any) -> list[Result]:
    return _elementwise(ctx, op, lambda xs: ctx.emit("div", [ctx.const(1.0, xs[0].dtype), xs[0]]))


@converts("Softplus")
def _softplus(ctx: Context, op: Any) -> list[Result]:
    """log(1 + exp(x)) written stably: x + log(1 + exp(-x)) where x > 0, log(1 + exp(x)) elsewhere,
    each branch fed x only on its own side (0 on the other, where its exp could overflow and its
    gradient would be 0 * inf). Selecting, not summing pieces, keeps TensorFlow's gradient
    sigmoid(x): 1/2 at 0, 1 at +inf, NaN at NaN."""
    def build(xs: list[Value]) -> Value:
        x = xs[0]
        zero, one = ctx.const(0.0, x.dtype), ctx.const(1.0, x.dtype)

        def log1p_exp(t: Value) -> Value:
            return ctx.emit("log", [ctx.emit("add", [one, ctx.emit("exp", [t])])])

        positive = ctx.emit("gt", [x, zero])
        pos = ctx.emit("where", [positive, x, zero])
        neg = ctx.emit("where", [positive, zero, x])
        above = ctx.emit("add", [pos, log1p_exp(ctx.emit("neg", [pos]))])
        return ctx.emit("where", [positive, above, log1p_exp(neg)])

    return _elementwise(ctx, op, build)


@converts("AddN")
def _add_n(ctx: Context, op: Any) -> list[Result]:
    def build(xs: list[Value]) -> Value:
        acc = xs[0]
        for x in xs[1:]:
            acc = ctx.emit("add", [acc, x])
        return acc

    return _elementwise(ctx, op, build)


@converts("Cast")
def _cast(ctx: Context, op: Any) -> list[Result]:
    dtype = dtype_name(op.outputs[0].dtype)
    t = op.inputs[0]
    if ctx.is_nchw(t):
        return [NCHW(ctx.emit("cast", [ctx.nchw(t)], dtype=dtype))]
    v = ctx.tf(t)
    return [v if v.dtype == dtype else ctx.emit("cast", [v], dtype=dtype)]


@converts("BiasAdd")
def _bias_add(ctx: Context, op: Any) -> list[Result]:
    _check_nhwc(op)
    return _binary_as(ctx, op, "add")


def _binary_as(ctx: Context, op: Any, sol_op: str) -> list[Result]:
    return _elementwise(ctx, op, lambda xs: ctx.emit(sol_op, xs))


@converts("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
def _fused_batch_norm(ctx: Context, op: Any) -> list[Result]:
    _check_nhwc(op)
    if attr(op, "is_training", False):
        raise Unsupported("training-mode batch normalization (sol compiles inference)")
    x, scale, offset, mean, var = op.inputs[:5]
    eps = float(attr(op, "epsilon", 1e-3))
    stats = [ctx.tf(t) for t in (mean, var, scale, offset)]
    if len(x.shape) == 4:
        y: Result = NCHW(ctx.emit("batch_norm", [ctx.nchw(x), *stats], eps=eps, axis=1))
    else:
        xv = ctx.tf(x)
        y = ctx.emit("batch_norm", [xv, *stats], eps=eps, axis=xv.type.rank - 1)
    return [y]  # the batch statistics outputs are for training


# --- convolution and pooling --------------------------------------------------------------------


def _hw(op: Any, name: str) -> tuple[int, int]:
    v = list(attr(op, name, [1, 1, 1, 1]))
    if len(v) != 4 or v[0] != 1 or v[3] != 1:
        raise Unsupported(f"{name} {v} across batch or channels")
    return (int(v[1]), int(v[2]))


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


# --- reductions and softmax ---------------------------------------------------------------------


@converts("Mean", "Sum")
def _reduce(ctx: Context, op: Any) -> list[Result]:
    x, axes_t = op.inputs
    rank = len(x.shape)
    axes = tuple(sorted({int(a) % rank for a in np.atleast_1d(ctx.need_static(axes_t, "reduction axes"))}))
    keep = bool(attr(op, "keep_dims", False))
    sol_op = "mean" if op.type == "Mean" else "sum"
    if not axes:
        return [ctx.tf(x)]
    if rank == 4 and ctx.is_nchw(x):
        nchw_axes = tuple(sorted(TO_NCHW.index(a) for a in axes))
        y = ctx.emit(sol_op, [ctx.nchw(x)], axes=nchw_axes, keepdims=keep)
        if keep:
            return [NCHW(y)]
        kept = [a for a in range(4) if a not in nchw_axes]  # NCHW positions still there, in order
        tf_order = [TO_NCHW[a] for a in kept]  # their TF axis numbers
        return [ctx.transpose(y, np.argsort(tf_order).tolist())]
    return [ctx.emit(sol_op, [ctx.tf(x)], axes=axes, keepdims=keep)]


@converts("Max")
def _reduce_max(ctx: Context, op: Any) -> list[Result]:
    """The spatial maximum of an image (GlobalMaxPooling2D) is a max pool over the whole plane
    (it stays in NCHW); other maxima are max reductions."""
    x, axes_t = op.inputs
    axes = sorted({int(a) % max(len(x.shape), 1) for a in np.atleast_1d(ctx.need_static(axes_t, "axes"))})
    if len(x.shape) != 4 or axes != [1, 2]:
        from sol_tensorflow.ops_index import reduce_select

        return [reduce_select(ctx, op, "max")]  # any other maximum: sol's max reduction
    h, w = int(x.shape[1]), int(x.shape[2])
    y = ctx.emit("max_pool2d", [ctx.nchw(x)], kernel=(h, w), stride=(h, w))
    if attr(op, "keep_dims", False):
        return [NCHW(y)]
    return [ctx.reshape(y, (int(x.shape[0]), int(x.shape[3])))]


@converts("Softmax", "LogSoftmax")
def _softmax(ctx: Context, op: Any) -> list[Result]:
    x = op.inputs[0]
    sol_op = "softmax" if op.type == "Softmax" else "log_softmax"
    # TensorFlow's Softmax keeps a NaN to its own entry (the rest of the row 0); its LogSoftmax
    # makes the row NaN, sol's default.
    nan = {"nan": "element"} if sol_op == "softmax" else {}
    if len(x.shape) == 4 and ctx.is_nchw(x):
        return [NCHW(ctx.emit(sol_op, [ctx.nchw(x)], axis=1, **nan))]
    v = ctx.tf(x)
    return [ctx.emit(sol_op, [v], axis=v.type.rank - 1, **nan)]


# --- layout ---------------------------------------------------------------------------------


@converts("Reshape", "Squeeze", "ExpandDims")
def _reshape(ctx: Context, op: Any) -> list[Result]:
    return [ctx.reshape(ctx.tf(op.inputs[0]), out_type(op).shape)]


@converts("Transpose")
def _transpose(ctx: Context, op: Any) -> list[Result]:
    x, perm_t = op.inputs
    perm = tuple(int(p) for p in ctx.need_static(perm_t, "transpose permutation"))
    if len(perm) == 4 and ctx.is_nchw(x):
        if perm == TO_NCHW:
            return [ctx.nchw(x)]
        return [ctx.transpose(ctx.nchw(x), [TO_NCHW[p] for p in perm])]
    return [ctx.transpose(ctx.tf(x), perm)]


@converts("ConcatV2")
def _concat(ctx: Context, op: Any) -> list[Result]:
    *xs, axis_t = op.inputs
    rank = len(op.outputs[0].shape)
    axis = int(ctx.need_static(axis_t, "concat axis")) % rank
    if rank == 4 and any(ctx.is_nchw(t) for t in xs):
        return [NCHW(ctx.emit("concat", [ctx.nchw(t) for t in xs], axis=TO_NCHW.index(axis)))]
    return [ctx.emit("concat", [ctx.tf(t) for t in xs], axis=axis)]


@converts("Pack")
def _pack(ctx: Context, op: Any) -> list[Result]:
    axis = int(attr(op, "axis", 0))
    rank = len(op.outputs[0].shape)
    axis %= rank
    parts = []
    for t in op.inputs:
        v = ctx.tf(t)
        parts.append(ctx.reshape(v, v.shape[:axis] + (1,) + v.shape[axis:]))
    return [ctx.emit("concat", parts, axis=axis)]


@converts("Pad", "PadV2")
def _pad(ctx: Context, op: Any) -> list[Result]:
    x, pads_t = op.inputs[:2]
    value = 0.0
    if op.type == "PadV2":
        value = float(ctx.need_static(op.inputs[2], "pad value"))
    pads = [tuple(int(p) for p in row) for row in ctx.need_static(pads_t, "paddings")]
    if len(pads) == 4 and ctx.is_nchw(x):
        return [NCHW(ctx.emit("pad", [ctx.nchw(x)], pads=tuple(pads[a] for a in TO_NCHW), value=value))]
    return [ctx.emit("pad", [ctx.tf(x)], pads=tuple(pads), value=value)]


@converts("StridedSlice")
def _strided_slice(ctx: Context, op: Any) -> list[Result]:
    x, begin_t, end_t, strides_t = op.inputs
    begin = [int(v) for v in ctx.need_static(begin_t, "slice begin")]
    end = [int(v) for v in ctx.need_static(end_t, "slice end")]
    strides = [int(v) for v in ctx.need_static(strides_t, "slice strides")]
    if attr(op, "ellipsis_mask", 0) or attr(op, "new_axis_mask", 0):
        raise Unsupported("strided slice with an ellipsis or a new axis")
    bm, em, sm = attr(op, "begin_mask", 0), attr(op, "end_mask", 0), attr(op, "shrink_axis_mask", 0)
    v = ctx.tf(x)
    axes, starts, stops, steps = [], [], [], []
    for i, (b, e, s) in enumerate(zip(begin, end, strides)):
        if s <= 0:
            raise Unsupported("strided slice with a negative step")
        dim = v.shape[i]
        b = 0 if bm >> i & 1 else b
        e = dim if em >> i & 1 else e
        if sm >> i & 1:
            b = b % dim if dim else 0
            e, s = b + 1, 1
        if (b, e, s) != (0, dim, 1):
            axes.append(i)
            starts.append(b)
            stops.append(e)
            steps.append(s)
    if axes:
        v = ctx.emit("slice", [v], axes=tuple(axes), starts=tuple(starts), stops=tuple(stops), steps=tuple(steps))
    return [ctx.reshape(v, out_type(op).shape)]



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


# Converters for token models (gathers, comparisons, Select, ArgMax) live in their own module.
from sol_tensorflow import ops_index  # noqa: E402,F401
