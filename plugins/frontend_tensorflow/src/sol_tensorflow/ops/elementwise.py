"""Element-wise TensorFlow converters: pass-through and static values, activations (Keras' ELU,
SELU and softsign written with sol's element-wise ops), arithmetic, casts, bias and inference
BatchNorm; each computes in whichever layout its image operand is already held."""

from __future__ import annotations

from typing import Any

import numpy as np

from sol.plugin_api import Value
from sol_tensorflow.ops.base import (
    NCHW,
    Context,
    Result,
    Unsupported,
    _check_nhwc,
    _elementwise,
    attr,
    converts,
    dtype_name,
)

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

_MATH = ("Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Floor", "Ceil",
         "Round")
_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Exp": "exp", "Log": "log", "Sqrt": "sqrt",
          "Rsqrt": "rsqrt", "Neg": "neg", "Abs": "abs", "Erf": "erf", "Sign": "sign", "Rint": "round",
          **{name: name.lower() for name in _MATH}}
"""TF op -> sol op; Round and Rint both round half to even, Sign(NaN) is NaN (sol's default)."""
_BINARY = {"AddV2": "add", "Add": "add", "Sub": "sub", "Mul": "mul", "RealDiv": "div", "Maximum": "maximum",
           "Minimum": "minimum", "Pow": "pow"}


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


