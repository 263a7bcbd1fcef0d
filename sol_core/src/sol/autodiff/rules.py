"""Gradient rules of core's builtin ops.

A rule is ``rule(ctx, grads) -> list[Value | None]`` (see :class:`sol.autodiff.GradContext`):
``grads[k]`` is the gradient of output k (or None), the result one gradient per input (None for
inputs that take none). Rules are written with sol's own ops, so the backward graph is planned
like any graph: element-wise chains fuse, convolution and dense gradients go to libraries
(``conv2d_backward_data`` / ``conv2d_backward_weight``, ``matmul``). Derivatives at kinks follow
PyTorch by default (ReLU'(0) = 0, clamp passes the gradient at its bounds, max/min split ties
evenly); where frameworks differ, a gradient-only attribute says which (clamp's ``bounds_grad``,
maximum/minimum's ``ties``: :attr:`sol.ops.registry.OpDef.gradient_attrs`), so each frontend's
gradients match its framework's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from sol.autodiff import recurrent_rules
from sol.autodiff.builder import GradContext
from sol.ir import Node, Value
from sol.ops.registry import GradientFn, OpDef
from sol.ops.window import adaptive_bounds

Grads = list[Value | None]
RULES: dict[str, GradientFn] = {}


def rule(*names: str) -> Callable[[GradientFn], GradientFn]:
    def register(fn: GradientFn) -> GradientFn:
        for n in names:
            RULES[n] = fn
        return fn

    return register


def attach_builtin_rules(ops: list[OpDef]) -> list[OpDef]:
    """Give each builtin op its rule (ops that already carry one keep it)."""
    for op in ops:
        if op.gradient is None:
            op.gradient = RULES.get(op.name)
    return ops


def no_gradient(ctx: GradContext, grads: Grads) -> Grads:
    """For ops whose outputs are not differentiable (integer or boolean results, selections)."""
    return [None] * len(ctx.node.inputs)


# --- element-wise, unary ------------------------------------------------------------------------


def _unary(fn: Callable[[GradContext, Value], Value]) -> GradientFn:
    """``d/dx`` as a tensor from the context; the rule multiplies by the output gradient."""
    def grad(ctx: GradContext, grads: Grads) -> Grads:
        g = grads[0]
        assert g is not None
        return [ctx.op("mul", g, fn(ctx, g))] + [None] * (len(ctx.node.inputs) - 1)

    return grad


def _k(ctx: GradContext, value: float) -> Value:
    return ctx.const(value, ctx.node.outputs[0])


@rule("identity", "dropout")
def _pass_through(ctx: GradContext, grads: Grads) -> Grads:
    # dropout's reference is the identity (its training-mode mask is the frontend's: an input).
    return [grads[0]]


@rule("neg")
def _neg(ctx: GradContext, grads: Grads) -> Grads:
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


for _name, _fn in {"sigmoid": _sigmoid, "tanh": _tanh, "log": _log, "sqrt": _sqrt, "rsqrt": _rsqrt, "abs": _abs,
                   "silu": _silu, "erf": _erf, "leaky_relu": _leaky_relu, "gelu": _gelu,
                   "exp": lambda ctx, g: ctx.y()}.items():
    RULES[_name] = _unary(_fn)


# Piecewise ops whose gradient is zero on some pieces: PyTorch *selects* there (``where(inside,
# grad, 0)``), so a NaN or infinite gradient from above stops at them, where multiplying by a 0/1
# mask would pass NaN (0 * inf) on; the rules select too.


def _selected(ctx: GradContext, inside: Value, g: Value) -> list[Value | None]:
    return [ctx.op("where", inside, g, _k(ctx, 0.0))] + [None] * (len(ctx.node.inputs) - 1)


def _compare_k(ctx: GradContext, op: str, value: float) -> Value:
    return ctx.op(op, ctx.x(0), _k(ctx, value))


def _stopped(ctx: GradContext, outside: Value, g: Value) -> list[Value | None]:
    """``where(outside, 0, g)``: the gradient passes wherever ``outside`` is false, NaN included."""
    return [ctx.op("where", outside, _k(ctx, 0.0), g)] + [None] * (len(ctx.node.inputs) - 1)


@rule("relu")
def _relu(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]  # the gradient where x > 0; at NaN, PyTorch passes it (x <= 0 stops), TensorFlow does not
    assert g is not None
    if ctx.attrs["nan_grad"] == "pass":
        return _stopped(ctx, _compare_k(ctx, "le", 0.0), g)
    return _selected(ctx, _compare_k(ctx, "gt", 0.0), g)


@rule("clamp")
def _clamp(ctx: GradContext, grads: Grads) -> Grads:
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


@rule("hardsigmoid")
def _hardsigmoid(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]  # PyTorch: 1/6 strictly inside (-3, 3)
    assert g is not None
    inside = ctx.op("logical_and", _compare_k(ctx, "gt", -3.0), _compare_k(ctx, "lt", 3.0))
    return _selected(ctx, inside, ctx.op("mul", g, _k(ctx, 1.0 / 6.0)))


@rule("hardswish")
def _hardswish(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]  # PyTorch: 0 up to -3 (x <= -3), x / 3 + 1/2 inside (-3, 3), g from 3 on and at NaN
    assert g is not None
    x = ctx.x(0)
    slope = ctx.op("add", ctx.op("div", x, _k(ctx, 3.0)), _k(ctx, 0.5))  # x / 3, as PyTorch: exactly 0 at -1.5
    middle = ctx.op("where", _compare_k(ctx, "lt", 3.0), ctx.op("mul", g, slope), g)
    return _stopped(ctx, _compare_k(ctx, "le", -3.0), middle)


@rule("cast")
def _cast(ctx: GradContext, grads: Grads) -> Grads:
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


for _name, _bfn in {"add": _add, "sub": _sub, "mul": _mul, "div": _div, "maximum": _maximum,
                    "minimum": _minimum, "pow": _pow}.items():
    RULES[_name] = _binary(_bfn)


@rule("mask_gt", "mask_ge")
def _masks(ctx: GradContext, grads: Grads) -> Grads:
    return [None, None]  # piecewise constant: zero almost everywhere


@rule("broadcast_to")
def _broadcast_to(ctx: GradContext, grads: Grads) -> Grads:
    assert grads[0] is not None
    return [ctx.reduce_to(grads[0], ctx.in_type(0).shape)]


@rule("batch_norm")
def _batch_norm(ctx: GradContext, grads: Grads) -> Grads:
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


# --- reductions, normalizations -----------------------------------------------------------------


@rule("sum", "mean")
def _reduce(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    shape = ctx.in_type(0).shape
    axes = ctx.attrs["axes"]
    out = ctx.expand(g, axes, ctx.attrs["keepdims"], shape)
    if ctx.node.op == "mean":
        count = int(np.prod([shape[a] for a in axes]))
        out = ctx.scale(out, 1.0 / count) if count else out
    return [out]


@rule("variance")
def _variance(ctx: GradContext, grads: Grads) -> Grads:
    """v = mean((x - c)^2): dx = g * 2 (x - c) / N, dc = -sum(dx) over the reduced axes."""
    g = grads[0]
    assert g is not None
    shape = ctx.in_type(0).shape
    axes, keepdims = ctx.attrs["axes"], ctx.attrs["keepdims"]
    count = int(np.prod([shape[a] for a in axes]))
    centre = ctx.expand(ctx.x(1), axes, keepdims, shape)
    dx = ctx.op("mul", ctx.expand(ctx.scale(g, 2.0 / count), axes, keepdims, shape),
                ctx.op("sub", ctx.x(0), centre))
    out: Grads = [dx if ctx.need[0] else None, None]
    if ctx.need[1]:
        out[1] = ctx.op("neg", ctx.op("sum", dx, axes=axes, keepdims=keepdims))
    return out


@rule("softmax")
def _softmax(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    y = ctx.y()  # dx = y (g - sum(g y))
    s = ctx.op("sum", ctx.op("mul", g, y), axes=(ctx.attrs["axis"],), keepdims=True)
    return [ctx.op("mul", y, ctx.op("sub", g, s))]


@rule("log_softmax")
def _log_softmax(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    s = ctx.op("sum", g, axes=(ctx.attrs["axis"],), keepdims=True)  # dx = g - softmax(x) sum(g)
    return [ctx.op("sub", g, ctx.op("mul", ctx.op("exp", ctx.y()), s))]


# --- data movement ------------------------------------------------------------------------------


@rule("reshape")
def _reshape(ctx: GradContext, grads: Grads) -> Grads:
    assert grads[0] is not None
    return [ctx.op("reshape", grads[0], shape=ctx.in_type(0).shape)]


@rule("transpose")
def _transpose(ctx: GradContext, grads: Grads) -> Grads:
    assert grads[0] is not None
    perm = ctx.attrs["perm"]
    inverse = tuple(int(i) for i in np.argsort(perm))
    return [ctx.op("transpose", grads[0], perm=inverse)]


@rule("concat")
def _concat(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    axis = ctx.attrs["axis"]
    out: Grads = []
    start = 0
    for i, v in enumerate(ctx.node.inputs):
        stop = start + v.shape[axis]
        out.append(ctx.op("slice", g, axes=(axis,), starts=(start,), stops=(stop,)) if ctx.need[i] else None)
        start = stop
    return out


@rule("pad")
def _pad(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    shape = ctx.in_type(0).shape
    pads = ctx.attrs["pads"]
    axes = tuple(i for i, (lo, hi) in enumerate(pads) if lo or hi)
    if not axes:
        return [g]
    return [ctx.op("slice", g, axes=axes, starts=tuple(pads[a][0] for a in axes),
                   stops=tuple(pads[a][0] + shape[a] for a in axes))]


@rule("slice")
def _slice(ctx: GradContext, grads: Grads) -> Grads:
    """Zeros around the gradient: a pad per axis; a step s > 1 first interleaves s - 1 zeros
    after each element (reshape to (..., n, 1, ...), pad the new axis to s, reshape back)."""
    g = grads[0]
    assert g is not None
    shape = list(ctx.in_type(0).shape)
    if g.type.numel == 0:
        return [ctx.zeros(ctx.in_type(0))]
    for ax, start, step in zip(ctx.attrs["axes"], ctx.attrs["starts"], ctx.attrs["steps"]):
        n = g.shape[ax]
        if step > 1:
            cur = list(g.shape)
            g = ctx.op("reshape", g, shape=tuple(cur[:ax + 1] + [1] + cur[ax + 1:]))
            pads = [(0, 0)] * g.type.rank
            pads[ax + 1] = (0, step - 1)
            g = ctx.op("pad", g, pads=tuple(pads))
            g = ctx.op("reshape", g, shape=tuple(cur[:ax] + [n * step] + cur[ax + 1:]))
            covered = n * step
            if start + covered > shape[ax]:  # the zeros after the last element hang over the end
                covered = shape[ax] - start
                g = ctx.op("slice", g, axes=(ax,), starts=(0,), stops=(covered,))
        else:
            covered = n
        pads = [(0, 0)] * g.type.rank
        pads[ax] = (start, shape[ax] - start - covered)
        if pads[ax] != (0, 0):
            g = ctx.op("pad", g, pads=tuple(pads))
    return [g]


# --- windows --------------------------------------------------------------------------------


@rule("max_pool2d")
def _max_pool(ctx: GradContext, grads: Grads) -> Grads:
    assert grads[0] is not None
    a = ctx.attrs
    return [ctx.op("max_pool2d_backward", ctx.x(0), grads[0], **_pool_attrs(a))]


def avg_pool_counts(a: dict[str, Any], h: int, w: int, oh: int, ow: int) -> np.ndarray:
    """The divisor of each output of avg_pool2d, (OH, OW): the same rule as the forward op."""
    (pt, pb), (pl, pr) = a["padding"]
    kh, kw = a["kernel"]
    sh, sw = a["stride"]

    def extent(size: int, out: int, k: int, s: int, lo: int, hi: int) -> np.ndarray:
        start = np.arange(out) * s - lo
        if a["count_include_pad"]:
            return np.minimum(start + k, size + hi) - start
        return np.minimum(start + k, size) - np.maximum(start, 0)

    return np.outer(extent(h, oh, kh, sh, pt, pb), extent(w, ow, kw, sw, pl, pr)).astype(np.float64)


@rule("avg_pool2d")
def _avg_pool(ctx: GradContext, grads: Grads) -> Grads:
    """Each output gradient, divided by its window's divisor, spreads evenly over its window: the
    input gradient of a depthwise convolution with an all-ones kernel (a library primitive)."""
    g = grads[0]
    assert g is not None
    a = ctx.attrs
    x_t = ctx.in_type(0)
    n, c, h, w = x_t.shape
    oh, ow = g.shape[2:]
    kh, kw = a["kernel"]
    if a["divisor"] is not None:
        g = ctx.scale(g, 1.0 / a["divisor"])
    else:
        g = ctx.op("mul", g, ctx.const(1.0 / avg_pool_counts(a, h, w, oh, ow), g))
    (pt, pb), (pl, pr) = a["padding"]
    # ceil_mode windows may hang over the bottom/right padding: pad the convolution to match.
    pb = max(pb, (oh - 1) * a["stride"][0] + kh - h - pt)
    pr = max(pr, (ow - 1) * a["stride"][1] + kw - w - pl)
    ones = ctx.const(np.ones((c, 1, kh, kw)), g)
    return [ctx.op("conv2d_backward_data", g, ones, shape=x_t.shape, stride=a["stride"],
                   padding=((pt, pb), (pl, pr)), dilation=1, groups=c)]


def _window_matrix(size: int, out: int) -> np.ndarray:
    """(out, size): row i averages adaptive window i."""
    m = np.zeros((out, size))
    for i, (lo, hi) in enumerate(adaptive_bounds(size, out)):
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


@rule("adaptive_avg_pool2d")
def _adaptive_avg_pool(ctx: GradContext, grads: Grads) -> Grads:
    """y = A x B^T per plane (A, B average the windows), so dx = A^T g B: two matrix products
    with constant matrices; global pooling is a plain broadcast."""
    g = grads[0]
    assert g is not None
    shape = ctx.in_type(0).shape
    h, w = shape[2:]
    oh, ow = ctx.attrs["output_size"]
    if (oh, ow) == (1, 1):
        return [ctx.scale(ctx.op("broadcast_to", g, shape=shape), 1.0 / (h * w))]
    t = ctx.op("matmul", g, ctx.const(_window_matrix(w, ow), g))  # (N, C, OH, W)
    return [ctx.op("matmul", ctx.const(_window_matrix(h, oh).T.copy(), g), t)]  # (N, C, H, W)


# --- compute bound ------------------------------------------------------------------------------


def _conv_attrs(a: dict[str, Any]) -> dict[str, Any]:
    return {"stride": a["stride"], "padding": a["padding"], "dilation": a["dilation"], "groups": a["groups"]}


@rule("conv2d")
def _conv2d(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    a = _conv_attrs(ctx.attrs)
    out: Grads = [None] * len(ctx.node.inputs)
    if ctx.need[0]:
        out[0] = ctx.op("conv2d_backward_data", g, ctx.x(1), shape=ctx.in_type(0).shape, **a)
    if ctx.need[1]:
        out[1] = ctx.op("conv2d_backward_weight", ctx.x(0), g, shape=ctx.in_type(1).shape, **a)
    if len(out) == 3 and ctx.need[2]:
        out[2] = ctx.op("sum", g, axes=(0, 2, 3), keepdims=False)
    return out


@rule("conv2d_backward_data")
def _conv_bwd_data(ctx: GradContext, grads: Grads) -> Grads:
    """Linear in both inputs: dgy is a convolution of the gradient, dw a weight gradient."""
    g = grads[0]
    assert g is not None
    a = _conv_attrs(ctx.attrs)
    out: Grads = [None, None]
    if ctx.need[0]:
        out[0] = ctx.op("conv2d", g, ctx.x(1), **a)
    if ctx.need[1]:
        out[1] = ctx.op("conv2d_backward_weight", g, ctx.x(0), shape=ctx.in_type(1).shape, **a)
    return out


@rule("conv2d_backward_weight")
def _conv_bwd_weight(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    a = _conv_attrs(ctx.attrs)
    out: Grads = [None, None]
    if ctx.need[0]:
        out[0] = ctx.op("conv2d_backward_data", ctx.x(1), g, shape=ctx.in_type(0).shape, **a)
    if ctx.need[1]:
        out[1] = ctx.op("conv2d", ctx.x(0), g, **a)
    return out


def _rows(ctx: GradContext, v: Value) -> Value:
    """(..., k) as (rows, k) (a vector is one row)."""
    rows = int(np.prod(v.shape[:-1]))
    return v if v.type.rank == 2 else ctx.op("reshape", v, shape=(rows, v.shape[-1]))


def _t(ctx: GradContext, v: Value) -> Value:
    """Swap the last two axes."""
    perm = tuple(range(v.type.rank - 2)) + (v.type.rank - 1, v.type.rank - 2)
    return ctx.op("transpose", v, perm=perm)


@rule("dense")
def _dense(ctx: GradContext, grads: Grads) -> Grads:
    """y = x W^T + b: dx = g W, dW = g^T x (batch folded into rows), db = sum of g's rows."""
    g = grads[0]
    assert g is not None
    x_t = ctx.in_type(0)
    g2 = _rows(ctx, g)
    out: Grads = [None] * len(ctx.node.inputs)
    if ctx.need[0]:
        out[0] = ctx.op("reshape", ctx.op("matmul", g2, ctx.x(1)), shape=x_t.shape)
    if ctx.need[1]:
        out[1] = ctx.op("matmul", _t(ctx, g2), _rows(ctx, ctx.x(0)))
    if len(out) == 3 and ctx.need[2]:
        out[2] = ctx.reduce_to(g, ctx.in_type(2).shape)
    return out


@rule("matmul")
def _matmul(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    out: Grads = [None, None]
    if ctx.need[0]:
        out[0] = ctx.reduce_to(ctx.op("matmul", g, _t(ctx, ctx.x(1))), ctx.in_type(0).shape)
    if ctx.need[1]:
        out[1] = ctx.reduce_to(ctx.op("matmul", _t(ctx, ctx.x(0)), g), ctx.in_type(1).shape)
    return out


@rule("max_pool2d_backward")
def _max_pool_bwd(ctx: GradContext, grads: Grads) -> Grads:
    """Piecewise constant in x; linear in the output gradient, and its transpose reads the
    incoming gradient back at the chosen positions."""
    g = grads[0]
    assert g is not None
    return [None, ctx.op("max_pool2d_select", ctx.x(0), g, **_pool_attrs(ctx.attrs))]


@rule("max_pool2d_select")
def _max_pool_select(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    return [None, ctx.op("max_pool2d_backward", ctx.x(0), g, **_pool_attrs(ctx.attrs))]


def _pool_attrs(a: dict[str, Any]) -> dict[str, Any]:
    return {k: a[k] for k in ("kernel", "stride", "padding", "dilation", "ceil_mode")}


# --- index and selection ops (ops/index.py) ------------------------------------------------------

for _name in ("eq", "ne", "lt", "le", "gt", "ge", "logical_not", "logical_and", "logical_or", "argmax", "argmin"):
    RULES[_name] = no_gradient  # boolean or integer results


@rule("where")
def _where(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    cond, zero = ctx.x(0), ctx.const(0.0, g)
    return [None,
            ctx.reduce_to(ctx.op("where", cond, g, zero), ctx.in_type(1).shape) if ctx.need[1] else None,
            ctx.reduce_to(ctx.op("where", cond, zero, g), ctx.in_type(2).shape) if ctx.need[2] else None]


@rule("max", "min")
def _select(ctx: GradContext, grads: Grads) -> Grads:
    """``ties="split"`` (PyTorch's amax/amin): the gradient is shared evenly by the elements
    equal to the result. ``ties="first"`` (PyTorch's ``max(x, dim)``): it goes to the element
    argmax/argmin names (the first of them, or the first NaN), selected, as eager does."""
    g = grads[0]
    assert g is not None
    x = ctx.x(0)
    axes = ctx.attrs["axes"]
    kept = tuple(1 if i in axes else d for i, d in enumerate(x.shape))
    if not ctx.attrs["keepdims"]:
        g = ctx.op("reshape", g, shape=kept)
    if ctx.attrs.get("ties") == "first":
        (axis,) = axes
        index = ctx.op("arg" + ctx.node.op, x, axis=axis, keepdims=True)
        position = ctx.const(np.arange(x.shape[axis]).reshape((-1,) + (1,) * (x.type.rank - axis - 1)), index)
        return [ctx.op("where", ctx.op("eq", position, index), g, ctx.const(0.0, g))]
    y = ctx.y()
    if not ctx.attrs["keepdims"]:
        y = ctx.op("reshape", y, shape=kept)
    hit = ctx.op("mul", ctx.op("mask_ge", x, y), ctx.op("mask_ge", y, x))
    count = ctx.op("sum", hit, axes=axes, keepdims=True)
    return [ctx.op("mul", hit, ctx.op("div", g, count))]


@rule("gather")
def _gather(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None
    a = ctx.attrs
    size = ctx.in_type(0).shape[a["axis"]]
    if a.get("padding") is not None:
        g = _without_padding_rows(ctx, g, a["padding"], size)
    return [ctx.op("gather_backward", ctx.x(1), g, axis=a["axis"], size=size, wrap=a["wrap"]), None]


def _without_padding_rows(ctx: GradContext, g: Value, row: int, size: int) -> Value:
    """PyTorch's ``padding_idx``: the gathered rows that read the padding row send it no
    gradient. Selected (``where``), not multiplied by a 0/1 mask: a NaN or infinite gradient
    must not reach the padding row either (eager's is exactly zero)."""
    idx = ctx.x(1)
    keep = ctx.op("ne", idx, ctx.const(row, idx))
    if ctx.attrs["wrap"] and np.iinfo(idx.dtype).min <= row - size:  # -size + row names the row too
        keep = ctx.op("logical_and", keep, ctx.op("ne", idx, ctx.const(row - size, idx)))
    ax = ctx.attrs["axis"]
    keep = ctx.op("reshape", keep, shape=(1,) * ax + idx.shape + (1,) * (g.type.rank - ax - idx.type.rank))
    return ctx.op("where", keep, g, ctx.const(0.0, g))


@rule("gather_backward")
def _gather_bwd(ctx: GradContext, grads: Grads) -> Grads:
    g = grads[0]
    assert g is not None  # linear in the gradient rows: reading them back is a gather
    return [None, ctx.op("gather", g, ctx.x(0), axis=ctx.attrs["axis"], wrap=ctx.attrs["wrap"])]


# conv_transpose2d and resize2d bring their own rules (ops/spatial.py).


# --- recurrent ops (ops/recurrent.py): backpropagation through time ------------------------------

RULES.update(lstm=recurrent_rules.lstm, gru=recurrent_rules.gru, lstm_recurrence=recurrent_rules.lstm_recurrence,
             gru_recurrence=recurrent_rules.gru_recurrence)
