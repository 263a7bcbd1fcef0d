"""Reductions and normalizations: mean and sum, softmax, inference BatchNorm, layer, group and
instance normalization (built from sol's ``mean`` and element-wise ops, which the planner fuses
into one loop nest per row or group)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sol.plugin_api import Value
from sol_pytorch.aten.base import Args, Converter, Emitter, Unsupported, _batch_norm, _tensor, converts
from sol_pytorch.aten.training import batch_norm_batch_stats

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
def _native_group_norm(em: Emitter, a: Args) -> tuple[Value, None, None]:
    y = group_norm(em, _tensor(a, "input"), int(a["group"]), a["weight"], a["bias"], float(a["eps"]))
    return y, None, None  # saved mean / rstd: training only


@converts("aten.instance_norm.default")
def _instance_norm(em: Emitter, a: Args) -> Value:
    """Per-sample statistics: group_norm with one group per channel; with tracked running
    statistics in eval mode (use_input_stats=False) it is a batch_norm."""
    x = _tensor(a, "input")
    if a["use_input_stats"]:
        return group_norm(em, x, x.shape[1], a["weight"], a["bias"], float(a["eps"]))
    return _batch_norm(em, x, a["weight"], a["bias"], a["running_mean"], a["running_var"], a["eps"])
