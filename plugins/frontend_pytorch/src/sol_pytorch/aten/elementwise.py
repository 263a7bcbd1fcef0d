"""Element-wise ATen converters: activations, arithmetic, clamps and powers; copies, casts,
aliases and ``*_like`` constants (only a dtype change is work in SSA form)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sol.plugin_api import Value
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


@converts("aten.div.Tensor", "aten.div.Scalar", "aten.div.Tensor_mode", "aten.div.Scalar_mode")
def _div(em: Emitter, a: Args) -> Value:
    mode = a.get("rounding_mode")
    if mode is not None:
        raise Unsupported(f"division with rounding_mode={mode!r}")
    dt = em.out.dtype
    return em.emit("div", [em.operand(a["self"], dt), em.operand(a["other"], dt)])


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
