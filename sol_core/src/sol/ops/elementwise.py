"""Element-wise ops: fused into their producer's or consumer's loop by the planner."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from sol.errors import SolError
from sol.ir import DTYPES, Node, TensorType
from sol.ops._util import broadcast_shape, f64, same_dtype
from sol.ops.registry import REQUIRED, CExprFn, GradientFn, LayerClass, OpDef

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _same(types: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    return [TensorType(broadcast_shape(*(t.shape for t in types)), same_dtype(types))]


def _unary(name: str, fn: Callable[..., np.ndarray], gradient: GradientFn, c_expr: CExprFn, **attrs: Any) -> OpDef:
    def ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
        return [np.asarray(fn(f64(xs[0]), **a)).astype(xs[0].dtype)]

    return OpDef(name, LayerClass.ELEMENTWISE, _same, ref, (1, 1), dict(attrs), gradient=gradient, c_expr=c_expr)


def _binary(name: str, fn: Callable[[np.ndarray, np.ndarray], np.ndarray], gradient: GradientFn, c_expr: CExprFn,
            **attrs: Any) -> OpDef:
    def ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
        return [np.asarray(fn(f64(xs[0]), f64(xs[1]))).astype(xs[0].dtype)]

    return OpDef(name, LayerClass.ELEMENTWISE, _same, ref, (2, 2), dict(attrs), gradient=gradient, c_expr=c_expr)


# Clamping as the frameworks write it, ``x < lo ? lo : x``: NaN passes through (no comparison
# holds for it) and a bound equal to x leaves x as it is (-0.0 stays -0.0, as in PyTorch).
def _at_least(x: np.ndarray, lo: float) -> np.ndarray:
    return np.where(x < lo, lo, x)


def _at_most(x: np.ndarray, hi: float) -> np.ndarray:
    return np.where(x > hi, hi, x)


def _relu6(x: np.ndarray) -> np.ndarray:
    return _at_most(_at_least(x, 0.0), 6.0)


def _gelu(x: np.ndarray, approximate: str, inf_to_nan: bool) -> np.ndarray:
    if approximate == "tanh":
        y = 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    else:
        y = 0.5 * x * (1 + _erf(x / math.sqrt(2)))
    return np.where(np.isposinf(x), np.nan, y) if inf_to_nan else y


def _clamp(x: np.ndarray, min: float | None, max: float | None) -> np.ndarray:  # noqa: A002
    if min is not None:
        x = _at_least(x, min)
    if max is not None:
        x = _at_most(x, max)
    return x


def _pow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """C's pow element by element. NumPy's power takes shortcuts for a scalar exponent (0.5 ->
    sqrt, -1 -> reciprocal, 2 -> square) that differ from pow at -inf and -0.0; broadcasting the
    exponent to a full array keeps them out (frontends lower their own shortcuts to sqrt etc.)."""
    a, b = np.broadcast_arrays(a, b)
    return np.power(np.array(a), np.array(b))


def _nan_grad_attr(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    if attrs["nan_grad"] not in ("stop", "pass"):
        raise SolError(f"nan_grad is 'stop' or 'pass', not {attrs['nan_grad']!r}")
    return attrs


def _clamp_attrs(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    if attrs["bounds_grad"] not in ("inclusive", "exclusive"):
        raise SolError(f"clamp's bounds_grad is 'inclusive' or 'exclusive', not {attrs['bounds_grad']!r}")
    if attrs["nan_grad"] == "pass" and attrs["bounds_grad"] != "exclusive":
        raise SolError("clamp's nan_grad='pass' is hardtanh's rule: it needs bounds_grad='exclusive'")
    bounds = _float_or_none({k: attrs[k] for k in ("min", "max")}, types)
    return {**_nan_grad_attr(attrs, types), **bounds}


def _binary_ties(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    if attrs["ties"] not in ("split", "first", "bound"):
        raise SolError(f"maximum/minimum ties must be 'split', 'first' or 'bound', not {attrs['ties']!r}")
    return attrs


def _check_gelu(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    if attrs["approximate"] not in ("none", "tanh"):
        raise SolError(f"gelu approximate must be 'none' or 'tanh', got {attrs['approximate']!r}")
    return {**attrs, "inf_to_nan": bool(attrs["inf_to_nan"])}


def _float_or_none(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    return {k: (None if v is None else float(v)) for k, v in attrs.items()}


def _batch_norm_infer(types: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    x = types[0]
    ax = attrs["axis"]
    if not 0 <= ax < x.rank:
        raise SolError(f"batch_norm axis {ax} out of range for {x}")
    for t in types[1:]:
        if t.shape != (x.shape[ax],):
            raise SolError(f"batch_norm: statistics must have shape ({x.shape[ax]},), got {t}")
    return [x]


def _batch_norm_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, mean, var, w, b = (f64(v) for v in xs)
    shape = [1] * x.ndim
    shape[a["axis"]] = -1
    r = lambda v: v.reshape(shape)  # noqa: E731
    y = (x - r(mean)) / np.sqrt(r(var) + a["eps"]) * r(w) + r(b)
    return [y.astype(xs[0].dtype)]


def _bn_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    rank = types[0].rank
    return {"eps": float(attrs["eps"]), "axis": attrs["axis"] % rank if rank else 0}


def _cast_infer(types: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    if attrs["dtype"] not in DTYPES:
        raise SolError(f"cast to unknown dtype {attrs['dtype']!r}")
    return [TensorType(types[0].shape, attrs["dtype"])]


def ops() -> list[OpDef]:
    # Gradient rules, C expressions and FLOP counts are imported here, when the registry is
    # filled, not at import time (sol.ops.registry explains why).
    from sol import workload
    from sol.autodiff.rules import elementwise as grad
    from sol.lowering import elementwise as c

    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    unary = [
        # nan_grad (gradient only): whether relu's and clamp's gradient passes at NaN inputs
        # ("pass": PyTorch's relu, hardtanh and relu6) or stops there ("stop": TensorFlow's, torch.clamp).
        _unary("relu", lambda x, nan_grad: _at_least(x, 0.0), grad.relu, c.relu, nan_grad="stop"),
        _unary("sigmoid", sig, grad.sigmoid, c.sigmoid),
        _unary("tanh", np.tanh, grad.tanh, c.tanh),
        _unary("exp", np.exp, grad.exp, c.exp),
        _unary("log", np.log, grad.log, c.log),
        _unary("sqrt", np.sqrt, grad.sqrt, c.sqrt),
        _unary("rsqrt", lambda x: 1 / np.sqrt(x), grad.rsqrt, c.rsqrt),
        _unary("neg", np.negative, grad.neg, c.neg),
        _unary("abs", np.abs, grad.abs_, c.abs_),
        _unary("silu", lambda x: x * sig(x), grad.silu, c.silu),
        _unary("hardswish", lambda x: x * _relu6(x + 3) / 6, grad.hardswish, c.hardswish),
        _unary("hardsigmoid", lambda x: _relu6(x + 3) / 6, grad.hardsigmoid, c.hardsigmoid),
        _unary("erf", _erf, grad.erf, c.erf),
        _unary("identity", lambda x: x, grad.pass_through, c.same),
        # dropout's reference is the identity (its training-mode mask is the frontend's: an input).
        _unary("dropout", lambda x, p: x, grad.pass_through, c.same, p=0.5),
        _unary("leaky_relu", lambda x, alpha: np.where(x >= 0, x, alpha * x), grad.leaky_relu, c.leaky_relu,
               alpha=0.01),
        # inf_to_nan: gelu(+inf) is NaN, as PyTorch's (vectorized) CPU kernel computes it; the
        # PyTorch frontend sets it. Mathematically, and in TensorFlow, gelu(+inf) is +inf.
        _unary("gelu", _gelu, grad.gelu, c.gelu, approximate="none", inf_to_nan=False),
        # bounds_grad: the gradient passes at x == min or max ("inclusive": torch.clamp) or not
        # ("exclusive": hardtanh, relu6 and TensorFlow's Relu6). The forward value is the same.
        _unary("clamp", lambda x, min, max, bounds_grad, nan_grad: _clamp(x, min, max),  # noqa: A006
               grad.clamp, c.clamp, min=None, max=None, bounds_grad="inclusive", nan_grad="stop"),
    ]
    unary += _math_ops(grad, c)
    by_name = {o.name: o for o in unary}
    by_name["gelu"].normalize = _check_gelu
    by_name["clamp"].normalize = _clamp_attrs
    by_name["clamp"].gradient_attrs = ("bounds_grad", "nan_grad")
    by_name["relu"].normalize = _nan_grad_attr
    by_name["relu"].gradient_attrs = ("nan_grad",)
    by_name["leaky_relu"].normalize = _float_or_none
    for moves_only in ("identity", "dropout"):
        by_name[moves_only].flops = workload.per_output(0)
    binary = [
        _binary("add", np.add, grad.add, c.add), _binary("sub", np.subtract, grad.sub, c.sub),
        _binary("mul", np.multiply, grad.mul, c.mul),
        # ties (gradient only): where both operands are equal, "split" shares the gradient evenly
        # (PyTorch's maximum/minimum), "first" gives it all to the first operand (TensorFlow's),
        # "bound" too (torch.clamp's tensor bounds); they differ at NaN (sol.autodiff.rules).
        _binary("div", np.divide, grad.div, c.div),
        _binary("maximum", np.maximum, grad.maximum, c.maximum, ties="split"),
        _binary("minimum", np.minimum, grad.minimum, c.minimum, ties="split"),
        _binary("pow", _pow, grad.pow_, c.pow_),
    ]
    for o in binary:
        if "ties" in o.attrs:
            o.normalize, o.gradient_attrs = _binary_ties, ("ties",)
    # batch_norm has no C expression (its operands are per-channel vectors, not broadcastable as
    # they stand): a late pass rewrites what is left of it as element-wise ops
    # (sol.passes.batchnorm_elementwise), so no device sees it.
    bn = OpDef("batch_norm", LayerClass.ELEMENTWISE, _batch_norm_infer, _batch_norm_ref, (5, 5),
               {"eps": 1e-5, "axis": 1}, normalize=_bn_normalize, gradient=grad.batch_norm,
               flops=workload.per_output(2),  # a scale and a shift
               doc="inference BatchNorm: (x - mean) / sqrt(var + eps) * weight + bias along `axis`")
    cast = OpDef("cast", LayerClass.ELEMENTWISE, _cast_infer,
                 lambda xs, a: [xs[0].astype(a["dtype"])], (1, 1), {"dtype": REQUIRED}, gradient=grad.cast,
                 flops=workload.per_output(0), c_expr=c.cast)
    _mark_finite(unary + binary, bn, cast)
    _mark_monotone(unary)
    return unary + binary + [bn, cast] + _classifiers(c)


def _math_ops(grad: Any, c: Any) -> list[OpDef]:
    """Trigonometric, hyperbolic and rounding functions (NumPy's are the references)."""
    trig = [_unary(name, getattr(np, name if name[0] != "a" or name == "abs" else "arc" + name[1:]),
                   getattr(grad, name), getattr(c, name))
            for name in ("sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh")]
    steps = [_unary("floor", np.floor, grad.zero, c.floor), _unary("ceil", np.ceil, grad.zero, c.ceil),
             # half to even (NumPy's, PyTorch's, TensorFlow's and ONNX's round)
             _unary("round", np.round, grad.zero, c.round_),
             # nan: "keep" (NumPy, TensorFlow, ONNX: sign(NaN) is NaN) or "zero" (PyTorch: 0)
             _unary("sign", _sign, grad.zero, c.sign, nan="keep")]
    steps[-1].normalize = _sign_attrs
    return trig + steps + _exp_log_ops(grad, c)


_erfc = np.vectorize(math.erfc, otypes=[np.float64])


def _exp_log_ops(grad: Any, c: Any) -> list[OpDef]:
    """Exponentials and logarithms of other bases and arguments (log1p and expm1 keep their
    precision near 0, where log(1 + x) and exp(x) - 1 lose it), erfc, and C99's binary
    functions fmod (the remainder of truncated division: the dividend's sign), atan2, hypot and
    copysign. NumPy's are the references; frontends compose remainder, floor division etc. of them."""
    unary = [_unary("log1p", np.log1p, grad.log1p, c.log1p), _unary("expm1", np.expm1, grad.expm1, c.expm1),
             _unary("exp2", np.exp2, grad.exp2, c.exp2), _unary("log2", np.log2, grad.log2, c.log2),
             _unary("log10", np.log10, grad.log10, c.log10), _unary("erfc", _erfc, grad.erfc, c.erfc)]
    binary = [_binary("fmod", np.fmod, grad.fmod, c.fmod), _binary("atan2", np.arctan2, grad.atan2, c.atan2),
              _binary("hypot", np.hypot, grad.hypot, c.hypot),
              _binary("copysign", np.copysign, grad.copysign, c.copysign)]
    return unary + binary


def _sign(x: np.ndarray, nan: str) -> np.ndarray:
    y = np.sign(x)
    return np.where(np.isnan(x), 0.0, y) if nan == "zero" else y


def _sign_attrs(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    if attrs["nan"] not in ("keep", "zero"):
        raise SolError(f"sign: nan must be 'keep' or 'zero', got {attrs['nan']!r}")
    return attrs


def _classify_infer(types: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    if not types[0].dtype.startswith("float"):
        raise SolError(f"isnan/isinf take floating-point tensors, got {types[0].dtype}")
    return [TensorType(types[0].shape, "bool")]


def _classifiers(c: Any) -> list[OpDef]:
    """isnan and isinf: bool results (no gradient). ``sign`` of isinf: which infinities count."""
    from sol.autodiff.rules import no_gradient

    def isinf_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
        x = xs[0]
        return [{"both": np.isinf(x), "positive": np.isposinf(x), "negative": np.isneginf(x)}[a["sign"]]]

    def isinf_attrs(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
        if attrs["sign"] not in ("both", "positive", "negative"):
            raise SolError(f"isinf: sign must be 'both', 'positive' or 'negative', got {attrs['sign']!r}")
        return attrs

    isnan = OpDef("isnan", LayerClass.ELEMENTWISE, _classify_infer, lambda xs, a: [np.isnan(xs[0])], (1, 1),
                  gradient=no_gradient, c_expr=c.isnan, doc="x != x -> bool")
    isinf = OpDef("isinf", LayerClass.ELEMENTWISE, _classify_infer, isinf_ref, (1, 1), {"sign": "both"},
                  normalize=isinf_attrs, gradient=no_gradient, c_expr=c.isinf,
                  doc="x is +inf or -inf (sign: both, positive, negative) -> bool")
    for o in (isnan, isinf):
        o.preserves_finite = True
    return [isnan, isinf]


# Ops computing finite results from finite inputs, overflow aside (sol.passes.finite). Not here:
# exp (overflows at 89), log, sqrt, rsqrt and div (outside their domain or at 0), pow (both).
_PRESERVE_FINITE = ("relu", "sigmoid", "tanh", "neg", "abs", "silu", "hardswish", "hardsigmoid", "erf", "identity",
                    "dropout", "leaky_relu", "gelu", "add", "sub", "mul", "maximum", "minimum",
                    # not asin/acos/acosh/atanh (NaN outside their domain), sinh/cosh (overflow)
                    "sin", "cos", "tan", "atan", "asinh", "floor", "ceil", "round", "sign",
                    # not log1p, log2, log10 (at 0 or below), expm1, exp2 (overflow early), fmod (by 0)
                    "erfc", "atan2", "hypot", "copysign")


def _mark_finite(ops: list[OpDef], bn: OpDef, cast: OpDef) -> None:
    for o in ops:
        o.preserves_finite = o.name in _PRESERVE_FINITE
    by_name = {o.name: o for o in ops}
    by_name["clamp"].preserves_finite = _clamp_finite
    bn.preserves_finite = _batch_norm_finite
    cast.preserves_finite = _cast_finite


# Unary ops that never decrease, keep NaN NaN and make no NaN of anything else, at every input
# (OpDef.monotone). Not here: gelu, silu, hardswish (dip below 0), abs, neg, cos... (not
# monotone), log, sqrt, rsqrt, asin, acos, acosh, atanh (NaN outside their domain: log of a
# window's negative element is NaN, log of its positive maximum is not), cast (integer targets
# have no NaN), identity and dropout (passes remove them).
_MONOTONE = ("relu", "sigmoid", "tanh", "exp", "erf", "atan", "asinh", "sinh", "hardsigmoid", "clamp",
             "floor", "ceil", "round")


def _mark_monotone(ops: list[OpDef]) -> None:
    by_name = {o.name: o for o in ops}
    for name in _MONOTONE:
        by_name[name].monotone = True
    by_name["leaky_relu"].monotone = _leaky_relu_monotone
    by_name["sign"].monotone = _sign_monotone


def _leaky_relu_monotone(node: Node) -> bool:
    """alpha * x keeps the order for alpha > 0; alpha = 0 makes NaN of -inf (0 * -inf), a
    negative alpha reverses the negative half."""
    alpha = node.attrs["alpha"]
    return alpha is not None and 0 < alpha < math.inf


def _sign_monotone(node: Node) -> bool:
    """PyTorch's sign(NaN) is 0 (nan="zero"): a NaN in the window would then lose to a positive."""
    return bool(node.attrs["nan"] == "keep")


def _clamp_finite(node: Node) -> bool:
    """A bound of +inf as the minimum (or -inf as the maximum) makes every element infinite."""
    lo, hi = node.attrs["min"], node.attrs["max"]
    return (lo is None or lo != math.inf) and (hi is None or hi != -math.inf)


def _batch_norm_finite(node: Node) -> bool:
    """rsqrt(var + eps) is finite where var + eps > 0: a batch's variance (never negative) or
    running statistics whose values say so."""
    var = node.inputs[2]
    eps = node.attrs["eps"]
    if var.producer is not None and var.producer.op == "variance":
        return eps > 0
    return var.data is not None and bool(np.all(np.asarray(var.data, dtype=np.float64) + eps > 0))


_FLOAT_BITS = {"float16": 16, "float32": 32, "float64": 64}


def _cast_finite(node: Node) -> bool:
    """A cast to a narrower float type overflows for values the wider one holds (65504 is
    float16's largest): that is too common to count as the overflow the analysis ignores."""
    src, dst = node.inputs[0].dtype, node.attrs["dtype"]
    return not (src in _FLOAT_BITS and dst in _FLOAT_BITS and _FLOAT_BITS[dst] < _FLOAT_BITS[src])
