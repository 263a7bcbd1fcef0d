"""Gradient rules of the element-wise ops (sol.ops.elementwise) and the masks and broadcasts
backward graphs use (sol.ops.grad_ops)."""

from __future__ import annotations

import math
from collections.abc import Callable

from sol.autodiff.builder import GradContext
from sol.autodiff.rules._common import Grads, _compare_k, _k, _selected, _stopped
from sol.ir import Node, Value
from sol.ops.registry import GradientFn

# --- element-wise, unary ------------------------------------------------------------------------


def _unary(fn: Callable[[GradContext, Value], Value]) -> GradientFn:
    """``d/dx`` as a tensor from the context; the rule multiplies by the output gradient."""
    def grad(ctx: GradContext, grads: Grads) -> Grads:
        g = grads[0]
        assert g is not None
        return [ctx.op("mul", g, fn(ctx, g))] + [None] * (len(ctx.node.inputs) - 1)

    return grad


def pass_through(ctx: GradContext, grads: Grads) -> Grads:
    # dropout's reference is the identity (its training-mode mask is the frontend's: an input).
    return [grads[0]]


def neg(ctx: GradContext, grads: Grads) -> Grads:
    assert grads[0] is not None
    return [ctx.op("neg", grads[0])]


def _sigmoid(ctx: GradContext, g: Value) -> Value:
    y = ctx.y()
    return ctx.op("mul", y, ctx.op("sub", _k(ctx, 1.0), y))


def _tanh(ctx: GradContext, g: Value) -> Value:
    y = ctx.y()
    return ctx.op("sub", _k(ctx, 1.0), ctx.op("mul", y, y))


def _log(ctx: GradContext, g: Value) -> Value:
    return ctx.op("div", _k(ctx, 1.0), ctx.x(0))


def _sqrt(ctx: GradContext, g: Value) -> Value:
    return ctx.op("div", _k(ctx, 0.5), ctx.y())


def _rsqrt(ctx: GradContext, g: Value) -> Value:
    y = ctx.y()  # d/dx x^-1/2 = -1/2 x^-3/2 = -1/2 y^3
    return ctx.op("mul", _k(ctx, -0.5), ctx.op("mul", y, ctx.op("mul", y, y)))


def _abs(ctx: GradContext, g: Value) -> Value:
    x, zero = ctx.x(0), _k(ctx, 0.0)
    return ctx.op("sub", ctx.op("mask_gt", x, zero), ctx.op("mask_gt", zero, x))


def _silu(ctx: GradContext, g: Value) -> Value:
    x = ctx.x(0)
    s = ctx.op("sigmoid", x)  # d/dx x s(x) = s (1 + x (1 - s))
    return ctx.op("mul", s, ctx.op("add", _k(ctx, 1.0), ctx.op("mul", x, ctx.op("sub", _k(ctx, 1.0), s))))


def _erf(ctx: GradContext, g: Value) -> Value:
    x = ctx.x(0)
    return ctx.op("mul", _k(ctx, 2.0 / math.sqrt(math.pi)), ctx.op("exp", ctx.op("neg", ctx.op("mul", x, x))))


def _leaky_relu(ctx: GradContext, g: Value) -> Value:
    alpha = ctx.attrs["alpha"]  # PyTorch: slope 1 where x > 0, alpha elsewhere
    pos = ctx.op("mask_gt", ctx.x(0), _k(ctx, 0.0))
    return ctx.op("add", _k(ctx, alpha), ctx.op("mul", pos, _k(ctx, 1.0 - alpha)))


def _gelu(ctx: GradContext, g: Value) -> Value:
    x = ctx.x(0)
    one, half = _k(ctx, 1.0), _k(ctx, 0.5)
    if ctx.attrs["approximate"] == "tanh":
        c, a = math.sqrt(2.0 / math.pi), 0.044715
        x2 = ctx.op("mul", x, x)
        inner = ctx.op("mul", ctx.op("mul", x, _k(ctx, c)), ctx.op("add", one, ctx.op("mul", x2, _k(ctx, a))))
        t = ctx.op("tanh", inner)
        dinner = ctx.op("mul", _k(ctx, c), ctx.op("add", one, ctx.op("mul", x2, _k(ctx, 3 * a))))
        left = ctx.op("mul", half, ctx.op("add", one, t))
        right = ctx.op("mul", ctx.op("mul", half, x), ctx.op("mul", ctx.op("sub", one, ctx.op("mul", t, t)), dinner))
        return ctx.op("add", left, right)
    # d/dx x Phi(x) = Phi(x) + x phi(x)
    cdf = ctx.op("mul", half, ctx.op("add", one, ctx.op("erf", ctx.op("mul", x, _k(ctx, 1 / math.sqrt(2.0))))))
    pdf = ctx.op("mul", _k(ctx, 1 / math.sqrt(2 * math.pi)),
                 ctx.op("exp", ctx.op("mul", ctx.op("mul", x, x), _k(ctx, -0.5))))
    return ctx.op("add", cdf, ctx.op("mul", x, pdf))


def _exp(ctx: GradContext, g: Value) -> Value:
    return ctx.y()


sigmoid, tanh, log, sqrt, rsqrt, abs_, silu, erf, leaky_relu, gelu, exp = (
    _unary(fn) for fn in (_sigmoid, _tanh, _log, _sqrt, _rsqrt, _abs, _silu, _erf, _leaky_relu, _gelu, _exp))


# Exponentials and logarithms of other bases and arguments (C99's log1p, expm1, exp2, log2,
# log10, erfc): their derivatives from the input, or from the result where that is cheaper.


def _log1p(ctx: GradContext, g: Value) -> Value:
    return ctx.op("div", _k(ctx, 1.0), ctx.op("add", ctx.x(0), _k(ctx, 1.0)))


def _expm1(ctx: GradContext, g: Value) -> Value:
    return ctx.op("add", ctx.y(), _k(ctx, 1.0))  # exp(x) = expm1(x) + 1


def _exp2(ctx: GradContext, g: Value) -> Value:
    return ctx.op("mul", ctx.y(), _k(ctx, math.log(2.0)))


def _log_base(base: float) -> Callable[[GradContext, Value], Value]:
    def fn(ctx: GradContext, g: Value) -> Value:
        return ctx.op("div", _k(ctx, 1.0 / math.log(base)), ctx.x(0))

    return fn


def _erfc(ctx: GradContext, g: Value) -> Value:
    x = ctx.x(0)
    return ctx.op("mul", _k(ctx, -2.0 / math.sqrt(math.pi)), ctx.op("exp", ctx.op("neg", ctx.op("mul", x, x))))


log1p, expm1, exp2, log2, log10, erfc = (
    _unary(fn) for fn in (_log1p, _expm1, _exp2, _log_base(2.0), _log_base(10.0), _erfc))


# Piecewise ops whose gradient is zero on some pieces: PyTorch *selects* there (``where(inside,
# grad, 0)``), so a NaN or infinite gradient from above stops at them, where multiplying by a 0/1
# mask would pass NaN (0 * inf) on; the rules select too.


def relu(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]  # the gradient where x > 0; at NaN, PyTorch passes it (x <= 0 stops), TensorFlow does not
    assert g is not None
    if ctx.attrs["nan_grad"] == "pass":
        return _stopped(ctx, _compare_k(ctx, "le", 0.0), g)
    return _selected(ctx, _compare_k(ctx, "gt", 0.0), g)


def clamp(ctx: GradContext, grads: Grads) -> Grads:
    """torch.clamp and tf.clip_by_value pass the gradient where min <= x <= max, TF's Relu6 where
    min < x < max (NaN stops in all three); hardtanh and relu6 stop it where x <= min or x >= max
    (NaN passes)."""
    g = grads[0]
    assert g is not None
    lo, hi = ctx.attrs["min"], ctx.attrs["max"]
    bounds = [(lo, "ge", "gt", "le"), (hi, "le", "lt", "ge")]
    if ctx.attrs["nan_grad"] == "pass":
        outside = [_compare_k(ctx, stop, k) for k, _, _, stop in bounds if k is not None]
        if not outside:
            return [g]
        return _stopped(ctx, outside[0] if len(outside) == 1 else ctx.op("logical_or", *outside), g)
    inclusive = ctx.attrs["bounds_grad"] == "inclusive"
    masks = [_compare_k(ctx, closed if inclusive else open_, k) for k, closed, open_, _ in bounds if k is not None]
    if not masks:
        return [g]
    return _selected(ctx, masks[0] if len(masks) == 1 else ctx.op("logical_and", *masks), g)


def hardsigmoid(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]  # PyTorch: 1/6 strictly inside (-3, 3)
    assert g is not None
    inside = ctx.op("logical_and", _compare_k(ctx, "gt", -3.0), _compare_k(ctx, "lt", 3.0))
    return _selected(ctx, inside, ctx.op("mul", g, _k(ctx, 1.0 / 6.0)))


def hardswish(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]  # PyTorch: 0 up to -3 (x <= -3), x / 3 + 1/2 inside (-3, 3), g from 3 on and at NaN
    assert g is not None
    x = ctx.x(0)
    slope = ctx.op("add", ctx.op("div", x, _k(ctx, 3.0)), _k(ctx, 0.5))  # x / 3, as PyTorch: exactly 0 at -1.5
    middle = ctx.op("where", _compare_k(ctx, "lt", 3.0), ctx.op("mul", g, slope), g)
    return _stopped(ctx, _compare_k(ctx, "le", -3.0), middle)


def cast(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    src = ctx.in_type(0).dtype
    if not src.startswith("float"):
        return [None]
    return [g if g.dtype == src else ctx.op("cast", g, dtype=src)]


# --- element-wise, binary (NumPy broadcasting: gradients summed back to each operand's shape) ---


def _binary(fn: Callable[[GradContext, Value], tuple[Value | None, Value | None]]) -> GradientFn:
    def grad(ctx: GradContext, grads: Grads) -> Grads:
        g = grads[0]
        assert g is not None
        ga, gb = fn(ctx, g)
        return [None if ga is None or not ctx.need[0] else ctx.reduce_to(ga, ctx.in_type(0).shape),
                None if gb is None or not ctx.need[1] else ctx.reduce_to(gb, ctx.in_type(1).shape)]

    return grad


def _add(ctx: GradContext, g: Value) -> tuple[Value | None, Value | None]:
    return g, g


def _sub(ctx: GradContext, g: Value) -> tuple[Value | None, Value | None]:
    return g, ctx.op("neg", g) if ctx.need[1] else None


def _mul(ctx: GradContext, g: Value) -> tuple[Value | None, Value | None]:
    return (ctx.op("mul", g, ctx.x(1)) if ctx.need[0] else None,
            ctx.op("mul", g, ctx.x(0)) if ctx.need[1] else None)


def _div(ctx: GradContext, g: Value) -> tuple[Value | None, Value | None]:
    b = ctx.x(1)
    ga = ctx.op("div", g, b) if ctx.need[0] else None
    gb = None
    if ctx.need[1]:  # d(a/b)/db = -a / b^2
        gb = ctx.op("neg", ctx.op("div", ctx.op("mul", g, ctx.x(0)), ctx.op("mul", b, b)))
    return ga, gb


def _tie_grads(ctx: GradContext, g: Value, a_wins: str, b_wins: str) -> tuple[Value | None, Value | None]:
    """maximum (a_wins "gt") and minimum ("lt") as each framework differentiates them, NaN included:

    - ``ties="split"`` (torch.maximum): half each on a tie, else the gradient goes to each operand
      unless the other one wins (both take it where either is NaN);
    - ``"first"`` (TensorFlow): the first operand where it wins or ties, the second everywhere
      else (a NaN first operand gives it to the second);
    - ``"bound"`` (torch.clamp with tensor bounds, the bound second): the first operand where it
      wins or ties, the bound only where it wins outright."""
    a, b = ctx.x(0), ctx.x(1)
    zero = _k(ctx, 0.0)
    ties = ctx.attrs["ties"]
    ga = gb = None
    if ties == "split":
        half = ctx.op("mul", g, _k(ctx, 0.5))
        tie = ctx.op("eq", a, b)
        if ctx.need[0]:
            ga = ctx.op("where", tie, half, ctx.op("where", ctx.op(b_wins, a, b), zero, g))
        if ctx.need[1]:
            gb = ctx.op("where", tie, half, ctx.op("where", ctx.op(a_wins, a, b), zero, g))
        return ga, gb
    a_keeps = ctx.op("ge" if a_wins == "gt" else "le", a, b)
    if ctx.need[0]:
        ga = ctx.op("where", a_keeps, g, zero)
    if ctx.need[1]:
        gb = ctx.op("where", a_keeps, zero, g) if ties == "first" else ctx.op("where", ctx.op(b_wins, a, b), g, zero)
    return ga, gb


def _maximum(ctx: GradContext, g: Value) -> tuple[Value | None, Value | None]:
    return _tie_grads(ctx, g, "gt", "lt")


def _minimum(ctx: GradContext, g: Value) -> tuple[Value | None, Value | None]:
    return _tie_grads(ctx, g, "lt", "gt")


def _pow(ctx: GradContext, g: Value) -> tuple[Value | None, Value | None]:
    a, b = ctx.x(0), ctx.x(1)
    zero, one = _k(ctx, 0.0), _k(ctx, 1.0)
    ga = gb = None
    if ctx.need[0]:
        # b a^(b-1), with PyTorch's 0 where b == 0 (0 * a^-1 would be NaN at a = 0)
        b_is_0 = ctx.op("mul", ctx.op("mask_ge", b, zero), ctx.op("mask_ge", zero, b))
        expo = ctx.op("add", ctx.op("sub", b, one), b_is_0)
        ga = ctx.op("mul", g, ctx.op("mul", b, ctx.op("pow", a, expo)))
    if ctx.need[1]:
        # a^b log a, with PyTorch's 0 where a == 0 and b >= 0 (log 1 replaces log 0 there)
        a_is_0 = ctx.op("mul", ctx.op("mask_ge", a, zero), ctx.op("mask_ge", zero, a))
        safe = ctx.op("add", a, ctx.op("mul", a_is_0, ctx.op("mask_ge", b, zero)))
        gb = ctx.op("mul", g, ctx.op("mul", ctx.op("pow", a, b), ctx.op("log", safe)))
    return ga, gb


def _fmod(ctx: GradContext, g: Value) -> tuple[Value | None, Value | None]:
    """fmod(a, b) = a - trunc(a / b) * b: d/da 1, d/db -trunc(a / b) (PyTorch's rule)."""
    gb = None
    if ctx.need[1]:
        q = ctx.op("div", ctx.x(0), ctx.x(1))
        trunc = ctx.op("where", ctx.op("lt", q, _k(ctx, 0.0)), ctx.op("ceil", q), ctx.op("floor", q))
        gb = ctx.op("neg", ctx.op("mul", g, trunc))
    return g, gb


def _atan2(ctx: GradContext, g: Value) -> tuple[Value | None, Value | None]:
    """atan2(a, b): d/da b / (a^2 + b^2), d/db -a / (a^2 + b^2)."""
    a, b = ctx.x(0), ctx.x(1)
    r2 = ctx.op("add", ctx.op("mul", a, a), ctx.op("mul", b, b))
    return (ctx.op("div", ctx.op("mul", g, b), r2) if ctx.need[0] else None,
            ctx.op("neg", ctx.op("div", ctx.op("mul", g, a), r2)) if ctx.need[1] else None)


def _hypot(ctx: GradContext, g: Value) -> tuple[Value | None, Value | None]:
    """hypot(a, b) = y: d/da a / y, d/db b / y."""
    y = ctx.y()
    return (ctx.op("div", ctx.op("mul", g, ctx.x(0)), y) if ctx.need[0] else None,
            ctx.op("div", ctx.op("mul", g, ctx.x(1)), y) if ctx.need[1] else None)


def _copysign(ctx: GradContext, g: Value) -> tuple[Value | None, Value | None]:
    """copysign(a, b): d/da y / a (+1 or -1), 0 at a == 0 (PyTorch's rule); zeros to b (PyTorch
    gives b a zero gradient, not none: ``b.grad`` is a tensor of zeros after backward)."""
    a, zero = ctx.x(0), _k(ctx, 0.0)
    ratio = ctx.op("where", ctx.op("eq", a, zero), zero, ctx.op("div", ctx.y(), a))
    return ctx.op("mul", g, ratio), ctx.zeros(ctx.in_type(1)) if ctx.need[1] else None


add, sub, mul, div, maximum, minimum, pow_, fmod, atan2, hypot, copysign = (
    _binary(fn) for fn in (_add, _sub, _mul, _div, _maximum, _minimum, _pow, _fmod, _atan2, _hypot, _copysign))


def masks(ctx: GradContext, grads: Grads) -> Grads:
    return [None, None]  # piecewise constant: zero almost everywhere


def broadcast_to(ctx: GradContext, grads: Grads) -> Grads:
    assert grads[0] is not None
    return [ctx.reduce_to(grads[0], ctx.in_type(0).shape)]


def batch_norm(ctx: GradContext, grads: Grads) -> Grads:
    """Inference formula y = (x - mean) * r * w + b with r = 1/sqrt(var + eps), per channel."""
    g = grads[0]
    assert g is not None
    x_t = ctx.in_type(0)
    axis = ctx.attrs["axis"]
    bshape = (x_t.shape[axis],) + (1,) * (x_t.rank - 1 - axis)
    others = tuple(i for i in range(x_t.rank) if i != axis)

    def bc(v: Value) -> Value:
        return ctx.op("reshape", v, shape=bshape)

    def per_channel_sum(v: Value) -> Value:
        return ctx.op("sum", v, axes=others, keepdims=False) if others else v

    mean, var, w = ctx.x(1), ctx.x(2), ctx.x(3)
    r = ctx.op("rsqrt", ctx.op("add", var, ctx.const(ctx.attrs["eps"], var)))
    if _batch_statistics(ctx.node, others):
        return _batch_norm_training(ctx, g, bc, per_channel_sum, mean, r, w)
    out: Grads = [None] * 5
    if ctx.need[0]:
        out[0] = ctx.op("mul", g, bc(ctx.op("mul", w, r)))
    gsum = per_channel_sum(g) if any(ctx.need[1:]) else None
    gxhat = None
    if ctx.need[2] or ctx.need[3]:
        xhat = ctx.op("mul", ctx.op("sub", ctx.x(0), bc(mean)), bc(r))
        gxhat = per_channel_sum(ctx.op("mul", g, xhat))
    if ctx.need[1]:
        assert gsum is not None
        out[1] = ctx.op("neg", ctx.op("mul", gsum, ctx.op("mul", w, r)))
    if ctx.need[2]:
        assert gxhat is not None  # d/dvar = sum(g xhat) w * (-1/2) r^2
        out[2] = ctx.op("mul", ctx.op("mul", gxhat, w), ctx.op("mul", ctx.op("mul", r, r), ctx.const(-0.5, r)))
    if ctx.need[3]:
        out[3] = gxhat
    if ctx.need[4]:
        out[4] = gsum
    return out


def _batch_statistics(node: Node, others: tuple[int, ...]) -> bool:
    """Is ``node`` (a batch_norm) normalizing with its input's own batch statistics: its mean is
    ``mean(x)`` and its variance ``variance(x, that mean)``, both over every axis but the channel
    (what a training-mode BatchNorm imports as)?"""
    x, mean, var = node.inputs[0], node.inputs[1], node.inputs[2]
    m, v = mean.producer, var.producer
    return (bool(others) and m is not None and v is not None and m.op == "mean" and v.op == "variance"
            and m.inputs[0] is x and v.inputs[0] is x and v.inputs[1] is mean
            and tuple(m.attrs["axes"]) == others and tuple(v.attrs["axes"]) == others
            and not m.attrs["keepdims"] and not v.attrs["keepdims"])


def _batch_norm_training(ctx: GradContext, g: Value, bc: Callable[[Value], Value],
                         per_channel_sum: Callable[[Value], Value], mean: Value, r: Value, w: Value) -> Grads:
    """BatchNorm with batch statistics, differentiated as one function of x (the paths through
    the mean and the variance folded in, as PyTorch's native_batch_norm_backward does):

        dx = w r (g - sum(g) / N - xhat sum(g xhat) / N),  xhat = (x - mean) r
        dw = sum(g xhat),  db = sum(g)

    Two per-channel sums over g and the centred input, then one element-wise pass for dx
    (differentiating mean, variance and batch_norm one by one made about ten full-size passes).
    The mean and the variance get no gradient from here: their dependence on x is in dx."""
    x_t = ctx.in_type(0)
    count = x_t.numel // x_t.shape[ctx.attrs["axis"]]
    out: Grads = [None] * 5
    if not (ctx.need[0] or ctx.need[3] or ctx.need[4]):
        return out
    gsum = per_channel_sum(g)
    centred = ctx.op("sub", ctx.x(0), bc(mean))
    gc = per_channel_sum(ctx.op("mul", g, centred))  # sum(g (x - mean)) = sum(g xhat) / r
    if ctx.need[0]:
        wr = ctx.op("mul", w, r)
        shift = ctx.op("mul", ctx.op("mul", wr, gsum), ctx.const(-1.0 / count, g))
        slope = ctx.op("mul", ctx.op("mul", wr, ctx.op("mul", r, r)), ctx.op("mul", gc, ctx.const(-1.0 / count, g)))
        # (x - mean) slope, not x slope - mean slope: no cancellation where |mean| >> std
        out[0] = ctx.op("add", ctx.op("add", ctx.op("mul", g, bc(wr)), ctx.op("mul", centred, bc(slope))), bc(shift))
    if ctx.need[3]:
        out[3] = ctx.op("mul", gc, r)
    if ctx.need[4]:
        out[4] = gsum
    return out


# --- trigonometric and hyperbolic functions -------------------------------------------------
# Each derivative is written as the frameworks compute it, so that the edges come out as theirs:
# asin/acos/atanh at +-1 and acosh at 1 divide by zero (an infinite gradient), NaN propagates.


def _inverse_sqrt(ctx: GradContext, radicand: Value) -> Value:
    return ctx.op("div", _k(ctx, 1.0), ctx.op("sqrt", radicand))


def _sin(ctx: GradContext, g: Value) -> Value:
    return ctx.op("cos", ctx.x(0))


def _cos(ctx: GradContext, g: Value) -> Value:
    return ctx.op("neg", ctx.op("sin", ctx.x(0)))


def _tan(ctx: GradContext, g: Value) -> Value:
    y = ctx.y()  # d/dx tan x = 1 + tan^2 x
    return ctx.op("add", _k(ctx, 1.0), ctx.op("mul", y, y))


def _asin(ctx: GradContext, g: Value) -> Value:
    x = ctx.x(0)
    return _inverse_sqrt(ctx, ctx.op("sub", _k(ctx, 1.0), ctx.op("mul", x, x)))


def _acos(ctx: GradContext, g: Value) -> Value:
    return ctx.op("neg", _asin(ctx, g))


def _atan(ctx: GradContext, g: Value) -> Value:
    x = ctx.x(0)
    return ctx.op("div", _k(ctx, 1.0), ctx.op("add", _k(ctx, 1.0), ctx.op("mul", x, x)))


def _sinh(ctx: GradContext, g: Value) -> Value:
    return ctx.op("cosh", ctx.x(0))


def _cosh(ctx: GradContext, g: Value) -> Value:
    return ctx.op("sinh", ctx.x(0))


def _asinh(ctx: GradContext, g: Value) -> Value:
    x = ctx.x(0)
    return _inverse_sqrt(ctx, ctx.op("add", ctx.op("mul", x, x), _k(ctx, 1.0)))


def _acosh(ctx: GradContext, g: Value) -> Value:
    x = ctx.x(0)
    return _inverse_sqrt(ctx, ctx.op("sub", ctx.op("mul", x, x), _k(ctx, 1.0)))


def _atanh(ctx: GradContext, g: Value) -> Value:
    x = ctx.x(0)
    return ctx.op("div", _k(ctx, 1.0), ctx.op("sub", _k(ctx, 1.0), ctx.op("mul", x, x)))


sin, cos, tan, asin, acos, atan, sinh, cosh, asinh, acosh, atanh = (
    _unary(fn) for fn in (_sin, _cos, _tan, _asin, _acos, _atan, _sinh, _cosh, _asinh, _acosh, _atanh))


def zero(ctx: GradContext, grads: Grads) -> Grads:
    """Step functions (floor, ceil, round, sign): a zero gradient everywhere, also where the
    gradient from above is NaN or infinite (PyTorch's and TensorFlow's rules return zeros)."""
    return [ctx.zeros(ctx.in_type(0))]
