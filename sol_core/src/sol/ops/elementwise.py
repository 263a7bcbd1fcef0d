"""Element-wise ops: fused into their producer's or consumer's loop by the planner."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from sol.errors import SolError
from sol.ir import DTYPES, TensorType
from sol.ops._util import broadcast_shape, f64, same_dtype
from sol.ops.registry import REQUIRED, LayerClass, OpDef

_erf = np.vectorize(math.erf, otypes=[np.float64])


def _same(types: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    return [TensorType(broadcast_shape(*(t.shape for t in types)), same_dtype(types))]


def _unary(name: str, fn: Callable[..., np.ndarray], **attrs: Any) -> OpDef:
    def ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
        return [np.asarray(fn(f64(xs[0]), **a)).astype(xs[0].dtype)]

    return OpDef(name, LayerClass.ELEMENTWISE, _same, ref, (1, 1), dict(attrs))


def _binary(name: str, fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> OpDef:
    def ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
        return [np.asarray(fn(f64(xs[0]), f64(xs[1]))).astype(xs[0].dtype)]

    return OpDef(name, LayerClass.ELEMENTWISE, _same, ref, (2, 2))


def _relu6(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, 6.0)


def _gelu(x: np.ndarray, approximate: str) -> np.ndarray:
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


def _clamp(x: np.ndarray, min: float | None, max: float | None) -> np.ndarray:  # noqa: A002
    if min is not None:
        x = np.maximum(x, min)
    if max is not None:
        x = np.minimum(x, max)
    return x


def _check_gelu(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    if attrs["approximate"] not in ("none", "tanh"):
        raise SolError(f"gelu approximate must be 'none' or 'tanh', got {attrs['approximate']!r}")
    return attrs


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
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    unary = [
        _unary("relu", lambda x: np.maximum(x, 0)),
        _unary("sigmoid", sig),
        _unary("tanh", np.tanh),
        _unary("exp", np.exp),
        _unary("log", np.log),
        _unary("sqrt", np.sqrt),
        _unary("rsqrt", lambda x: 1 / np.sqrt(x)),
        _unary("neg", np.negative),
        _unary("abs", np.abs),
        _unary("silu", lambda x: x * sig(x)),
        _unary("hardswish", lambda x: x * _relu6(x + 3) / 6),
        _unary("hardsigmoid", lambda x: _relu6(x + 3) / 6),
        _unary("erf", _erf),
        _unary("identity", lambda x: x),
        _unary("dropout", lambda x, p: x, p=0.5),
        _unary("leaky_relu", lambda x, alpha: np.where(x >= 0, x, alpha * x), alpha=0.01),
        _unary("gelu", _gelu, approximate="none"),
        _unary("clamp", _clamp, min=None, max=None),
    ]
    by_name = {o.name: o for o in unary}
    by_name["gelu"].normalize = _check_gelu
    by_name["clamp"].normalize = _float_or_none
    by_name["leaky_relu"].normalize = _float_or_none
    binary = [
        _binary("add", np.add), _binary("sub", np.subtract), _binary("mul", np.multiply),
        _binary("div", np.divide), _binary("maximum", np.maximum), _binary("minimum", np.minimum),
        _binary("pow", np.power),
    ]
    bn = OpDef("batch_norm", LayerClass.ELEMENTWISE, _batch_norm_infer, _batch_norm_ref, (5, 5),
               {"eps": 1e-5, "axis": 1}, normalize=_bn_normalize,
               doc="inference BatchNorm: (x - mean) / sqrt(var + eps) * weight + bias along `axis`")
    cast = OpDef("cast", LayerClass.ELEMENTWISE, _cast_infer,
                 lambda xs, a: [xs[0].astype(a["dtype"])], (1, 1), {"dtype": REQUIRED})
    return unary + binary + [bn, cast]
