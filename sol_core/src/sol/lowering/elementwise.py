"""The element-wise rules of the C-family generator: one C expression per op, written once
for every dialect (:class:`sol.lowering.cfamily.Dialect` supplies the spelling of casts, typed
constants, math functions, min/max, NaN and infinity).

A rule gets the dialect, the operand expressions (registers or loads, already in parentheses
where needed), the C type ``T`` of the result and the node's attributes (those the templates
take: :meth:`sol.ops.registry.OpRegistry.lowering_attrs`), and returns a C expression. The
special-value behaviour of each op is the frameworks' (see :mod:`sol.ops.elementwise`); it is
decided here, once, so a new dialect cannot get it wrong. Comparisons and logical ops give bool
(``T`` is bool); their operands keep their own type. A device may override single rules
(:attr:`Dialect.op_overrides <sol.lowering.cfamily.Dialect.op_overrides>`). Each op's
:class:`~sol.ops.registry.OpDef` names its rule (``c_expr``); :data:`ELEMENTWISE` is the view of
them by op name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sol.ops.registry import CExprFn, registry

if TYPE_CHECKING:
    from sol.lowering.cfamily import Dialect

# rule(dialect, operand expressions, C type of the result, attributes) -> C expression
OpRule = CExprFn


def _math(fn: str) -> OpRule:
    """A math-library call of the operands (``exp``, ``pow``: C names, float/double forms)."""
    return lambda d, a, T, _: f"{d.math(fn, T)}({', '.join(a)})"


def _binary(op: str) -> OpRule:
    return lambda d, a, T, _: f"({a[0]} {op} {a[1]})"


def same(d: Dialect, a: list[str], T: str, attrs: dict[str, Any]) -> str:
    """identity, dropout (inference: the identity; training graphs never keep a dropout node) and
    broadcast_to (the broadcast is in the loads' strides) pass their operand through."""
    return a[0]


def relu(d: Dialect, a: list[str], T: str, attrs: dict[str, Any]) -> str:
    zero = d.const(T, 0)
    return f"({a[0]} < {zero} ? {zero} : {a[0]})"


def _hard(d: Dialect, x: str, T: str) -> str:
    """``min(max(x + 3, 0), 6) / 6``: hardsigmoid, and hardswish's factor."""
    return f"{d.min_fn}({d.max_fn}({x} + {d.const(T, 3)}, {d.const(T, 0)}), {d.const(T, 6)}) / {d.const(T, 6)}"


def gelu(d: Dialect, a: list[str], T: str, attrs: dict[str, Any]) -> str:
    x, c = a[0], lambda v: d.const(T, v)
    if attrs["approximate"] == "tanh":
        inner = f"{c(0.7978845608028654)} * ({x} + {c(0.044715)} * {x} * {x} * {x})"
        body = f"({c(0.5)} * {x} * ({c(1)} + {d.math('tanh', T)}({inner})))"
    else:
        body = f"({c(0.5)} * {x} * ({c(1)} + {d.math('erf', T)}({x} * {c(0.7071067811865476)})))"
    # inf_to_nan: gelu(+inf) is NaN, as PyTorch's vectorized kernel computes it (sol.ops.elementwise).
    return f"({x} == {d.infinity(T)} ? {d.nan(T)} : {body})" if attrs["inf_to_nan"] else body


def clamp(d: Dialect, a: list[str], T: str, attrs: dict[str, Any]) -> str:
    lo, hi = attrs["min"], attrs["max"]
    if lo is None:
        return f"{d.min_fn}({a[0]}, {d.const(T, hi)})"
    if hi is None:
        return f"{d.max_fn}({a[0]}, {d.const(T, lo)})"
    return f"{d.min_fn}({d.max_fn}({a[0]}, {d.const(T, lo)}), {d.const(T, hi)})"


def _select(cmp: str) -> OpRule:
    """maximum/minimum: a NaN from either operand is the result (PyTorch and TensorFlow
    propagate it; a C max keeps only the first operand's); of two equal values (0.0 and -0.0)
    the second, as PyTorch's vectorized kernel (maxps/minps) gives."""
    return lambda d, a, T, _: f"(({a[0]} {cmp} {a[1]} || {a[0]} != {a[0]}) ? {a[0]} : {a[1]})"


def _mask(cmp: str) -> OpRule:
    """Backward-graph gradient masks (sol.ops.grad_ops): 1 where ``a cmp b``, else 0."""
    return lambda d, a, T, _: f"({a[0]} {cmp} {a[1]} ? {d.const(T, 1)} : {d.const(T, 0)})"


def _logical(op: str) -> OpRule:
    return lambda d, a, T, _: f"({d.convert('bool', a[0])} {op} {d.convert('bool', a[1])})"


# The rules, one per op (or family): each op's OpDef names its rule (``c_expr``), e.g.
# ``OpDef("relu", ..., c_expr=relu)`` in sol.ops.elementwise.

def sigmoid(d: Dialect, a: list[str], T: str, attrs: dict[str, Any]) -> str:
    return f"({d.const(T, 1)} / ({d.const(T, 1)} + {d.math('exp', T)}(-{a[0]})))"


def rsqrt(d: Dialect, a: list[str], T: str, attrs: dict[str, Any]) -> str:
    return f"({d.const(T, 1)} / {d.math('sqrt', T)}({a[0]}))"


def neg(d: Dialect, a: list[str], T: str, attrs: dict[str, Any]) -> str:
    return f"(-{a[0]})"


def silu(d: Dialect, a: list[str], T: str, attrs: dict[str, Any]) -> str:
    return f"({a[0]} / ({d.const(T, 1)} + {d.math('exp', T)}(-{a[0]})))"


def hardsigmoid(d: Dialect, a: list[str], T: str, attrs: dict[str, Any]) -> str:
    return f"({_hard(d, a[0], T)})"


def hardswish(d: Dialect, a: list[str], T: str, attrs: dict[str, Any]) -> str:
    return f"({a[0]} * {_hard(d, a[0], T)})"


def leaky_relu(d: Dialect, a: list[str], T: str, attrs: dict[str, Any]) -> str:
    return f"({a[0]} < {d.const(T, 0)} ? {d.const(T, attrs['alpha'])} * {a[0]} : {a[0]})"


def cast(d: Dialect, a: list[str], T: str, attrs: dict[str, Any]) -> str:
    return d.convert(T, a[0])


def logical_not(d: Dialect, a: list[str], T: str, attrs: dict[str, Any]) -> str:
    return f"(!{a[0]})"


def where(d: Dialect, a: list[str], T: str, attrs: dict[str, Any]) -> str:
    return f"({a[0]} ? {a[1]} : {a[2]})"


tanh, exp, log, sqrt, abs_, erf, pow_ = (_math(fn) for fn in ("tanh", "exp", "log", "sqrt", "fabs", "erf", "pow"))
add, sub, mul, div = (_binary(op) for op in ("+", "-", "*", "/"))
eq, ne, lt, le, gt, ge = (_binary(op) for op in ("==", "!=", "<", "<=", ">", ">="))
maximum, minimum = _select(">"), _select("<")
logical_and, logical_or = _logical("&&"), _logical("||")
mask_gt, mask_ge = _mask(">"), _mask(">=")

# Every registered element-wise op's rule, by name: a live view of the op table (OpDef.c_expr),
# plugins' ops included; not a table of its own.
ELEMENTWISE: Mapping[str, OpRule] = registry.table("c_expr")


# Trigonometric, hyperbolic and rounding functions: C99's math library has each; ``nearbyint``
# rounds half to even under the default rounding mode (torch.round, tf.round, ONNX Round).
sin, cos, tan, asin, acos, atan, sinh, cosh, asinh, acosh, atanh, floor, ceil, round_ = (
    _math(fn) for fn in ("sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh",
                         "floor", "ceil", "nearbyint"))


def sign(d: Dialect, a: list[str], T: str, attrs: dict[str, Any]) -> str:
    """-1, 0 or 1 (-0.0 gives 0); at NaN, NaN (NumPy, TensorFlow, ONNX) or 0 (``nan="zero"``:
    PyTorch's sign)."""
    x, one, zero = a[0], d.const(T, 1), d.const(T, 0)
    body = f"({x} > {zero} ? {one} : ({x} < {zero} ? -{one} : {zero}))"
    return body if attrs["nan"] == "zero" else f"({x} != {x} ? {x} : {body})"


def isnan(d: Dialect, a: list[str], T: str, attrs: dict[str, Any]) -> str:
    return f"({a[0]} != {a[0]})"


def isinf(d: Dialect, a: list[str], T: str, attrs: dict[str, Any]) -> str:
    """``T`` is the result's (bool): the infinity compared against is the operand's, spelled
    through a conversion of the operand's own expression type (double covers float)."""
    inf = d.infinity("double")
    checks = {"both": f"({a[0]} == {inf} || {a[0]} == -{inf})", "positive": f"({a[0]} == {inf})",
              "negative": f"({a[0]} == -{inf})"}
    return checks[attrs["sign"]]

# Exponentials and logarithms of other bases and arguments, erfc, and the binary functions of
# C99's math library: each the frameworks' own (PyTorch's CPU kernels call the same functions).
log1p, expm1, exp2, log2, log10, erfc, fmod, atan2, hypot, copysign = (
    _math(fn) for fn in ("log1p", "expm1", "exp2", "log2", "log10", "erfc", "fmod", "atan2", "hypot", "copysign"))
