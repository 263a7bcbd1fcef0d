"""Element-wise ONNX operators: activations, arithmetic (NumPy broadcasting, as ONNX's), comparisons,
logic, ``Where``, ``Clip``, ``Cast``."""

from __future__ import annotations

from typing import Any

import numpy as np

from sol.plugin_api import Value
from sol_onnx.ops.base import ONNX_DTYPES, Context, Unsupported, attr, converts

FLOATS = ("float32", "float64", "float16")

_MATH = ("Sin", "Cos", "Tan", "Asin", "Acos", "Atan", "Sinh", "Cosh", "Asinh", "Acosh", "Atanh", "Floor", "Ceil",
         "Round")
_UNARY = {"Relu": "relu", "Sigmoid": "sigmoid", "Tanh": "tanh", "Exp": "exp", "Log": "log", "Sqrt": "sqrt",
          "Neg": "neg", "Abs": "abs", "Erf": "erf", "Identity": "identity", "HardSwish": "hardswish",
          "Sign": "sign", **{name: name.lower() for name in _MATH}}
_BINARY = {"Add": "add", "Sub": "sub", "Mul": "mul", "Div": "div", "Equal": "eq", "Less": "lt",
           "LessOrEqual": "le", "Greater": "gt", "GreaterOrEqual": "ge", "And": "logical_and",
           "Or": "logical_or"}
_FLOAT_ONLY = {"Sigmoid", "Tanh", "Exp", "Log", "Sqrt", "Erf", "HardSwish", *_MATH}


def _float(v: Value, what: str) -> None:
    if v.dtype not in FLOATS:
        raise Unsupported(f"{what} of {v.dtype}")


@converts(*_UNARY)
def unary(ctx: Context, node: Any) -> list[Value]:
    (x,) = ctx.inputs(node)
    if node.op_type in _FLOAT_ONLY:
        _float(x, node.op_type)
    if node.op_type in ("Relu", "Neg", "Abs", "Sign") and x.dtype.startswith("uint"):
        raise Unsupported(f"{node.op_type} of {x.dtype}")
    return [ctx.emit(_UNARY[node.op_type], [x])]


@converts("IsNaN", "IsInf")
def classify(ctx: Context, node: Any) -> list[Value | np.ndarray]:
    """IsNaN; IsInf with ``detect_positive``/``detect_negative`` (both by default)."""
    x = ctx.value(node.input[0])
    _float(x, node.op_type)
    if node.op_type == "IsNaN":
        return [ctx.emit("isnan", [x])]
    positive, negative = bool(attr(node, "detect_positive", 1)), bool(attr(node, "detect_negative", 1))
    if not (positive or negative):  # detects nothing: all false
        return [ctx.emit("broadcast_to", [ctx.const(False)], shape=x.shape)]
    sign = "both" if positive and negative else "positive" if positive else "negative"
    return [ctx.emit("isinf", [x], sign=sign)]


@converts(*_BINARY)
def binary(ctx: Context, node: Any) -> list[Value | np.ndarray]:
    if node.op_type == "Div":
        known = _known_integers(ctx, node)
        if known is not None:  # shape arithmetic: C's division, truncating toward zero, as ONNX's
            x, y = known
            q, r = np.floor_divide(x, y), np.remainder(x, y)
            return [(q + ((r != 0) & ((x < 0) ^ (y < 0))).astype(q.dtype)).astype(x.dtype)]
    a, b = ctx.inputs(node)
    if a.dtype != b.dtype:
        raise Unsupported(f"operands of {a.dtype} and {b.dtype}")
    if node.op_type == "Div" and a.dtype not in FLOATS:
        raise Unsupported(f"integer Div ({a.dtype})")
    return [ctx.emit(_BINARY[node.op_type], [a, b])]


def _known_integers(ctx: Context, node: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """Both operands, where both are integer arrays known now (shape arithmetic), else None."""
    x, y = ctx.static(node.input[0]), ctx.static(node.input[1])
    if x is None or y is None or x.dtype.kind not in "iu" or y.dtype.kind not in "iu":
        return None
    if not np.all(y):
        raise Unsupported("an integer division by zero")
    return x, y


@converts("Mod")
def mod(ctx: Context, node: Any) -> list[np.ndarray]:
    """Only on arrays known now (the shape arithmetic of expanded ONNX functions): sol has no remainder op."""
    x, y = ctx.static(node.input[0]), ctx.static(node.input[1])
    if x is None or y is None:
        raise Unsupported("Mod computed at run time (sol has no remainder operation)")
    if x.dtype.kind in "iu" and not np.all(y):
        raise Unsupported("an integer remainder by zero")
    fmod = int(attr(node, "fmod", 0))
    return [np.asarray(np.fmod(x, y) if fmod else np.mod(x, y)).astype(x.dtype)]


@converts("Not")
def logical_not(ctx: Context, node: Any) -> list[Value]:
    return [ctx.emit("logical_not", ctx.inputs(node))]


@converts("Pow")
def power(ctx: Context, node: Any) -> list[Value]:
    x, y = ctx.inputs(node)
    _float(x, "Pow")
    exponent = ctx.static(node.input[1])
    if exponent is not None and exponent.size == 1:  # the common x**2, x**0.5: cheaper and exact
        e = float(exponent.reshape(()))
        if e == 2.0:
            y2 = ctx.emit("mul", [x, x])
            return [ctx.reshape(y2, np.broadcast_shapes(x.shape, exponent.shape))]
    return [ctx.emit("pow", [x, ctx.cast(y, x.dtype)])]


@converts("Max", "Min", "Sum", "Mean")
def variadic(ctx: Context, node: Any) -> list[Value]:
    values = ctx.inputs(node)
    if len({v.dtype for v in values}) != 1:
        raise Unsupported("operands of different dtypes")
    op = {"Max": "maximum", "Min": "minimum", "Sum": "add", "Mean": "add"}[node.op_type]
    out = values[0]
    for v in values[1:]:
        out = ctx.emit(op, [out, v])
    if node.op_type == "Mean":
        _float(out, "Mean")
        out = ctx.emit("div", [out, ctx.scalar(len(values), out)])
    elif len(values) == 1:
        out = ctx.emit("identity", [out])
    return [out]


@converts("Where")
def where(ctx: Context, node: Any) -> list[Value]:
    c, a, b = ctx.inputs(node)
    if a.dtype != b.dtype:
        raise Unsupported(f"branches of {a.dtype} and {b.dtype}")
    return [ctx.emit("where", [c, a, b])]


@converts("Clip")
def clip(ctx: Context, node: Any) -> list[Value]:
    x = ctx.value(node.input[0])
    bounds: list[float | None] = [attr(node, "min"), attr(node, "max")]  # opset < 11: attributes
    for i in (0, 1):
        if ctx.has(node, i + 1):
            b = ctx.static(node.input[i + 1])
            if b is None:  # a bound computed at run time: max/min with it (NaN still propagates)
                v = ctx.value(node.input[i + 1])
                x = ctx.emit("maximum" if i == 0 else "minimum", [x, v])
                continue
            bounds[i] = b.reshape(()).item()
    if x.dtype not in FLOATS:
        raise Unsupported(f"Clip of {x.dtype}")
    lo, hi = bounds
    if lo is not None and hi is not None and lo > hi:  # ONNX: every element becomes max
        return [ctx.emit("clamp", [x], min=hi, max=hi)]
    if lo is None and hi is None:
        return [ctx.emit("identity", [x])]
    return [ctx.emit("clamp", [x], min=lo, max=hi)]


@converts("Cast")
def cast(ctx: Context, node: Any) -> list[Value]:
    x = ctx.value(node.input[0])
    to = ONNX_DTYPES.get(int(attr(node, "to")))
    if to is None:
        raise Unsupported(f"cast to ONNX type {attr(node, 'to')}")
    if x.dtype in FLOATS and to not in FLOATS and to != "bool":
        raise Unsupported(f"Cast {x.dtype} -> {to} (ONNX leaves out-of-range and NaN results undefined)")
    return [ctx.emit("cast", [x], dtype=to)]


@converts("CastLike")
def cast_like(ctx: Context, node: Any) -> list[Value | np.ndarray]:
    """A cast to the second input's dtype (its values do not matter: a known first input folds now)."""
    target = ctx.static(node.input[1])
    dtype = str(target.dtype) if target is not None else ctx.value(node.input[1]).dtype
    known = ctx.static(node.input[0])
    if known is not None and (known.dtype.kind not in "fc" or np.dtype(dtype).kind in "fcb"):
        return [known.astype(dtype)]
    return [ctx.emit("cast", [ctx.value(node.input[0])], dtype=dtype)]


@converts("LeakyRelu")
def leaky_relu(ctx: Context, node: Any) -> list[Value]:
    (x,) = ctx.inputs(node)
    _float(x, "LeakyRelu")
    return [ctx.emit("leaky_relu", [x], alpha=float(attr(node, "alpha", 0.01)))]


@converts("HardSigmoid")
def hard_sigmoid(ctx: Context, node: Any) -> list[Value]:
    (x,) = ctx.inputs(node)
    _float(x, "HardSigmoid")
    alpha, beta = float(attr(node, "alpha", 0.2)), float(attr(node, "beta", 0.5))
    y = ctx.emit("add", [ctx.emit("mul", [x, ctx.scalar(alpha, x)]), ctx.scalar(beta, x)])
    return [ctx.emit("clamp", [y], min=0.0, max=1.0)]


@converts("Reciprocal")
def reciprocal(ctx: Context, node: Any) -> list[Value]:
    (x,) = ctx.inputs(node)
    _float(x, "Reciprocal")
    return [ctx.emit("div", [ctx.scalar(1.0, x), x])]


@converts("Gelu")
def gelu(ctx: Context, node: Any) -> list[Value]:
    (x,) = ctx.inputs(node)
    _float(x, "Gelu")
    approximate = attr(node, "approximate", "none")
    if approximate not in ("none", "tanh"):
        raise Unsupported(f"approximate={approximate!r}")
    return [ctx.emit("gelu", [x], approximate=approximate)]


@converts("PRelu")
def prelu(ctx: Context, node: Any) -> list[Value]:
    x, slope = ctx.inputs(node)
    _float(x, "PRelu")
    negative = ctx.emit("lt", [x, ctx.scalar(0.0, x)])
    return [ctx.emit("where", [negative, ctx.emit("mul", [x, slope]), x])]


@converts("Elu")
def elu(ctx: Context, node: Any) -> list[Value]:
    (x,) = ctx.inputs(node)
    _float(x, "Elu")
    alpha = ctx.scalar(float(attr(node, "alpha", 1.0)), x)
    below = ctx.emit("mul", [alpha, ctx.emit("sub", [ctx.emit("exp", [x]), ctx.scalar(1.0, x)])])
    return [ctx.emit("where", [ctx.emit("gt", [x, ctx.scalar(0.0, x)]), x, below])]


@converts("Softsign")
def softsign(ctx: Context, node: Any) -> list[Value]:
    (x,) = ctx.inputs(node)
    _float(x, "Softsign")
    return [ctx.emit("div", [x, ctx.emit("add", [ctx.emit("abs", [x]), ctx.scalar(1.0, x)])])]


@converts("Dropout")
def dropout(ctx: Context, node: Any) -> list[Value | None]:
    """Inference: the identity (``training_mode`` given and true at run time: ONNX Runtime's)."""
    if ctx.has(node, 2):
        training = ctx.need_static(node.input[2], "training_mode")
        if bool(training.reshape(())):
            raise Unsupported("training_mode=True")
    if len(node.output) > 1 and node.output[1]:
        raise Unsupported("the mask output")
    return [ctx.emit("identity", [ctx.value(node.input[0])])]


@converts("Softplus")
def softplus(ctx: Context, node: Any) -> list[Value]:
    """log(exp(x) + 1), as ONNX defines it (large x overflows to inf as there)."""
    (x,) = ctx.inputs(node)
    _float(x, "Softplus")
    return [ctx.emit("log", [ctx.emit("add", [ctx.emit("exp", [x]), ctx.scalar(1.0, x)])])]


@converts("Selu")
def selu(ctx: Context, node: Any) -> list[Value]:
    (x,) = ctx.inputs(node)
    _float(x, "Selu")
    alpha = float(attr(node, "alpha", 1.67326319217681884765625))
    gamma = ctx.scalar(float(attr(node, "gamma", 1.05070102214813232421875)), x)
    below = ctx.emit("mul", [ctx.scalar(alpha, x), ctx.emit("sub", [ctx.emit("exp", [x]), ctx.scalar(1.0, x)])])
    inner = ctx.emit("where", [ctx.emit("gt", [x, ctx.scalar(0.0, x)]), x, below])
    return [ctx.emit("mul", [gamma, inner])]


@converts("Celu")
def celu(ctx: Context, node: Any) -> list[Value]:
    """max(0, x) + min(0, alpha * (exp(x / alpha) - 1))."""
    (x,) = ctx.inputs(node)
    _float(x, "Celu")
    alpha = ctx.scalar(float(attr(node, "alpha", 1.0)), x)
    below = ctx.emit("mul", [alpha, ctx.emit("sub", [ctx.emit("exp", [ctx.emit("div", [x, alpha])]),
                                                     ctx.scalar(1.0, x)])])
    return [ctx.emit("where", [ctx.emit("gt", [x, ctx.scalar(0.0, x)]), x, below])]


@converts("ThresholdedRelu")
def thresholded_relu(ctx: Context, node: Any) -> list[Value]:
    (x,) = ctx.inputs(node)
    _float(x, "ThresholdedRelu")
    above = ctx.emit("gt", [x, ctx.scalar(float(attr(node, "alpha", 1.0)), x)])
    return [ctx.emit("where", [above, x, ctx.scalar(0.0, x)])]


@converts("Swish")
def swish(ctx: Context, node: Any) -> list[Value]:
    (x,) = ctx.inputs(node)
    _float(x, "Swish")
    alpha = float(attr(node, "alpha", 1.0))
    scaled = x if alpha == 1.0 else ctx.emit("mul", [x, ctx.scalar(alpha, x)])
    return [ctx.emit("mul", [x, ctx.emit("sigmoid", [scaled])])]


@converts("Mish")
def mish(ctx: Context, node: Any) -> list[Value]:
    (x,) = ctx.inputs(node)
    _float(x, "Mish")
    soft = ctx.emit("log", [ctx.emit("add", [ctx.emit("exp", [x]), ctx.scalar(1.0, x)])])
    return [ctx.emit("mul", [x, ctx.emit("tanh", [soft])])]


@converts("Shrink")
def shrink(ctx: Context, node: Any) -> list[Value]:
    """x + bias below -lambd, x - bias above lambd, else 0."""
    (x,) = ctx.inputs(node)
    _float(x, "Shrink")
    lambd, bias = float(attr(node, "lambd", 0.5)), float(attr(node, "bias", 0.0))
    low = ctx.emit("where", [ctx.emit("lt", [x, ctx.scalar(-lambd, x)]), ctx.emit("add", [x, ctx.scalar(bias, x)]),
                             ctx.scalar(0.0, x)])
    return [ctx.emit("where", [ctx.emit("gt", [x, ctx.scalar(lambd, x)]), ctx.emit("sub", [x, ctx.scalar(bias, x)]),
                               low])]
