"""ATen operators -> sol IR: one small converter per ATen overload.

The importer hands each converter the node's arguments bound to the overload's schema (so
defaults and keyword arguments look the same), with graph tensors already replaced by sol
:class:`~sol.ir.Value`s and Python scalars left as they are. A converter returns the sol value
(or a tuple of them for multi-output overloads). The node's fake tensor (``meta["val"]``) is the
ground truth for shapes and dtypes: converters read the expected result type from it instead of
re-deriving PyTorch's rules (type promotion, ``view(-1)``, ``squeeze``), and the importer checks
every result against it, so a wrong mapping fails at import and never gives a wrong number.

Converters are keyed by the overload's name (``aten.add.Tensor``) so that this table, error
messages and :func:`supported_ops` all speak the name users see in ``torch.export`` graphs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from sol.converters import ConverterTable
from sol.ir import Graph, TensorType, Value, ValueKind

Args = dict[str, Any]
Result = Any  # a Value, or a tuple of Values / None for multi-output overloads
Converter = Callable[["Emitter", Args], Result]

CONVERTERS: ConverterTable[Converter] = ConverterTable("PyTorch")
converts = CONVERTERS.converts
"""Registers a converter for op names (core's :class:`~sol.converters.ConverterTable`)."""
WEIGHT_VALUES = "pytorch.weight_values"
"""``Graph.meta`` flag: a converter folded a weight's or buffer's values into the graph (an
attention mask buffer), so the graph holds for these values only (the trace cache keeps none)."""


class Unsupported(Exception):
    """A converter cannot express this use of its op (e.g. a transposed convolution). The
    importer adds the op's name and where it came from in the model."""


def supported_ops() -> list[str]:
    """The ATen overloads sol's PyTorch frontend compiles (others are decomposed when PyTorch
    knows how, or reported as unsupported)."""
    return sorted(CONVERTERS)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def tensor_type(val: Any) -> TensorType:
    """The sol type of a (fake) tensor; raises Unsupported for dtypes sol does not have."""
    try:
        return TensorType(tuple(int(d) for d in val.shape), dtype_name(val.dtype))
    except ValueError as exc:
        raise Unsupported(str(exc)) from None


class Emitter:
    """What converters use to build the graph: node creation with the current source location,
    constants, casts, and the result type PyTorch computed for the node being converted."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.source: str | None = None
        self.val: Any = None  # meta["val"] of the node being converted

    # --- expected result ----------------------------------------------------------------------
    @property
    def out(self) -> TensorType:
        """Type of the node's (first) tensor result."""
        val = self.val[0] if isinstance(self.val, (tuple, list)) else self.val
        return tensor_type(val)

    # --- building -----------------------------------------------------------------------------
    def emit(self, op: str, inputs: Sequence[Value], **attrs: Any) -> Value:
        return self.graph.add_node(op, list(inputs), attrs, source=self.source).output

    def const(self, value: Any, dtype: str) -> Value:
        return self.graph.add_const(np.asarray(value, dtype=dtype), hint="k")

    def cast(self, v: Value, dtype: str) -> Value:
        return v if v.dtype == dtype else self.emit("cast", [v], dtype=dtype)

    def operand(self, x: Any, dtype: str) -> Value:
        """A tensor operand cast to ``dtype`` (PyTorch's promoted type), or a Python scalar as
        a constant of that dtype."""
        if isinstance(x, Value):
            return self.cast(x, dtype)
        if isinstance(x, (bool, int, float)):
            return self.const(x, dtype)
        raise Unsupported(f"cannot use {type(x).__name__} {x!r} as a tensor operand")

    def reshape(self, v: Value, shape: Sequence[int]) -> Value:
        shape = tuple(int(d) for d in shape)
        return v if v.shape == shape else self.emit("reshape", [v], shape=shape)

    def transpose(self, v: Value, perm: Sequence[int]) -> Value:
        perm = tuple(p % v.type.rank for p in perm) if v.type.rank else ()
        return v if perm == tuple(range(len(perm))) else self.emit("transpose", [v], perm=perm)


# --- argument helpers -------------------------------------------------------------------------


def pair(v: Any, name: str = "value") -> tuple[int, int]:
    """PyTorch's int-or-list window arguments (``3``, ``[3]``, ``[3, 2]``) as a pair."""
    if isinstance(v, int):
        return (v, v)
    items = [int(x) for x in v]
    if len(items) == 1:
        return (items[0], items[0])
    if len(items) == 2:
        return (items[0], items[1])
    raise Unsupported(f"{name} {list(v)} is not 2-D")


def symmetric(p: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    return ((p[0], p[0]), (p[1], p[1]))


def _tensor(a: Args, key: str) -> Value:
    v = a[key]
    if not isinstance(v, Value):
        raise Unsupported(f"argument {key!r} must be a tensor of the model, got {type(v).__name__}")
    return v


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


def _scaled(em: Emitter, x: Any, alpha: Any, dtype: str) -> Value:
    """``alpha * x`` for add/sub's ``alpha`` argument (folded when ``x`` is a scalar)."""
    if alpha == 1:
        return em.operand(x, dtype)
    if isinstance(x, Value):
        return em.emit("mul", [em.cast(x, dtype), em.const(alpha, dtype)])
    return em.const(x * alpha, dtype)


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


@converts("aten.detach.default")
def _detach(em: Emitter, a: Args) -> Value:
    """The value, with no gradient through it (``x.detach()``, and what the training importer
    makes of ``torch.no_grad()`` blocks): core's ``stop_gradient``, which costs nothing once
    differentiated (a pass removes it); compiling it as a copy would train through it."""
    return em.emit("stop_gradient", [_tensor(a, "self")])


@converts("aten.alpha_dropout.default", "aten.feature_alpha_dropout.default")  # dropout: aten_training
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


# --- shapes and data movement -----------------------------------------------------------------


@converts("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default", "aten.flatten.using_ints",
          "aten.unflatten.int", "aten.squeeze.default", "aten.squeeze.dim", "aten.squeeze.dims",
          "aten.unsqueeze.default", "aten.reshape_as.default")
def _reshape(em: Emitter, a: Args) -> Value:
    """All of these keep the element order: a reshape to the shape PyTorch computed."""
    return em.reshape(_tensor(a, "self"), em.out.shape)


@converts("aten.expand.default", "aten.expand_as.default")
def _expand(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "self")
    t = em.out
    if x.type.numel == t.numel:
        return em.reshape(x, t.shape)
    # Broadcasting is NumPy's rule, as for expand; multiplying by ones is exact (also for
    # -0.0, inf and nan), and the planner fuses it into the consumer's loop.
    return em.emit("mul", [x, em.graph.add_const(np.ones(t.shape, dtype=t.dtype), hint="ones")])


@converts("aten.permute.default")
def _permute(em: Emitter, a: Args) -> Value:
    return em.transpose(_tensor(a, "self"), a["dims"])


def _swap(rank: int, d0: int, d1: int) -> list[int]:
    perm = list(range(rank))
    if rank:
        d0, d1 = d0 % rank, d1 % rank
        perm[d0], perm[d1] = perm[d1], perm[d0]
    return perm


@converts("aten.transpose.int", "aten.swapaxes.default", "aten.swapdims.default")
def _transpose(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "self")
    d0, d1 = (a["dim0"], a["dim1"]) if "dim0" in a else (a["axis0"], a["axis1"])
    return em.transpose(x, _swap(x.type.rank, int(d0), int(d1)))


@converts("aten.t.default")
def _t(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "self")
    return x if x.type.rank < 2 else em.transpose(x, (1, 0))


@converts("aten.numpy_T.default")
def _numpy_t(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "self")
    return em.transpose(x, tuple(reversed(range(x.type.rank))))


@converts("aten.mT.default")
def _mt(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "self")
    return em.transpose(x, _swap(x.type.rank, -2, -1))


@converts("aten.cat.default", "aten.concat.default", "aten.concatenate.default")
def _cat(em: Emitter, a: Args) -> Value:
    t = em.out
    parts = [em.operand(v, t.dtype) for v in a["tensors"]]
    # PyTorch still accepts legacy empty 1-D tensors beside tensors of any rank; they add nothing.
    parts = [v for v in parts if not (v.shape == (0,) and t.rank != 1)]
    if len(parts) == 1:
        return em.reshape(parts[0], t.shape)
    return em.emit("concat", parts, axis=a["dim"])


@converts("aten.stack.default")
def _stack(em: Emitter, a: Args) -> Value:
    t = em.out
    dim = a["dim"] % t.rank
    parts = []
    for v in a["tensors"]:
        v = em.operand(v, t.dtype)
        parts.append(em.reshape(v, v.shape[:dim] + (1,) + v.shape[dim:]))
    return parts[0] if len(parts) == 1 else em.emit("concat", parts, axis=dim)


# --- reductions and normalizations ------------------------------------------------------------


def _reduce(op: str) -> Converter:
    def convert(em: Emitter, a: Args) -> Value:
        x = em.operand(a["self"], em.out.dtype)
        dims = a.get("dim")
        if x.type.rank == 0:
            return x
        if dims is None or (isinstance(dims, (list, tuple)) and len(dims) == 0):
            dims = tuple(range(x.type.rank))
        elif isinstance(dims, int):
            dims = (dims,)
        return em.emit(op, [x], axes=tuple(dims), keepdims=bool(a.get("keepdim", False)))

    return convert


converts("aten.mean.dim", "aten.mean.default")(_reduce("mean"))
converts("aten.sum.dim_IntList", "aten.sum.default")(_reduce("sum"))


def _softmax(op: str) -> Converter:
    def convert(em: Emitter, a: Args) -> Value:
        x = em.operand(a["self"], em.out.dtype)  # dtype= / half_to_float: computed in out's type
        if x.type.rank == 0:
            return em.reshape(em.emit(op, [em.reshape(x, (1,))], axis=0), ())
        return em.emit(op, [x], axis=a["dim"])

    return convert


converts("aten.softmax.int", "aten._softmax.default")(_softmax("softmax"))
converts("aten.log_softmax.int", "aten._log_softmax.default")(_softmax("log_softmax"))


def _batch_norm(em: Emitter, x: Value, weight: Any, bias: Any, mean: Any, var: Any, eps: float) -> Value:
    if mean is None or var is None:
        raise Unsupported("batch_norm with batch statistics (track_running_stats=False)")
    if x.type.rank < 2:
        raise Unsupported(f"batch_norm of a rank-{x.type.rank} tensor")
    c, dt = x.shape[1], x.dtype
    weight = weight if weight is not None else em.const(np.ones(c), dt)
    bias = bias if bias is not None else em.const(np.zeros(c), dt)
    return em.emit("batch_norm", [x, mean, var, weight, bias], eps=float(eps), axis=1)


@converts("aten.batch_norm.default")
def _batch_norm_default(em: Emitter, a: Args) -> Value:
    if a["training"]:  # batch statistics; running ones would be updated in place (see aten_training)
        if a["running_mean"] is not None or a["running_var"] is not None:
            raise Unsupported("batch_norm updating running statistics in place (training=True)")
        from sol_pytorch.aten_training import batch_norm_batch_stats

        return batch_norm_batch_stats(em, _tensor(a, "input"), a["weight"], a["bias"], a["eps"])[0]
    return _batch_norm(em, _tensor(a, "input"), a["weight"], a["bias"], a["running_mean"], a["running_var"],
                       a["eps"])


@converts("aten._native_batch_norm_legit_no_training.default")
def _native_batch_norm(em: Emitter, a: Args) -> tuple[Value, None, None]:
    y = _batch_norm(em, _tensor(a, "input"), a["weight"], a["bias"], a["running_mean"], a["running_var"],
                    a["eps"])
    return y, None, None  # saved mean / rstd: training only


def _layer_norm(em: Emitter, x: Value, shape: Sequence[int], weight: Any, bias: Any, eps: float) -> Value:
    """Over the trailing ``len(shape)`` axes: (x - mean) * rsqrt(var + eps) * weight + bias,
    built from existing element-wise ops and reductions (mean of squared deviations)."""
    axes = tuple(range(x.type.rank - len(shape), x.type.rank))
    mean = em.emit("mean", [x], axes=axes, keepdims=True)
    d = em.emit("sub", [x, mean])
    var = em.emit("mean", [em.emit("mul", [d, d])], axes=axes, keepdims=True)
    y = em.emit("mul", [d, em.emit("rsqrt", [em.emit("add", [var, em.const(eps, x.dtype)])])])
    if weight is not None:
        y = em.emit("mul", [y, weight])
    if bias is not None:
        y = em.emit("add", [y, bias])
    return y


@converts("aten.layer_norm.default")
def _layer_norm_default(em: Emitter, a: Args) -> Value:
    return _layer_norm(em, _tensor(a, "input"), a["normalized_shape"], a["weight"], a["bias"], a["eps"])


@converts("aten.native_layer_norm.default")
def _native_layer_norm(em: Emitter, a: Args) -> tuple[Value, None, None]:
    y = _layer_norm(em, _tensor(a, "input"), a["normalized_shape"], a["weight"], a["bias"], a["eps"])
    return y, None, None  # saved mean / rstd: training only


# --- windows: pooling -------------------------------------------------------------------------


def _as_batched(em: Emitter, x: Value) -> Value:
    """Unbatched (C, H, W) input as (1, C, H, W): sol's window ops take NCHW."""
    if x.type.rank == 3:
        return em.reshape(x, (1,) + x.shape)
    if x.type.rank != 4:
        raise Unsupported(f"2-D pooling of a rank-{x.type.rank} tensor")
    return x


def _pool_attrs(a: Args) -> dict[str, Any]:
    kernel = pair(a["kernel_size"], "kernel_size")
    stride = pair(a["stride"], "stride") if a.get("stride") else kernel
    return {"kernel": kernel, "stride": stride, "padding": symmetric(pair(a["padding"], "padding")),
            "ceil_mode": bool(a["ceil_mode"])}


@converts("aten.max_pool2d.default")
def _max_pool(em: Emitter, a: Args) -> Value:
    x = _as_batched(em, _tensor(a, "self"))
    y = em.emit("max_pool2d", [x], dilation=pair(a["dilation"], "dilation"), **_pool_attrs(a))
    return em.reshape(y, em.out.shape)


@converts("aten.max_pool2d_with_indices.default")
def _max_pool_with_indices(em: Emitter, a: Args) -> tuple[Value, None]:
    return _max_pool(em, a), None  # indices: only for max_unpool / training


@converts("aten.avg_pool2d.default")
def _avg_pool(em: Emitter, a: Args) -> Value:
    x = _as_batched(em, _tensor(a, "self"))
    divisor = a.get("divisor_override")
    y = em.emit("avg_pool2d", [x], count_include_pad=bool(a["count_include_pad"]),
                divisor=None if divisor is None else int(divisor), **_pool_attrs(a))
    return em.reshape(y, em.out.shape)


@converts("aten.adaptive_avg_pool2d.default", "aten._adaptive_avg_pool2d.default")
def _adaptive_avg_pool(em: Emitter, a: Args) -> Value:
    x = _as_batched(em, _tensor(a, "self"))
    y = em.emit("adaptive_avg_pool2d", [x], output_size=tuple(em.out.shape[-2:]))
    return em.reshape(y, em.out.shape)


# --- convolution and matrix products ----------------------------------------------------------


def _same_padding(kernel: Sequence[int], dilation: Sequence[int]) -> list[tuple[int, int]]:
    """PyTorch's padding='same': the total d*(k-1) split with the odd element at the end."""
    out = []
    for k, d in zip(kernel, dilation):
        total = d * (k - 1)
        out.append((total // 2, total - total // 2))
    return out


def _conv(em: Emitter, x: Value, w: Value, b: Any, stride: Any, padding: Any, dilation: Any,
          groups: int) -> Value:
    """1-D and 2-D convolution (batched or not) as sol's conv2d: 1-D runs as H=1."""
    spatial = w.type.rank - 2
    if spatial not in (1, 2):
        raise Unsupported(f"{spatial}-D convolution")
    if x.type.rank == w.type.rank - 1:
        x = em.reshape(x, (1,) + x.shape)

    def per_dim(v: Any) -> list[int]:
        items = [v] * spatial if isinstance(v, int) else [int(i) for i in v]
        return items * spatial if len(items) == 1 else items

    stride, dilation = per_dim(stride), per_dim(dilation)
    if padding == "valid":
        pads = [(0, 0)] * spatial
    elif padding == "same":
        pads = _same_padding(w.shape[2:], dilation)
    else:
        pads = [(p, p) for p in per_dim(padding)]
    if spatial == 1:
        x = em.reshape(x, x.shape[:2] + (1,) + x.shape[2:])
        w = em.reshape(w, w.shape[:2] + (1,) + w.shape[2:])
        stride, dilation, pads = [1] + stride, [1] + dilation, [(0, 0)] + pads
    inputs = [x, w] + ([b] if b is not None else [])
    y = em.emit("conv2d", inputs, stride=tuple(stride), padding=tuple(pads), dilation=tuple(dilation),
                groups=int(groups))
    return em.reshape(y, em.out.shape)


@converts("aten.conv2d.default", "aten.conv1d.default", "aten.conv2d.padding", "aten.conv1d.padding")
def _conv_nd(em: Emitter, a: Args) -> Value:
    return _conv(em, _tensor(a, "input"), _tensor(a, "weight"), a["bias"], a["stride"], a["padding"],
                 a["dilation"], a["groups"])


@converts("aten.convolution.default")
def _convolution(em: Emitter, a: Args) -> Value:
    if a["transposed"]:
        from sol_pytorch.aten_spatial import conv_transpose

        return conv_transpose(em, _tensor(a, "input"), _tensor(a, "weight"), a["bias"], a["stride"], a["padding"],
                              a["output_padding"], a["dilation"], a["groups"])
    return _conv(em, _tensor(a, "input"), _tensor(a, "weight"), a["bias"], a["stride"], a["padding"],
                 a["dilation"], a["groups"])


@converts("aten.linear.default")
def _linear(em: Emitter, a: Args) -> Value:
    w = _tensor(a, "weight")
    if w.type.rank != 2:
        raise Unsupported(f"linear with a rank-{w.type.rank} weight")
    b = a["bias"]
    return em.emit("dense", [_tensor(a, "input"), w] + ([b] if b is not None else []))


@converts("aten.mm.default", "aten.bmm.default", "aten.matmul.default")
def _matmul(em: Emitter, a: Args) -> Value:
    """torch.matmul's 1-D cases as NumPy's: a vector becomes a row/column matrix whose extra
    dimension the final reshape (to PyTorch's result shape) removes again."""
    x, y = _tensor(a, "self"), _tensor(a, "other" if "other" in a else "mat2")
    if x.type.rank == 1:
        x = em.reshape(x, (1,) + x.shape)
    if y.type.rank == 1:
        y = em.reshape(y, y.shape + (1,))
    return em.reshape(em.emit("matmul", [x, y]), em.out.shape)


@converts("aten.addmm.default")
def _addmm(em: Emitter, a: Args) -> Value:
    """beta * self + alpha * (mat1 @ mat2)."""
    dt = em.out.dtype
    y = em.emit("matmul", [_tensor(a, "mat1"), _tensor(a, "mat2")])
    if a["alpha"] != 1:
        y = em.emit("mul", [y, em.const(a["alpha"], dt)])
    if a["beta"] == 0:  # PyTorch ignores self then, even nan/inf in it
        return y
    return em.emit("add", [y, _scaled(em, a["self"], a["beta"], dt)])


# --- slicing, splitting and padding -----------------------------------------------------------

_END = 1 << 62  # "to the end": any bound past the axis clamps to it (Python slice rules)


def _dim(x: Value, dim: Any) -> int:
    rank = x.type.rank
    d = int(dim)
    if not -rank <= d < rank:
        raise Unsupported(f"dim {d} of a rank-{rank} tensor")
    return d % rank


def _slice(em: Emitter, x: Value, dim: int, start: Any, stop: Any, step: Any = 1) -> Value:
    """``x[start:stop:step]`` along ``dim`` (None bounds, negative and out-of-range ones as in
    Python); no node when it keeps everything; an empty result is an empty constant."""
    step = 1 if step is None else int(step)
    if step < 1:
        raise Unsupported(f"slice step {step} (PyTorch only allows positive steps)")
    n = x.shape[dim]
    s, e, st = slice(None if start is None else int(start), None if stop is None else int(stop), step).indices(n)
    size = len(range(s, e, st))
    if size == n:
        return x
    if size == 0:
        shape = x.shape[:dim] + (0,) + x.shape[dim + 1:]
        return em.graph.add_const(np.zeros(shape, dtype=x.dtype), hint="empty")
    return em.emit("slice", [x], axes=(dim,), starts=(s,), stops=(e,), steps=(st,))


@converts("aten.slice.Tensor")
def _slice_tensor(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "self")
    return _slice(em, x, _dim(x, a["dim"]), a["start"], a["end"], a["step"])


def _index(x: Value, dim: int, index: Any) -> int:
    i, n = int(index), x.shape[dim]
    if not -n <= i < n:
        raise Unsupported(f"index {i} out of range for dim {dim} of size {n}")
    return i % n


@converts("aten.select.int")
def _select(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "self")
    dim = _dim(x, a["dim"])
    i = _index(x, dim, a["index"])
    return em.reshape(_slice(em, x, dim, i, i + 1), em.out.shape)


@converts("aten.narrow.default")
def _narrow(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "self")
    dim = _dim(x, a["dim"])
    start = int(a["start"])
    start = start + x.shape[dim] if start < 0 else start
    return _slice(em, x, dim, start, start + int(a["length"]))


def _pieces(em: Emitter, x: Value, dim: int, bounds: Sequence[tuple[int, int]]) -> tuple[Value, ...]:
    return tuple(_slice(em, x, dim, s, e) for s, e in bounds)


def _consecutive(sizes: Sequence[int]) -> list[tuple[int, int]]:
    bounds, start = [], 0
    for size in sizes:
        bounds.append((start, start + int(size)))
        start += int(size)
    return bounds


def _even_sizes(n: int, size: int) -> list[int]:
    """``split(size)``: pieces of ``size``, the last one smaller (one empty piece if n == 0)."""
    if size <= 0:
        raise Unsupported(f"split size {size}")
    return [min(size, n - s) for s in range(0, n, size)] or [0]


@converts("aten.split.Tensor", "aten.unsafe_split.Tensor")
def _split(em: Emitter, a: Args) -> tuple[Value, ...]:
    x = _tensor(a, "self")
    dim = _dim(x, a["dim"])
    return _pieces(em, x, dim, _consecutive(_even_sizes(x.shape[dim], int(a["split_size"]))))


@converts("aten.split_with_sizes.default", "aten.unsafe_split_with_sizes.default", "aten.split.sizes")
def _split_with_sizes(em: Emitter, a: Args) -> tuple[Value, ...]:
    x = _tensor(a, "self")
    dim = _dim(x, a["dim"])
    sizes = a["split_sizes"] if "split_sizes" in a else a["split_size"]
    return _pieces(em, x, dim, _consecutive(sizes))


@converts("aten.chunk.default", "aten.unsafe_chunk.default")
def _chunk(em: Emitter, a: Args) -> tuple[Value, ...]:
    x = _tensor(a, "self")
    dim = _dim(x, a["dim"])
    n, chunks = x.shape[dim], int(a["chunks"])
    if chunks < 1:
        raise Unsupported(f"chunk into {chunks} pieces")
    sizes = [0] * chunks if n == 0 else _even_sizes(n, -(-n // chunks))  # PyTorch: ceil(n / chunks) each
    return _pieces(em, x, dim, _consecutive(sizes))


@converts("aten.tensor_split.sections")
def _tensor_split_sections(em: Emitter, a: Args) -> tuple[Value, ...]:
    x = _tensor(a, "self")
    dim = _dim(x, a["dim"])
    n, k = x.shape[dim], int(a["sections"])
    if k < 1:
        raise Unsupported(f"tensor_split into {k} sections")
    return _pieces(em, x, dim, _consecutive([n // k + (1 if i < n % k else 0) for i in range(k)]))


@converts("aten.tensor_split.indices")
def _tensor_split_indices(em: Emitter, a: Args) -> tuple[Value, ...]:
    x = _tensor(a, "self")
    dim = _dim(x, a["dim"])
    cuts = [0] + [int(i) for i in a["indices"]] + [_END]
    return _pieces(em, x, dim, list(zip(cuts[:-1], cuts[1:])))


@converts("aten.unbind.int")
def _unbind(em: Emitter, a: Args) -> tuple[Value, ...]:
    x = _tensor(a, "self")
    dim = _dim(x, a["dim"])
    shape = x.shape[:dim] + x.shape[dim + 1:]
    return tuple(em.reshape(_slice(em, x, dim, i, i + 1), shape) for i in range(x.shape[dim]))


def _pad_pairs(x: Value, pad: Sequence[Any]) -> list[tuple[int, int]]:
    """PyTorch's pad list (last dim first: (left, right, top, bottom, ...)) as one (before,
    after) pair per axis of ``x``."""
    pad = [int(p) for p in pad]
    rank = x.type.rank
    if len(pad) % 2 or len(pad) // 2 > rank:
        raise Unsupported(f"pad list {pad} for a rank-{rank} tensor")
    pairs = [(0, 0)] * rank
    for i in range(len(pad) // 2):
        pairs[rank - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return pairs


def _constant_pad(em: Emitter, x: Value, pairs: list[tuple[int, int]], value: Any) -> Value:
    """Negative amounts crop (one ``slice`` node); the non-negative rest is one ``pad`` node."""
    crop = [(d, max(-lo, 0), x.shape[d] - max(-hi, 0)) for d, (lo, hi) in enumerate(pairs) if lo < 0 or hi < 0]
    if any(s >= e for _, s, e in crop):
        raise Unsupported(f"padding {pairs} crops {x.type} to nothing")
    if crop:
        x = em.emit("slice", [x], axes=tuple(d for d, _, _ in crop), starts=tuple(s for _, s, _ in crop),
                    stops=tuple(e for _, _, e in crop))
    rest = tuple((max(lo, 0), max(hi, 0)) for lo, hi in pairs)
    if not any(lo or hi for lo, hi in rest):
        return x
    return em.emit("pad", [x], pads=rest, value=float(value))


def _edge(em: Emitter, x: Value, dim: int, lo: int, hi: int, mode: str) -> Value:
    """``x`` padded along ``dim`` by ``lo`` / ``hi`` elements as a concat of slices of it."""
    n = x.shape[dim]

    def at(i: int) -> Value:
        return _slice(em, x, dim, i, i + 1)

    if mode == "reflect":  # x[lo], ..., x[1] | x | x[n-2], ..., x[n-1-hi]
        if lo >= n or hi >= n:
            raise Unsupported(f"reflect padding by {max(lo, hi)} of a dim of size {n}")
        parts = [at(i) for i in range(lo, 0, -1)] + [x] + [at(n - 2 - i) for i in range(hi)]
    elif mode == "replicate":  # x[0] lo times | x | x[n-1] hi times
        parts = [at(0)] * lo + [x] + [at(n - 1)] * hi
    else:  # circular: x[n-lo:] | x | x[:hi]
        if lo > n or hi > n:
            raise Unsupported(f"circular padding by {max(lo, hi)} of a dim of size {n}")
        parts = ([_slice(em, x, dim, n - lo, n)] if lo else []) + [x] + ([_slice(em, x, dim, 0, hi)] if hi else [])
    return x if len(parts) == 1 else em.emit("concat", parts, axis=dim)


_PAD_MODES = ("constant", "reflect", "replicate", "circular")
_EDGE_PAD_LIMIT = 64  # reflect/replicate take one slice per padded element


@converts("aten.constant_pad_nd.default")
def _constant_pad_nd(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "self")
    return _constant_pad(em, x, _pad_pairs(x, a["pad"]), a["value"])


@converts("aten.pad.default")
def _pad(em: Emitter, a: Args) -> Value:
    """``F.pad``: constant padding (negative amounts crop); reflect, replicate and circular
    padding as concatenations of slices of the input, one axis after the other (exact: these
    modes are separable)."""
    x = _tensor(a, "self")
    mode = a["mode"]
    pairs = _pad_pairs(x, a["pad"])
    if mode == "constant":
        value = a["value"]
        return _constant_pad(em, x, pairs, 0.0 if value is None else value)
    if mode not in _PAD_MODES:
        raise Unsupported(f"padding mode {mode!r}")
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        raise Unsupported(f"{mode} padding by negative amounts")
    if mode != "circular" and sum(lo + hi for lo, hi in pairs) > _EDGE_PAD_LIMIT:
        raise Unsupported(f"{mode} padding by more than {_EDGE_PAD_LIMIT} elements in all")
    for d in reversed(range(x.type.rank)):  # last dim first, as PyTorch pads
        lo, hi = pairs[d]
        if lo or hi:
            x = _edge(em, x, d, lo, hi, mode)
    return x


# --- attention --------------------------------------------------------------------------------


@converts("aten.scaled_dot_product_attention.default")
def _attention(em: Emitter, a: Args) -> Value:
    """softmax(q @ k^T * scale + mask) @ v: PyTorch's reference math, from ops the planner fuses
    (the scale and mask become epilogues of the first product, softmax a fused row loop)."""
    if a.get("dropout_p"):
        raise Unsupported("attention dropout (dropout_p > 0: training)")
    if a.get("enable_gqa"):
        raise Unsupported("grouped-query attention (enable_gqa=True)")
    q, k, v = _tensor(a, "query"), _tensor(a, "key"), _tensor(a, "value")
    dt = em.out.dtype
    length, source, width = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = a.get("scale")
    scale = 1.0 / float(np.sqrt(width)) if scale is None else float(scale)
    scores = em.emit("matmul", [q, em.transpose(k, _swap(k.type.rank, -2, -1))])
    scores = em.emit("mul", [scores, em.const(scale, dt)])
    if a.get("is_causal"):
        causal = np.triu(np.full((length, source), -np.inf), 1)
        scores = em.emit("add", [scores, em.const(causal, dt)])
    mask = a.get("attn_mask")
    if mask is not None:
        if not isinstance(mask, Value):
            raise Unsupported(f"attention mask of type {type(mask).__name__}")
        if mask.dtype == "bool":
            if mask.data is None:  # a boolean mask computed at run time needs a select op
                raise Unsupported("a boolean attention mask computed at run time")
            if mask.kind is ValueKind.PARAM:  # a buffer's values, folded: the graph holds them
                em.graph.meta[WEIGHT_VALUES] = True
            additive = np.where(np.asarray(mask.data), 0.0, -np.inf)
            mask = em.const(additive, dt)
        scores = em.emit("add", [scores, em.cast(mask, dt)])
    # PyTorch's attention gives zeros, not NaN, for a row its mask hides completely.
    weights = em.emit("softmax", [scores], axis=-1, masked_rows="zero")
    return em.emit("matmul", [weights, v])


# Converters in their own modules, registered into CONVERTERS on import:
# aten_index: token models (embedding, comparisons, masks, max/argmax);
# aten_recurrent: recurrent layers (nn.LSTM, nn.GRU as aten.lstm.input / aten.gru.input);
# aten_spatial: decoder-style image models (transposed convolution, upsampling, group norm);
# aten_training: training-mode BatchNorm (batch statistics, running updates) and dropout masks.
from sol_pytorch import aten_index, aten_recurrent, aten_spatial, aten_training  # noqa: E402,F401
