"""Element-wise MXNet operators: activations, arithmetic (elemwise_*, broadcast_*, the
``_*_scalar`` forms Symbol arithmetic writes), unary math, clip, Dropout, casts."""

from __future__ import annotations

import numpy as np

from sol.plugin_api import TensorType, Value
from sol_mxnet.ops.base import Context, MXNode, Unsupported, converts, require_float

_BINARY = {
    "elemwise_add": "add", "_plus": "add", "_Plus": "add", "_add": "add", "broadcast_add": "add",
    "broadcast_plus": "add",
    "elemwise_sub": "sub", "_minus": "sub", "_Minus": "sub", "_sub": "sub", "broadcast_sub": "sub",
    "broadcast_minus": "sub",
    "elemwise_mul": "mul", "_mul": "mul", "_Mul": "mul", "broadcast_mul": "mul",
    "elemwise_div": "div", "_div": "div", "_Div": "div", "broadcast_div": "div",
    "_maximum": "maximum", "_Maximum": "maximum", "broadcast_maximum": "maximum",
    "_minimum": "minimum", "_Minimum": "minimum", "broadcast_minimum": "minimum",
    "_power": "pow", "_Power": "pow", "broadcast_power": "pow",
}
_SAME_SHAPE = {"elemwise_add", "elemwise_sub", "elemwise_mul", "elemwise_div", "_plus", "_Plus", "_add",
               "_minus", "_Minus", "_sub", "_mul", "_Mul", "_div", "_Div", "_maximum", "_Maximum",
               "_minimum", "_Minimum", "_power", "_Power"}


def _binary(ctx: Context, node: MXNode) -> list[Value]:
    a, b = ctx.inputs(node)
    if a.dtype != b.dtype:
        raise Unsupported(f"{node.op} of {a.dtype} and {b.dtype}")
    if node.op in _SAME_SHAPE and a.shape != b.shape:
        raise Unsupported(f"{node.op} of shapes {a.shape} and {b.shape} (MXNet requires equal shapes)")
    if node.op.startswith("broadcast_") and a.type.rank != b.type.rank:
        raise Unsupported(f"{node.op} of ranks {a.type.rank} and {b.type.rank}")
    return [ctx.emit(_BINARY[node.op], [a, b])]


converts(*_BINARY)(_binary)


@converts("add_n", "ElementWiseSum", "_grad_add")
def add_n(ctx: Context, node: MXNode) -> list[Value]:
    xs = ctx.inputs(node)
    if len({x.type for x in xs}) != 1:
        raise Unsupported(f"{node.op} of differing types")
    y = xs[0]
    for x in xs[1:]:
        y = ctx.emit("add", [y, x])
    return [y if len(xs) > 1 else ctx.emit("identity", [y])]


# _X_scalar: (op, scalar on the left)
_SCALAR = {
    "_plus_scalar": ("add", False), "_PlusScalar": ("add", False),
    "_minus_scalar": ("sub", False), "_MinusScalar": ("sub", False),
    "_rminus_scalar": ("sub", True), "_RMinusScalar": ("sub", True),
    "_mul_scalar": ("mul", False), "_MulScalar": ("mul", False),
    "_div_scalar": ("div", False), "_DivScalar": ("div", False),
    "_rdiv_scalar": ("div", True), "_RDivScalar": ("div", True),
    "_power_scalar": ("pow", False), "_PowerScalar": ("pow", False),
    "_rpower_scalar": ("pow", True), "_RPowerScalar": ("pow", True),
    "_maximum_scalar": ("maximum", False), "_MaximumScalar": ("maximum", False),
    "_minimum_scalar": ("minimum", False), "_MinimumScalar": ("minimum", False),
}


def _scalar_op(ctx: Context, node: MXNode) -> list[Value]:
    (x,) = ctx.inputs(node)
    require_float(x, node.op)  # integer arithmetic with a float scalar: MXNet's casting rules differ
    op, left = _SCALAR[node.op]
    s = node.attrs.float("scalar", 1.0)
    if op == "pow" and not left:
        if s == 2.0:
            return [ctx.emit("mul", [x, x])]
        if s == 0.5:
            return [ctx.emit("sqrt", [x])]
        if s == 1.0:
            return [ctx.emit("identity", [x])]
    k = ctx.scalar(s, x)
    return [ctx.emit(op, [k, x] if left else [x, k])]


converts(*_SCALAR)(_scalar_op)

_UNARY = {"relu": "relu", "sigmoid": "sigmoid", "tanh": "tanh", "exp": "exp", "log": "log", "sqrt": "sqrt",
          "rsqrt": "rsqrt", "negative": "neg", "abs": "abs", "erf": "erf", "_copy": "identity",
          "identity": "identity", "BlockGrad": "stop_gradient", "stop_gradient": "stop_gradient"}


def _unary(ctx: Context, node: MXNode) -> list[Value]:
    (x,) = ctx.inputs(node)
    if _UNARY[node.op] not in ("identity", "stop_gradient"):
        require_float(x, node.op)
    return [ctx.emit(_UNARY[node.op], [x])]


converts(*_UNARY)(_unary)


@converts("square")
def square(ctx: Context, node: MXNode) -> list[Value]:
    (x,) = ctx.inputs(node)
    require_float(x, node.op)
    return [ctx.emit("mul", [x, x])]


@converts("reciprocal")
def reciprocal(ctx: Context, node: MXNode) -> list[Value]:
    (x,) = ctx.inputs(node)
    require_float(x, node.op)
    return [ctx.emit("div", [ctx.scalar(1.0, x), x])]


def softrelu(ctx: Context, x: Value) -> Value:
    """log(1 + exp(x)), stably: max(x, 0) + log(1 + exp(-|x|))."""
    t = ctx.emit("log", [ctx.emit("add", [ctx.scalar(1.0, x), ctx.emit("exp", [ctx.emit("neg", [
        ctx.emit("abs", [x])])])])])
    return ctx.emit("add", [ctx.emit("relu", [x]), t])


def softsign(ctx: Context, x: Value) -> Value:
    return ctx.emit("div", [x, ctx.emit("add", [ctx.scalar(1.0, x), ctx.emit("abs", [x])])])


@converts("softsign")
def softsign_op(ctx: Context, node: MXNode) -> list[Value]:
    (x,) = ctx.inputs(node)
    require_float(x, node.op)
    return [softsign(ctx, x)]


@converts("Activation")
def activation(ctx: Context, node: MXNode) -> list[Value]:
    (x,) = ctx.inputs(node)
    require_float(x, node.op)
    act = node.attrs.str("act_type", "")
    if act in ("relu", "sigmoid", "tanh"):
        return [ctx.emit(act, [x])]
    if act == "softrelu":
        return [softrelu(ctx, x)]
    if act == "softsign":
        return [softsign(ctx, x)]
    raise Unsupported(f"act_type={act!r}")


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_LAMBDA = 1.0507009873554804934193349852946


def _elu(ctx: Context, x: Value, alpha: float) -> Value:
    """x for x > 0, alpha * (exp(x) - 1) else."""
    neg = ctx.emit("mul", [ctx.scalar(alpha, x), ctx.emit("sub", [ctx.emit("exp", [x]), ctx.scalar(1.0, x)])])
    return ctx.emit("where", [ctx.emit("gt", [x, ctx.scalar(0.0, x)]), x, neg])


@converts("LeakyReLU")
def leaky_relu(ctx: Context, node: MXNode) -> list[Value]:
    xs = ctx.inputs(node)
    x = xs[0]
    require_float(x, node.op)
    act = node.attrs.str("act_type", "leaky")
    slope = node.attrs.float("slope", 0.25)
    if act == "leaky":
        return [ctx.emit("leaky_relu", [x], alpha=slope)]
    if act == "elu":
        return [_elu(ctx, x, slope)]
    if act == "selu":
        return [ctx.emit("mul", [ctx.scalar(_SELU_LAMBDA, x), _elu(ctx, x, _SELU_ALPHA)])]
    if act == "gelu":
        return [ctx.emit("gelu", [x], approximate="none")]
    if act == "prelu":
        gamma = xs[1]
        if x.type.rank >= 2 and gamma.type.rank == 1 and gamma.shape[0] == x.shape[1] and x.shape[1] != 1:
            gamma = ctx.reshape(gamma, (1, gamma.shape[0]) + (1,) * (x.type.rank - 2))
        elif gamma.shape != (1,):
            raise Unsupported(f"prelu with gamma of shape {gamma.shape} for input {x.shape}")
        neg = ctx.emit("mul", [gamma, x])
        return [ctx.emit("where", [ctx.emit("gt", [x, ctx.scalar(0.0, x)]), x, neg])]
    if act == "rrelu":
        if ctx.training:
            raise Unsupported("rrelu in training mode (a random slope per element)")
        mid = (node.attrs.float("lower_bound", 0.125) + node.attrs.float("upper_bound", 0.334)) / 2
        return [ctx.emit("leaky_relu", [x], alpha=mid)]
    raise Unsupported(f"act_type={act!r}")


@converts("clip")
def clip(ctx: Context, node: MXNode) -> list[Value]:
    (x,) = ctx.inputs(node)
    require_float(x, node.op)
    lo, hi = node.attrs.float("a_min"), node.attrs.float("a_max")
    return [ctx.emit("clamp", [x], min=lo, max=hi)]


@converts("Cast", "cast")
def cast(ctx: Context, node: MXNode) -> list[Value]:
    (x,) = ctx.inputs(node)
    dtype = node.attrs.str("dtype", "float32") or "float32"
    if dtype not in ("float32", "float64", "int32", "int64", "int8", "uint8", "bool"):
        raise Unsupported(f"cast to {dtype}")
    return [ctx.cast(x, dtype) if x.dtype != dtype else ctx.emit("identity", [x])]


@converts("Dropout")
def dropout(ctx: Context, node: MXNode) -> list[Value]:
    """Inference: the identity (MXNet's ``mode='training'``). Training, or ``mode='always'``: x
    times a mask the wrapper draws with MXNet's own Dropout (so a seeded MXNet gives the same
    masks): an input of the training graph."""
    (x,) = ctx.inputs(node)
    p = node.attrs.float("p", 0.5)
    mode = node.attrs.str("mode", "training")
    if not (ctx.training or mode == "always") or p == 0.0:
        return [ctx.emit("identity", [x])]
    if not ctx.training:
        raise Unsupported("Dropout with mode='always' in an inference graph (a random mask per call)")
    require_float(x, node.op)
    axes = node.attrs.ints("axes", ())
    mask_shape = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    mask = ctx.graph.add_input(f"dropout_mask{len(ctx.masks)}", TensorType(mask_shape, x.dtype))
    ctx.masks.append((mask, p, mask_shape))
    return [ctx.emit("mul", [x, mask])]


@converts("softmax", "log_softmax", "SoftmaxActivation", "SoftmaxOutput", "Softmax")
def softmax(ctx: Context, node: MXNode) -> list[Value]:
    xs = ctx.inputs(node)
    x = xs[0]
    require_float(x, node.op)
    a = node.attrs
    if node.op in ("softmax", "log_softmax"):
        if a.has("length") or a.bool("use_length", False):
            raise Unsupported("softmax with use_length")
        if a.has("dtype") and a.str("dtype") != x.dtype:
            raise Unsupported(f"softmax computed in {a.str('dtype')}")
        axis = a.int("axis", -1) % x.type.rank
        t = a.float("temperature", 1.0) if a.has("temperature") else 1.0
        if t != 1.0:
            x = ctx.emit("div", [x, ctx.scalar(t, x)])
        return [ctx.emit(node.op, [x], axis=axis)]
    if node.op == "SoftmaxActivation":
        mode = a.str("mode", "instance")
        if mode == "channel":
            return [ctx.emit("softmax", [x], axis=1)]
        flat = ctx.reshape(x, (x.shape[0], int(np.prod(x.shape[1:]))))
        return [ctx.reshape(ctx.emit("softmax", [flat], axis=1), x.shape)]
    # SoftmaxOutput / Softmax: the forward of a loss layer is a softmax (its label input is unused)
    if a.bool("multi_output", False) or a.bool("preserve_shape", False):
        if a.bool("multi_output", False):
            return [ctx.emit("softmax", [x], axis=1)]
        return [ctx.emit("softmax", [x], axis=x.type.rank - 1)]
    flat = ctx.reshape(x, (x.shape[0], int(np.prod(x.shape[1:]))))
    return [ctx.reshape(ctx.emit("softmax", [flat], axis=1), x.shape)]
