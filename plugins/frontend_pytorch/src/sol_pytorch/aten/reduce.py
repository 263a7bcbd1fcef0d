"""Reductions and normalizations: mean and sum, softmax, inference BatchNorm, layer, group and
instance normalization (built from sol's ``mean`` and element-wise ops, which the planner fuses
into one loop nest per row or group)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sol.plugin_api import Value
from sol_pytorch.aten.base import Args, Converter, Emitter, Unsupported, _batch_norm, _tensor, converts
from sol_pytorch.aten.training import batch_norm_batch_stats, invstd, saved_statistics

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


@converts("aten.cumsum.default")
def _cumsum(em: Emitter, a: Args) -> Value:
    """Running sum in the result's dtype (PyTorch's: int64 for integer and bool inputs unless
    ``dtype`` says otherwise), the input cast to it first as PyTorch does."""
    x = em.operand(a["self"], em.out.dtype)
    if x.type.rank == 0:
        return x
    return em.emit("cumsum", [x], axis=int(a["dim"]))


def _softmax(op: str) -> Converter:
    def convert(em: Emitter, a: Args) -> Value:
        x = em.operand(a["self"], em.out.dtype)  # dtype= / half_to_float: computed in out's type
        if x.type.rank == 0:
            return em.reshape(em.emit(op, [em.reshape(x, (1,))], axis=0), ())
        return em.emit(op, [x], axis=a["dim"])

    return convert


converts("aten.softmax.int", "aten._softmax.default")(_softmax("softmax"))
converts("aten.log_softmax.int", "aten._log_softmax.default")(_softmax("log_softmax"))


@converts("aten.batch_norm.default")
def _batch_norm_default(em: Emitter, a: Args) -> Value:
    if a["training"]:  # batch statistics; running ones would be updated in place (see aten/training.py)
        if a["running_mean"] is not None or a["running_var"] is not None:
            raise Unsupported("batch_norm updating running statistics in place (training=True)")
        return batch_norm_batch_stats(em, _tensor(a, "input"), a["weight"], a["bias"], a["eps"])[0]
    return _batch_norm(em, _tensor(a, "input"), a["weight"], a["bias"], a["running_mean"], a["running_var"],
                       a["eps"])


@converts("aten._native_batch_norm_legit_no_training.default")
def _native_batch_norm(em: Emitter, a: Args) -> tuple[Value, Value, Value]:
    y = _batch_norm(em, _tensor(a, "input"), a["weight"], a["bias"], a["running_mean"], a["running_var"],
                    a["eps"])
    # saved mean / invstd: the empty tensors PyTorch returns at inference (unused ones are pruned)
    return (y, *saved_statistics(em, _tensor(a, "running_mean"), invstd(em, _tensor(a, "running_var"), a["eps"])))


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
def _native_layer_norm(em: Emitter, a: Args) -> tuple[Value, Value, Value]:
    x, eps = _tensor(a, "input"), float(a["eps"])
    y = _layer_norm(em, x, a["normalized_shape"], a["weight"], a["bias"], eps)
    axes = tuple(range(x.type.rank - len(a["normalized_shape"]), x.type.rank))
    return (y, *_saved_statistics(em, x, axes, eps))


def _saved_statistics(em: Emitter, x: Value, axes: tuple[int, ...], eps: float) -> tuple[Value, Value]:
    """The mean and 1 / sqrt(biased variance + eps) over ``axes`` that PyTorch's native norms
    return beside the result (shaped as PyTorch has them: ``em.val[1]``); the planner merges
    these reductions with the normalization's own."""
    mean = em.emit("mean", [x], axes=axes, keepdims=True)
    var = em.emit("variance", [x, mean], axes=axes, keepdims=True)
    rstd = em.emit("rsqrt", [em.emit("add", [var, em.const(eps, x.dtype)])])
    shapes = [tuple(int(d) for d in v.shape) for v in em.val[1:3]]
    return em.reshape(mean, shapes[0]), em.reshape(rstd, shapes[1])



# --- group and instance normalization ---------------------------------------------------------


def group_norm(em: Emitter, x: Value, groups: int, weight: Any, bias: Any, eps: float) -> Value:
    """(x - mean) * rsqrt(var + eps) per (sample, group), then the per-channel affine.

    A decomposition into mean / sub / mul / rsqrt / add rather than a core op: computed in the
    (N, G, C/G, H*W) view, every step (statistics and affine) shares the outer (N, G) loops, so
    the planner fuses the whole normalization into one depth-first loop nest whose per-group
    slice stays in scratch memory, on every device, without a template of its own. The affine
    parameters are reshaped to (G, C/G, 1) so that they broadcast in that same view."""
    if x.type.rank < 2:
        raise Unsupported(f"group_norm of a rank-{x.type.rank} tensor")
    n, c = x.shape[:2]
    if groups < 1 or c % groups:
        raise Unsupported(f"group_norm with {groups} groups of {c} channels")
    cg, dt = c // groups, x.dtype
    hw = int(np.prod(x.shape[2:], dtype=np.int64))
    v = em.reshape(x, (n, groups, cg, hw))
    mean = em.emit("mean", [v], axes=(2, 3), keepdims=True)
    d = em.emit("sub", [v, mean])
    var = em.emit("mean", [em.emit("mul", [d, d])], axes=(2, 3), keepdims=True)
    y = em.emit("mul", [d, em.emit("rsqrt", [em.emit("add", [var, em.const(eps, dt)])])])
    if weight is not None:
        y = em.emit("mul", [y, em.reshape(em.operand(weight, dt), (groups, cg, 1))])
    if bias is not None:
        y = em.emit("add", [y, em.reshape(em.operand(bias, dt), (groups, cg, 1))])
    return em.reshape(y, x.shape)


@converts("aten.group_norm.default")
def _group_norm(em: Emitter, a: Args) -> Value:
    return group_norm(em, _tensor(a, "input"), int(a["num_groups"]), a["weight"], a["bias"], float(a["eps"]))


@converts("aten.native_group_norm.default")
def _native_group_norm(em: Emitter, a: Args) -> tuple[Value, Value, Value]:
    x, groups, eps = _tensor(a, "input"), int(a["group"]), float(a["eps"])
    y = group_norm(em, x, groups, a["weight"], a["bias"], eps)
    n = x.shape[0]
    grouped = em.reshape(x, (n, groups, x.type.numel // max(n * groups, 1)))  # group_norm checked the sizes
    return (y, *_saved_statistics(em, grouped, (2,), eps))


@converts("aten.instance_norm.default")
def _instance_norm(em: Emitter, a: Args) -> Value:
    """Per-sample statistics: group_norm with one group per channel; with tracked running
    statistics in eval mode (use_input_stats=False) it is a batch_norm."""
    x = _tensor(a, "input")
    if a["use_input_stats"]:
        return group_norm(em, x, x.shape[1], a["weight"], a["bias"], float(a["eps"]))
    return _batch_norm(em, x, a["weight"], a["bias"], a["running_mean"], a["running_var"], a["eps"])


# --- variance, norms and logical reductions ---------------------------------------------------


def _axes(x: Value, dim: Any) -> tuple[int, ...]:
    """PyTorch's reduction dims (None or empty: all of them), non-negative."""
    rank = x.type.rank
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        return tuple(range(rank))
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    return tuple(sorted({int(d) % rank for d in dims})) if rank else ()


def _reduced_count(x: Value, axes: tuple[int, ...]) -> int:
    n = int(np.prod([x.shape[d] for d in axes], dtype=np.int64))
    if n == 0:
        raise Unsupported("a reduction over no elements")
    return n


def _variance(em: Emitter, a: Args) -> tuple[Value, Value]:
    """(variance, mean) with PyTorch's ``correction`` (default 1: Bessel's): the mean of squared
    deviations scaled by N / max(N - correction, 0), so that no degrees of freedom left give
    0 / 0 = NaN or x / 0 = inf as eager."""
    x = em.operand(a["self"], em.out.dtype)
    if x.type.rank == 0:
        x = em.reshape(x, (1,))
    axes = _axes(x, a.get("dim"))
    n = int(np.prod([x.shape[d] for d in axes], dtype=np.int64))
    if n == 0:  # the mean of nothing and the variance about it are NaN in eager (0 / 0)
        shape = tuple(1 if d in axes else s for d, s in enumerate(x.shape))
        nan = em.graph.add_const(np.full(shape, np.nan, dtype=x.dtype), hint="nan")
        return nan, nan
    correction = a.get("correction")
    correction = 1.0 if correction is None else float(correction)
    mean = em.emit("mean", [x], axes=axes, keepdims=True)
    var = em.emit("variance", [x, mean], axes=axes, keepdims=True)
    dof = max(n - correction, 0.0)
    if dof != n:
        var = em.emit("mul", [var, em.const(n / dof if dof else np.inf, x.dtype)])
    return var, mean


def _correction(a: Args) -> Args:
    """The legacy overloads' ``unbiased`` as a ``correction`` (True: 1, False: 0)."""
    return {**a, "correction": 1 if a["unbiased"] else 0} if "unbiased" in a else a


@converts("aten.var.correction", "aten.var.dim", "aten.var.default")
def _var(em: Emitter, a: Args) -> Value:
    return em.reshape(_variance(em, _correction(a))[0], em.out.shape)


@converts("aten.var_mean.correction", "aten.var_mean.dim")
def _var_mean(em: Emitter, a: Args) -> tuple[Value, Value]:
    var, mean = _variance(em, _correction(a))
    return em.reshape(var, em.out.shape), em.reshape(mean, em.out.shape)


@converts("aten.linalg_vector_norm.default")
def _vector_norm(em: Emitter, a: Args) -> Value:
    x = em.operand(a["self"], em.out.dtype)
    return vector_norm(em, x, float(a.get("ord", 2)), a.get("dim"), bool(a.get("keepdim", False)))


@converts("aten.dist.default")
def _dist(em: Emitter, a: Args) -> Value:
    """The p-norm of the (broadcast) difference, over all of it."""
    dt = em.out.dtype
    diff = em.emit("sub", [em.operand(a["self"], dt), em.operand(a["other"], dt)])
    return vector_norm(em, diff, float(a.get("p", 2)), None, False)


def vector_norm(em: Emitter, x: Value, order: float, dim: Any, keep: bool) -> Value:
    """PyTorch's vector norms from sums and extrema of |x|: ord 2 sqrt(sum(x * x)), inf / -inf
    the largest / smallest |x|, 0 the count of nonzeros, else sum(|x|^ord)^(1/ord)."""
    if x.type.rank == 0:
        x = em.reshape(x, (1,))
    axes = _axes(x, dim)
    _reduced_count(x, axes)
    dt = x.dtype

    def reduce(op: str, v: Value) -> Value:
        return em.emit(op, [v], axes=axes, keepdims=keep)

    if order == 2:
        y = em.emit("sqrt", [reduce("sum", em.emit("mul", [x, x]))])
    elif order == np.inf:
        y = reduce("max", em.emit("abs", [x]))
    elif order == -np.inf:
        y = reduce("min", em.emit("abs", [x]))
    elif order == 0:
        y = reduce("sum", em.cast(em.emit("ne", [x, em.const(0.0, dt)]), dt))
    elif order == 1:
        y = reduce("sum", em.emit("abs", [x]))
    else:
        powered = em.emit("pow", [em.emit("abs", [x]), em.const(order, dt)])
        y = em.emit("pow", [reduce("sum", powered), em.const(1.0 / order, dt)])
    return em.reshape(y, em.out.shape)


def _any_all(kind: str) -> Converter:
    """any / all: whether some / every element is nonzero (NaN counts as nonzero), the largest /
    smallest of the 0/1 indicators; bool results (uint8 for uint8 inputs, as PyTorch)."""

    def convert(em: Emitter, a: Args) -> Value:
        x = _tensor(a, "self")
        t = em.out
        axes = _axes(x, a.get("dim"))
        n = int(np.prod([x.shape[d] for d in axes], dtype=np.int64))
        if n == 0:  # any() of nothing is False, all() of nothing True
            return em.graph.add_const(np.full(t.shape, kind == "all", dtype=t.dtype), hint="k")
        nonzero = em.cast(em.emit("ne", [x, em.const(0, x.dtype)]), "float32")
        if axes:
            op = "max" if kind == "any" else "min"
            nonzero = em.emit(op, [nonzero], axes=axes, keepdims=bool(a.get("keepdim", False)))
        return em.reshape(em.cast(em.emit("gt", [nonzero, em.const(0.5, "float32")]), t.dtype), t.shape)

    return convert


for _kind in ("any", "all"):
    converts(f"aten.{_kind}.default", f"aten.{_kind}.dim", f"aten.{_kind}.dims")(_any_all(_kind))


def _product(em: Emitter, x: Value, axis: int) -> Value:
    """The product along ``axis`` (kept as extent 1) as a tree of element-wise multiplications
    of its halves, log2(n) levels deep; an odd extent's last element joins at the end."""
    while x.shape[axis] > 1:
        n = x.shape[axis]
        half = n // 2
        y = em.emit("mul", [_cut(em, x, axis, 0, half), _cut(em, x, axis, half, 2 * half)])
        if n % 2:
            last = _cut(em, x, axis, n - 1, n)
            if half == 1:
                y = em.emit("mul", [y, last])
            else:
                y = em.emit("concat", [_cut(em, y, axis, 0, half - 1),
                                       em.emit("mul", [_cut(em, y, axis, half - 1, half), last])], axis=axis)
        x = y
    return x


def _cut(em: Emitter, x: Value, axis: int, start: int, stop: int) -> Value:
    if start == 0 and stop == x.shape[axis]:
        return x
    return em.emit("slice", [x], axes=(axis,), starts=(start,), stops=(stop,))


@converts("aten.prod.default", "aten.prod.dim_int")
def _prod(em: Emitter, a: Args) -> Value:
    """The product of the elements (along ``dim``): multiplications of halves, in the result's
    type (int64 for integer inputs, as PyTorch); the product of nothing is 1."""
    t = em.out
    x = em.operand(a["self"], t.dtype)
    if x.type.rank == 0:
        return em.reshape(x, t.shape)
    if "dim" in a:
        axis = int(a["dim"]) % x.type.rank
    else:
        x, axis = em.reshape(x, (x.type.numel,)), 0
    if x.shape[axis] == 0:
        return em.graph.add_const(np.ones(t.shape, dtype=t.dtype), hint="k")
    return em.reshape(_product(em, x, axis), t.shape)
