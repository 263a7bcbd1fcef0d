"""Element-wise ATen converters: activations, arithmetic, clamps and powers; copies, casts,
aliases and ``*_like`` constants (only a dtype change is work in SSA form)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from sol.plugin_api import Value, known_value
from sol_pytorch.aten.base import Args, Converter, Emitter, Unsupported, _scaled, _tensor, converts

# --- element-wise -----------------------------------------------------------------------------

_UNARY = ("relu", "sigmoid", "tanh", "exp", "log", "sqrt", "rsqrt", "neg", "abs", "erf", "silu",
          "hardswish", "hardsigmoid")
_PYTORCH_GRAD = {"relu": {"nan_grad": "pass"}}  # relu's gradient passes at NaN (it stops where x <= 0)


def _unary(op: str) -> Converter:
    def convert(em: Emitter, a: Args) -> Value:
        return em.emit(op, [em.operand(a["self"], em.out.dtype)], **_PYTORCH_GRAD.get(op, {}))

    return convert


for _name in _UNARY:
    converts(f"aten.{_name}.default")(_unary(_name))

_MATH = ("sin", "cos", "tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh")
for _name in _MATH:  # integer operands compute in the result's floating type (PyTorch promotes)
    converts(f"aten.{_name}.default")(_unary(_name))


def _rounding(op: str) -> Converter:
    def convert(em: Emitter, a: Args) -> Value:
        x = _tensor(a, "self")
        if not x.dtype.startswith("float"):
            return em.emit("identity", [x])  # integers are whole already (PyTorch returns them as they are)
        if op == "trunc":  # toward zero: floor above 0, ceil below (NaN and -0.0 pass through either)
            below = em.emit("lt", [x, em.const(0.0, x.dtype)])
            return em.emit("where", [below, em.emit("ceil", [x]), em.emit("floor", [x])])
        return em.emit(op, [x])

    return convert


for _name in ("floor", "ceil", "round", "trunc"):
    converts(f"aten.{_name}.default")(_rounding(_name))


@converts("aten.sign.default")
def _sign(em: Emitter, a: Args) -> Value:
    return em.emit("sign", [_tensor(a, "self")], nan="zero")  # torch.sign(nan) is 0


def _classify(op: str) -> Converter:
    def convert(em: Emitter, a: Args) -> Value:
        x = _tensor(a, "self")
        if not x.dtype.startswith("float"):  # an integer is never NaN nor infinite
            return em.emit("broadcast_to", [em.const(False, "bool")], shape=x.shape)
        if op == "isnan":
            return em.emit("isnan", [x])
        return em.emit("isinf", [x], sign={"isinf": "both", "isposinf": "positive", "isneginf": "negative"}[op])

    return convert


for _name in ("isnan", "isinf", "isposinf", "isneginf"):
    converts(f"aten.{_name}.default")(_classify(_name))


@converts("aten.gelu.default")
def _gelu(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "self")
    # PyTorch's float32 CPU kernel (vectorized erf form, the path of contiguous tensors) gives NaN
    # for gelu(+inf); its float64 and tanh forms give +inf.
    inf_to_nan = a["approximate"] == "none" and x.dtype == "float32"
    return em.emit("gelu", [x], approximate=a["approximate"], inf_to_nan=inf_to_nan)


@converts("aten.leaky_relu.default")
def _leaky_relu(em: Emitter, a: Args) -> Value:
    return em.emit("leaky_relu", [_tensor(a, "self")], alpha=float(a["negative_slope"]))


@converts("aten.hardtanh.default")
def _hardtanh(em: Emitter, a: Args) -> Value:
    # hardtanh's gradient stops where x <= min or x >= max (torch.clamp's passes at the bounds and stops at NaN)
    return em.emit("clamp", [_tensor(a, "self")], min=float(a["min_val"]), max=float(a["max_val"]),
                   bounds_grad="exclusive", nan_grad="pass")


@converts("aten.relu6.default")
def _relu6(em: Emitter, a: Args) -> Value:
    return em.emit("clamp", [_tensor(a, "self")], min=0.0, max=6.0, bounds_grad="exclusive", nan_grad="pass")


@converts("aten.clamp.default", "aten.clamp_min.default", "aten.clamp_max.default")
def _clamp(em: Emitter, a: Args) -> Value:
    lo, hi = a.get("min"), a.get("max")
    x = em.operand(a["self"], em.out.dtype)
    if lo is None and hi is None:
        return x
    return em.emit("clamp", [x], min=lo, max=hi)


@converts("aten.clamp.Tensor", "aten.clamp_min.Tensor", "aten.clamp_max.Tensor")
def _clamp_tensor(em: Emitter, a: Args) -> Value:
    dt = em.out.dtype
    x = em.operand(a["self"], dt)
    # clamp's gradient goes to x at its bounds (min <= x <= max), the bounds get none there
    if a.get("min") is not None:
        x = em.emit("maximum", [x, em.operand(a["min"], dt)], ties="bound")
    if a.get("max") is not None:
        x = em.emit("minimum", [x, em.operand(a["max"], dt)], ties="bound")
    return x


@converts("aten.add.Tensor", "aten.add.Scalar")
def _add(em: Emitter, a: Args) -> Value:
    dt = em.out.dtype
    return em.emit("add", [em.operand(a["self"], dt), _scaled(em, a["other"], a.get("alpha", 1), dt)])


@converts("aten.sub.Tensor", "aten.sub.Scalar")
def _sub(em: Emitter, a: Args) -> Value:
    dt = em.out.dtype
    return em.emit("sub", [em.operand(a["self"], dt), _scaled(em, a["other"], a.get("alpha", 1), dt)])


@converts("aten.rsub.Tensor", "aten.rsub.Scalar")
def _rsub(em: Emitter, a: Args) -> Value:
    dt = em.out.dtype
    return em.emit("sub", [em.operand(a["other"], dt), _scaled(em, a["self"], a.get("alpha", 1), dt)])


def _binary(op: str) -> Converter:
    def convert(em: Emitter, a: Args) -> Value:
        dt = em.out.dtype
        return em.emit(op, [em.operand(a["self"], dt), em.operand(a["other"], dt)])

    return convert


converts("aten.mul.Tensor", "aten.mul.Scalar")(_binary("mul"))
converts("aten.maximum.default", "aten.max.other")(_binary("maximum"))
converts("aten.minimum.default", "aten.min.other")(_binary("minimum"))


@converts("aten.reciprocal.default")
def _reciprocal(em: Emitter, a: Args) -> Value:
    dt = em.out.dtype
    return em.emit("div", [em.const(1, dt), em.operand(a["self"], dt)])


@converts("aten.square.default")
def _square(em: Emitter, a: Args) -> Value:
    x = em.operand(a["self"], em.out.dtype)
    return em.emit("mul", [x, x])


@converts("aten.pow.Tensor_Scalar")
def _pow_scalar(em: Emitter, a: Args) -> Value:
    """PyTorch's own shortcuts for these exponents (they differ from pow at -inf and -0.0:
    x ** 0.5 is sqrt, NaN at -inf where pow gives +inf)."""
    x = em.operand(a["self"], em.out.dtype)
    e = a["exponent"]
    if e == 1:
        return x
    if e == 2:
        return em.emit("mul", [x, x])
    if e == 3:
        return em.emit("mul", [em.emit("mul", [x, x]), x])
    if e == 0.5:
        return em.emit("sqrt", [x])
    if e == -0.5:
        return em.emit("rsqrt", [x])
    if e == -1:
        return em.emit("div", [em.const(1, x.dtype), x])
    if e == -2:
        return em.emit("div", [em.const(1, x.dtype), em.emit("mul", [x, x])])
    return em.emit("pow", [x, em.const(e, x.dtype)])


@converts("aten.pow.Tensor_Tensor", "aten.pow.Scalar")
def _pow(em: Emitter, a: Args) -> Value:
    dt = em.out.dtype
    return em.emit("pow", [em.operand(a["self"], dt), em.operand(a["exponent"], dt)])


# --- no-ops, casts and constants --------------------------------------------------------------


@converts("aten.clone.default", "aten.contiguous.default", "aten.alias.default",
          "aten.lift_fresh_copy.default", "aten._to_copy.default", "aten.to.dtype", "aten.to.dtype_layout",
          "aten.to.device", "aten.to.other", "aten.type_as.default", "aten.view_as.default")
def _copy(em: Emitter, a: Args) -> Value:
    """Copies, aliases and dtype conversions: the IR is SSA, so only a dtype change is work."""
    device = getattr(em.val, "device", None)
    if device is not None and device.type != "cpu":
        raise Unsupported(f"moving a tensor to {device} inside forward")
    x = em.operand(a["self"], em.out.dtype)
    return em.reshape(x, em.out.shape)


@converts("aten.positive.default", "aten.resolve_conj.default", "aten.resolve_neg.default",
          "aten.conj_physical.default", "aten._conj.default", "aten.conj.default")
def _real_identity(em: Emitter, a: Args) -> Value:
    """``+x`` and the conjugation family: the value itself for real tensors (sol has no complex
    types, so a complex operand never reaches here as a value of its own)."""
    x = _tensor(a, "self")
    if x.dtype.startswith("complex"):
        raise Unsupported(f"{x.dtype} tensors")
    return em.emit("identity", [x])


@converts("aten.detach.default")
def _detach(em: Emitter, a: Args) -> Value:
    """The value, with no gradient through it (``x.detach()``, and what the training importer
    makes of ``torch.no_grad()`` blocks): core's ``stop_gradient``, which costs nothing once
    differentiated (a pass removes it); compiling it as a copy would train through it."""
    return em.emit("stop_gradient", [_tensor(a, "self")])


@converts("aten.alpha_dropout.default", "aten.feature_alpha_dropout.default")  # dropout: aten/training.py
def _dropout(em: Emitter, a: Args) -> Value:
    if a["train"]:
        raise Unsupported("alpha dropout with training=True")
    return _tensor(a, "input")


def _filled(fill: Callable[[Args], Any]) -> Converter:
    """``zeros_like`` and friends: only the shape of their input matters, so a constant."""

    def convert(em: Emitter, a: Args) -> Value:
        t = em.out
        return em.graph.add_const(np.full(t.shape, fill(a), dtype=t.dtype), hint="k")

    return convert


converts("aten.zeros_like.default")(_filled(lambda a: 0))
converts("aten.ones_like.default")(_filled(lambda a: 1))
converts("aten.full_like.default")(_filled(lambda a: a["fill_value"]))


# --- exponentials, logarithms and C99's binary functions --------------------------------------

for _name in ("log1p", "expm1", "exp2", "log2", "log10", "erfc"):
    converts(f"aten.{_name}.default")(_unary(_name))
converts("aten.atan2.default")(_binary("atan2"))
converts("aten.hypot.default")(_binary("hypot"))
converts("aten.copysign.Tensor", "aten.copysign.Scalar")(_binary("copysign"))


def _float_operands(em: Emitter, a: Args, what: str) -> tuple[Value, Value]:
    """``self`` and ``other`` in the result's floating type. Integer division, remainders
    included, raises at a zero divisor in PyTorch, which compiled code cannot: refused."""
    dt = em.out.dtype
    if not dt.startswith("float"):
        raise Unsupported(f"{what} of {dt} tensors (a zero divisor raises in PyTorch)")
    return em.operand(a["self"], dt), em.operand(a["other"], dt)


def _folded_integer_division(em: Emitter, a: Args, fn: Callable[..., Any]) -> Value:
    """Integer remainders and quotients computed from constants only (index arithmetic such as
    ``(arange(n) + shift) % n`` in roll's decomposition) are folded here by PyTorch itself, so
    they are exact and a zero divisor raises as in eager; other integer operands are refused."""
    args = [known_value(v) if isinstance(v, Value) else v for v in (a["self"], a["other"])]
    if any(v is None for v in args):
        raise Unsupported(f"{em.out.dtype} division of tensors computed at run time (a zero divisor raises "
                          "in PyTorch)")
    try:
        value = fn(*[torch.from_numpy(np.array(v)) if isinstance(v, np.ndarray) else v for v in args])
    except RuntimeError as exc:  # division by zero: eager raises too
        raise Unsupported(f"integer division by zero: {exc}") from None
    return em.graph.add_const(np.asarray(value.numpy(), dtype=em.out.dtype).reshape(em.out.shape), hint="k")


def _integer_division(fn: Callable[..., Any], float_convert: Converter) -> Converter:
    """``float_convert`` for floating results, else the integer result folded (or refused)."""

    def convert(em: Emitter, a: Args) -> Value:
        if em.out.dtype.startswith("float"):
            return float_convert(em, a)
        return _folded_integer_division(em, a, fn)

    return convert


def _fmod_float(em: Emitter, a: Args) -> Value:
    return em.emit("fmod", list(_float_operands(em, a, "fmod")))


converts("aten.fmod.Tensor", "aten.fmod.Scalar")(_integer_division(torch.fmod, _fmod_float))


def _flip_sign(em: Emitter, mod: Value, b: Value) -> Value:
    """Whether a nonzero fmod remainder ``mod`` has the other sign than the divisor ``b``
    (where the floored remainder and quotient differ from the truncated ones)."""
    zero = em.const(0.0, mod.dtype)
    other_sign = em.emit("ne", [em.emit("lt", [b, zero]), em.emit("lt", [mod, zero])])
    return em.emit("logical_and", [em.emit("ne", [mod, zero]), other_sign])


def _remainder(em: Emitter, a: Args) -> Value:
    """Python's ``%`` (the divisor's sign), as PyTorch's CPU kernel computes it: the fmod
    remainder, plus the divisor where the two differ in sign (NaN, infinities and -0.0 alike)."""
    x, b = _float_operands(em, a, "remainder")
    mod = em.emit("fmod", [x, b])
    return em.emit("where", [_flip_sign(em, mod, b), em.emit("add", [mod, b]), mod])


converts("aten.remainder.Tensor", "aten.remainder.Scalar", "aten.remainder.Scalar_Tensor")(
    _integer_division(torch.remainder, _remainder))


def _trunc(em: Emitter, x: Value) -> Value:
    return em.emit("where", [em.emit("lt", [x, em.const(0.0, x.dtype)]), em.emit("ceil", [x]), em.emit("floor", [x])])


def _floor_divide(em: Emitter, x: Value, b: Value) -> Value:
    """PyTorch's floating floor division (c10's div_floor_floating), step by step: a / b for a
    zero divisor; else (x - fmod(x, b)) / b, one less where the remainder's sign differs from
    b's, rounded to the nearest whole number (the quotient is whole up to rounding); a zero
    quotient takes the sign of x / b."""
    dt = x.dtype
    k = lambda v: em.const(v, dt)  # noqa: E731
    quotient = em.emit("div", [x, b])
    mod = em.emit("fmod", [x, b])
    div = em.emit("div", [em.emit("sub", [x, mod]), b])
    div = em.emit("where", [_flip_sign(em, mod, b), em.emit("sub", [div, k(1.0)]), div])
    floor = em.emit("floor", [div])
    up = em.emit("gt", [em.emit("sub", [div, floor]), k(0.5)])
    floor = em.emit("where", [up, em.emit("add", [floor, k(1.0)]), floor])
    signed_zero = em.emit("copysign", [k(0.0), quotient])
    rounded = em.emit("where", [em.emit("ne", [div, k(0.0)]), floor, signed_zero])
    return em.emit("where", [em.emit("eq", [b, k(0.0)]), quotient, rounded])


@converts("aten.div.Tensor", "aten.div.Scalar", "aten.div.Tensor_mode", "aten.div.Scalar_mode")
def _div(em: Emitter, a: Args) -> Value:
    mode = a.get("rounding_mode")
    if mode is None:
        dt = em.out.dtype
        return em.emit("div", [em.operand(a["self"], dt), em.operand(a["other"], dt)])
    if mode not in ("trunc", "floor"):
        raise Unsupported(f"division with rounding_mode={mode!r}")
    if not em.out.dtype.startswith("float"):
        return _folded_integer_division(em, a, lambda p, q: torch.div(p, q, rounding_mode=mode))
    x, b = _float_operands(em, a, f"division with rounding_mode={mode!r}")
    if mode == "trunc":  # std::trunc(a / b), as PyTorch
        return _trunc(em, em.emit("div", [x, b]))
    return _floor_divide(em, x, b)


def _floor_divide_op(em: Emitter, a: Args) -> Value:
    return _floor_divide(em, *_float_operands(em, a, "floor_divide"))


converts("aten.floor_divide.default")(_integer_division(torch.floor_divide, _floor_divide_op))


def _nan_free(op: str, keeps_first: str) -> Converter:
    """fmax/fmin: a NaN operand gives way to the other (maximum/minimum propagate it); of two
    equal values (0.0 and -0.0) PyTorch's kernel gives the first."""

    def convert(em: Emitter, a: Args) -> Value:
        dt = em.out.dtype
        x, b = em.operand(a["self"], dt), em.operand(a["other"], dt)
        if not dt.startswith("float"):
            return em.emit(op, [x, b])
        first = em.emit("logical_or", [em.emit(keeps_first, [x, b]), em.emit("isnan", [b])])
        return em.emit("where", [first, x, b])

    return convert


converts("aten.fmax.default")(_nan_free("maximum", "ge"))
converts("aten.fmin.default")(_nan_free("minimum", "le"))


@converts("aten.signbit.default")
def _signbit(em: Emitter, a: Args) -> Value:
    """The sign bit: set for -0.0 and a negative NaN too (copysign reads it, no comparison can)."""
    x = _tensor(a, "self")
    if not x.dtype.startswith("float"):
        return em.emit("lt", [x, em.const(0, x.dtype)])
    one = em.const(1.0, x.dtype)
    return em.emit("lt", [em.emit("copysign", [one, x]), em.const(0.0, x.dtype)])


@converts("aten.logical_xor.default")
def _logical_xor(em: Emitter, a: Args) -> Value:
    x, y = _tensor(a, "self"), _tensor(a, "other")
    either = em.emit("logical_or", [x, y])
    both = em.emit("logical_and", [x, y])
    return em.cast(em.emit("logical_and", [either, em.emit("logical_not", [both])]), em.out.dtype)


@converts("aten.elu.default")
def _elu(em: Emitter, a: Args) -> Value:
    """PyTorch's ELU family (elu, selu, celu): scale * x above 0, else
    alpha * scale * expm1(x * input_scale) (NaN and -0.0 take the second branch, as eager)."""
    x = em.operand(a["self"], em.out.dtype)
    dt = x.dtype
    k = lambda v: em.const(float(v), dt)  # noqa: E731
    alpha, scale, input_scale = a.get("alpha", 1.0), a.get("scale", 1.0), a.get("input_scale", 1.0)
    neg = em.emit("mul", [em.emit("expm1", [em.emit("mul", [x, k(input_scale)])]), k(alpha * scale)])
    pos = em.emit("mul", [x, k(scale)])
    return em.emit("where", [em.emit("gt", [x, k(0.0)]), pos, neg])


@converts("aten.round.decimals")
def _round_decimals(em: Emitter, a: Args) -> Value:
    """PyTorch's kernel: round(x * 10^d) / 10^d, or round(x / 10^-d) * 10^-d for negative d,
    in the tensor's type (half to even, as round)."""
    x = _tensor(a, "self")
    d = int(a["decimals"])
    if not x.dtype.startswith("float"):
        return em.emit("identity", [x])
    if d == 0:
        return em.emit("round", [x])
    scale = em.const(10.0 ** abs(d), x.dtype)
    if d > 0:
        return em.emit("div", [em.emit("round", [em.emit("mul", [x, scale])]), scale])
    return em.emit("mul", [em.emit("round", [em.emit("div", [x, scale])]), scale])


@converts("aten.ldexp.Tensor")
def _ldexp(em: Emitter, a: Args) -> Value:
    """x * 2^e, as PyTorch computes it: mul by pow(2, e), both in the result's type."""
    dt = em.out.dtype
    power = em.emit("pow", [em.const(2.0, dt), em.operand(a["other"], dt)])
    return em.emit("mul", [em.operand(a["self"], dt), power])


@converts("aten.angle.default")
def _angle(em: Emitter, a: Args) -> Value:
    """The argument of a real number: pi below 0, else 0 (-0.0 included); NaN stays NaN."""
    x = _tensor(a, "self")
    if x.dtype.startswith("complex"):
        raise Unsupported(f"{x.dtype} tensors")
    dt = em.out.dtype
    angle = em.emit("where", [em.emit("lt", [x, em.const(0, x.dtype)]), em.const(np.pi, dt), em.const(0.0, dt)])
    if not x.dtype.startswith("float"):
        return angle
    return em.emit("where", [em.emit("isnan", [x]), em.cast(x, dt), angle])


@converts("aten.real.default")
def _real(em: Emitter, a: Args) -> Value:
    """The real part: a real tensor itself."""
    return _real_identity(em, a)
