"""Index and selection ops: gather (embedding lookups), comparisons, logical ops, ``where``, and
the selecting reductions max/min/argmax/argmin.

These are what token models need beyond float arithmetic: integer token ids select rows of an
embedding table, boolean masks select between values. Comparisons, logical ops and ``where`` are
element-wise (they fuse into their neighbours' loops like any arithmetic op); ``gather`` copies
whole rows, so its instances are the rows and its outer loops (batch, sequence position) are
shared with the element-wise ops that read it (word + position + token-type embedding sums).

gather's layer class is the design's PARAMETER-MEMORY BOUND (an embedding lookup streams rows
of a large weight table). No library backend claims it, so the planner generates it as a
fused loop nest; its ``core_dims`` (one row per instance) lets the embedding sum and the
LayerNorm after it run in the same nest, one (sequence, position) at a time, instead of
writing the gathered rows out and reading them back.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from sol.errors import IndexOutOfRangeError, SolError
from sol.ir import Node, TensorType, ValueKind
from sol.ops._util import axis, broadcast_shape, same_dtype
from sol.ops.reduce import _axes_normalize, _reduce_core, _reduce_infer
from sol.ops.registry import REQUIRED, CExprFn, LayerClass, OpDef

INDEX_DTYPES = ("int64", "int32", "int8", "uint8")


# --- gather ------------------------------------------------------------------------------------


def _gather_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    ax = axis(int(attrs["axis"]), types[0].rank)
    return {"axis": ax, "wrap": bool(attrs["wrap"]), "padding": _padding_row(attrs["padding"], types[0].shape[ax])}


def _padding_row(padding: Any, size: int) -> int | None:
    """The row whose gradient is zero (PyTorch's ``padding_idx``), counted from 0; None: none.
    Only the gradient rule reads it: the lookup itself returns that row like any other."""
    if padding is None:
        return None
    row = int(padding)
    if not -size <= row < size:
        raise SolError(f"gather: padding row {row} is out of range for an axis of size {size}")
    return row % size


def _gather_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, idx = types
    if idx.dtype not in INDEX_DTYPES:
        raise SolError(f"gather indices must be integers ({', '.join(INDEX_DTYPES)}), got {idx}")
    if x.rank == 0:
        raise SolError("gather from a scalar: x needs at least one axis")
    ax = a["axis"]
    return [TensorType(x.shape[:ax] + idx.shape + x.shape[ax + 1:], x.dtype)]


def _gather_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, idx = xs
    size = x.shape[a["axis"]]
    bad = (idx < (-size if a["wrap"] else 0)) | (idx >= size)
    if np.any(bad):
        raise IndexOutOfRangeError(f"gather: index {int(idx[bad].flat[0])} is out of range for axis {a['axis']} "
                         f"of size {size}")
    return [np.take(x, idx.astype(np.int64), axis=a["axis"])]


def _gather_core(node: Node) -> int:
    """One instance copies one slice ``x[..., i, ...]`` (the dims after ``axis``); the dims
    before it and the index dims are independent loops. A computed ``x`` could sit in a fused
    group's per-iteration scratch, which holds only the current outer slice, while a gather reads
    any row: then the index dims stay inside the instance (the loops before ``axis`` remain)."""
    x = node.inputs[0]
    ax = node.attrs["axis"]
    if x.kind is ValueKind.NODE:
        return node.outputs[0].type.rank - ax if node.outputs else x.type.rank - ax
    return x.type.rank - ax - 1


# --- gather_elements ---------------------------------------------------------------------------
# torch.gather / numpy.take_along_axis / ONNX GatherElements: one element per index, the index
# tensor as the output's shape (BERT's token-type ids, a per-position selection). Unlike gather
# (a row per index), its instance is the whole tensor: the indices address x anywhere.


def _gather_elements_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    return {"axis": axis(int(attrs["axis"]), types[0].rank)}


def _gather_elements_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, idx = types
    if idx.dtype not in INDEX_DTYPES:
        raise SolError(f"gather_elements indices must be integers ({', '.join(INDEX_DTYPES)}), got {idx}")
    if x.rank == 0 or idx.rank != x.rank:
        raise SolError(f"gather_elements needs indices of x's rank (at least 1), got x {x} and indices {idx}")
    ax = a["axis"]
    if any(i > n for d, (i, n) in enumerate(zip(idx.shape, x.shape)) if d != ax):
        raise SolError(f"gather_elements: indices {idx.shape} exceed x {x.shape} in a dimension other than axis {ax}")
    return [TensorType(idx.shape, x.dtype)]


def _gather_elements_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, idx = xs
    ax = a["axis"]
    size = x.shape[ax]
    bad = (idx < 0) | (idx >= size)
    if np.any(bad):
        raise IndexOutOfRangeError(f"gather_elements: index {int(idx[bad].flat[0])} is out of range for axis {ax} "
                         f"of size {size}")
    part = x[tuple(slice(None) if d == ax else slice(0, n) for d, n in enumerate(idx.shape))]
    return [np.take_along_axis(part, idx.astype(np.int64), axis=ax)]


# --- scatter ------------------------------------------------------------------------------------
# torch's index_put / index_copy along one axis (a static KV cache's update at the run-time
# position): x with the slices at the given positions replaced. Like gather_elements, one instance
# is the whole tensor: the positions are known only at run time.


def _scatter_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    return {"axis": axis(int(attrs["axis"]), types[0].rank)}


def _scatter_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, idx, upd = types
    if idx.dtype not in INDEX_DTYPES or idx.rank != 1:
        raise SolError(f"scatter positions must be a 1-D integer tensor ({', '.join(INDEX_DTYPES)}), got {idx}")
    if x.rank == 0:
        raise SolError("scatter into a scalar: x needs at least one axis")
    ax = a["axis"]
    want = x.shape[:ax] + idx.shape + x.shape[ax + 1:]
    if upd.shape != want or upd.dtype != x.dtype:
        raise SolError(f"scatter: the new slices must be {TensorType(want, x.dtype)} (x {x}, positions {idx}), "
                       f"got {upd}")
    return [x]


def _scatter_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, idx, upd = xs
    ax = a["axis"]
    size = x.shape[ax]
    out = np.array(x, copy=True)
    for j, given in enumerate(idx.astype(np.int64)):
        if not -size <= given < size:
            raise IndexOutOfRangeError(f"scatter: index {int(given)} is out of range for axis {ax} of size {size}")
        # one position at a time, in order: a repeated position keeps its last slice (PyTorch's CPU rule)
        out[(slice(None),) * ax + (int(given) % size,)] = upd[(slice(None),) * ax + (j,)]
    return [out]


# --- scatter_elements -----------------------------------------------------------------------------
# torch.scatter / scatter_add / scatter_reduce (and, with the index spread over the slices,
# index_add / index_reduce / index_put(accumulate=True) / put): one update per index element,
# combined into x at the index's position along ``axis``. The sibling of gather_elements (its
# gradient); like it, one instance is the whole tensor.

SCATTER_REDUCTIONS = ("none", "sum", "prod", "amax", "amin")


def _scatter_elements_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    reduction = str(attrs["reduction"])
    if reduction not in SCATTER_REDUCTIONS:
        raise SolError(f"scatter_elements reduction must be one of {', '.join(SCATTER_REDUCTIONS)}, got {reduction!r}")
    return {"axis": axis(int(attrs["axis"]), types[0].rank), "reduction": reduction,
            "include_self": bool(attrs["include_self"])}


def _scatter_elements_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, idx, upd = types
    if idx.dtype not in INDEX_DTYPES:
        raise SolError(f"scatter_elements indices must be integers ({', '.join(INDEX_DTYPES)}), got {idx}")
    if x.rank == 0 or idx.rank != x.rank or upd.rank != x.rank:
        raise SolError(f"scatter_elements needs indices and updates of x's rank (at least 1), got x {x}, "
                       f"indices {idx}, updates {upd}")
    ax = a["axis"]
    if any(i > n for d, (i, n) in enumerate(zip(idx.shape, x.shape)) if d != ax) or any(
            i > u for i, u in zip(idx.shape, upd.shape)):
        raise SolError(f"scatter_elements: indices {idx.shape} exceed x {x.shape} in a dimension other than axis {ax}, "
                       f"or the updates {upd.shape}")
    if upd.dtype != x.dtype:
        raise SolError(f"scatter_elements: updates {upd} must have x's dtype {x.dtype}")
    return [x]


def _scatter_identity(reduction: str, dtype: np.dtype) -> Any:
    """Where include_self is False, the positions the index names start from the reduction's
    identity (PyTorch's rule: -inf/+inf for floating amax/amin, the type's limits for integers)."""
    if reduction in ("sum", "none"):
        return 0
    if reduction == "prod":
        return 1
    if np.issubdtype(dtype, np.floating):
        return -np.inf if reduction == "amax" else np.inf
    info = np.iinfo(dtype) if np.issubdtype(dtype, np.integer) else None
    if info is None:  # bool: False is the lowest, True the highest
        return reduction == "amin"
    return info.min if reduction == "amax" else info.max


def _scatter_elements_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, idx, upd = xs
    ax, reduction = a["axis"], a["reduction"]
    size = x.shape[ax]
    idx = idx.astype(np.int64)
    bad = (idx < 0) | (idx >= size)
    if np.any(bad):
        raise IndexOutOfRangeError(f"scatter_elements: index {int(idx[bad].flat[0])} is out of range for axis {ax} "
                         f"of size {size}")
    out = np.array(x, copy=True)
    flat_out = out.reshape(-1)
    grids = list(np.indices(idx.shape))
    grids[ax] = idx
    # the index's elements in row-major order: along the axis, later ones come later (PyTorch's CPU order)
    target = np.ravel_multi_index(tuple(grids), x.shape).reshape(-1)
    values = upd[tuple(slice(0, n) for n in idx.shape)].reshape(-1)
    if reduction == "none":  # a repeated position keeps its last update
        _, last_reversed = np.unique(target[::-1], return_index=True)
        keep = target.size - 1 - last_reversed
        flat_out[target[keep]] = values[keep]
        return [out]
    if not a["include_self"]:
        flat_out[target] = _scatter_identity(reduction, out.dtype)
    if reduction in ("sum", "prod"):
        (np.add if reduction == "sum" else np.multiply).at(flat_out, target, values)  # unbuffered, in order
        return [out]
    # amax / amin one update at a time, PyTorch's rule: a NaN update wins, else the update only if
    # strictly greater (smaller), so that of equal values (0.0 and -0.0) the one there stays
    for t, v in zip(target.tolist(), values.tolist()):
        old = flat_out[t]
        if v != v or (old < v if reduction == "amax" else v < old):
            flat_out[t] = v
    return [out]


# --- comparisons, logical ops, where --------------------------------------------------------


def _compare_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    same_dtype(types)
    return [TensorType(broadcast_shape(*(t.shape for t in types)), "bool")]


def _compare(name: str, fn: Callable[[np.ndarray, np.ndarray], np.ndarray], c_expr: CExprFn) -> OpDef:
    from sol.autodiff.rules import no_gradient  # boolean results

    # Compared in the operands' own dtype (no float64 round trip: int64 ids compare exactly).
    return OpDef(name, LayerClass.ELEMENTWISE, _compare_infer,
                 lambda xs, a: [np.asarray(fn(xs[0], xs[1]), dtype=bool)], (2, 2),
                 doc=f"a {name} b -> bool, broadcasting; operands of one dtype", gradient=no_gradient, c_expr=c_expr)


def _logical_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    return [TensorType(broadcast_shape(*(t.shape for t in types)), "bool")]


def _logical(name: str, fn: Callable[..., np.ndarray], arity: int, c_expr: CExprFn) -> OpDef:
    from sol.autodiff.rules import no_gradient  # boolean results

    return OpDef(name, LayerClass.ELEMENTWISE, _logical_infer,
                 lambda xs, a: [np.asarray(fn(*(x.astype(bool) for x in xs)), dtype=bool)], (arity, arity),
                 doc="operands of any dtype read as truth values (nonzero is true) -> bool", gradient=no_gradient,
                 c_expr=c_expr)


def _where_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    cond, x, y = types
    if cond.dtype != "bool":
        raise SolError(f"where: the condition must be bool, got {cond}")
    return [TensorType(broadcast_shape(cond.shape, x.shape, y.shape), same_dtype([x, y]))]


# --- selecting reductions ------------------------------------------------------------------------


def _select_reduce(fn: Callable[..., np.ndarray]) -> Callable[[list[np.ndarray], dict[str, Any]], list[np.ndarray]]:
    def ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
        return [np.asarray(fn(xs[0], axis=a["axes"], keepdims=a["keepdims"])).astype(xs[0].dtype)]

    return ref


def _select_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = types[0]
    if any(x.shape[ax] == 0 for ax in a["axes"]):
        raise SolError(f"max/min over an empty axis of {x}: there is no first element")
    return _reduce_infer(types, a)


_TIES = ("ties (gradient only): 'split' shares the gradient evenly among the elements equal to the result "
         "(PyTorch's amax, TensorFlow's reduce_max); 'first' gives it to the first of them, the one argmax/argmin "
         "names (PyTorch's max(x, dim)); one axis only")


def _ties_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    out = _axes_normalize(attrs, types)
    ties = attrs["ties"]
    if ties not in ("split", "first"):
        raise SolError(f"max/min ties must be 'split' or 'first', got {ties!r}")
    if ties == "first" and len(out["axes"]) != 1:
        raise SolError(f"max/min with ties='first' reduce one axis, got axes {out['axes']}")
    return {**out, "ties": ties}


def _arg_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    return {"axis": axis(int(attrs["axis"]), types[0].rank), "keepdims": bool(attrs["keepdims"])}


def _arg_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = types[0]
    if x.rank == 0 or x.shape[a["axis"]] == 0:
        raise SolError(f"argmax/argmin over an empty axis of {x}")
    ax = a["axis"]
    shape = x.shape[:ax] + ((1,) if a["keepdims"] else ()) + x.shape[ax + 1:]
    return [TensorType(shape, "int64")]


def _arg_ref(fn: Callable[..., np.ndarray]) -> Callable[[list[np.ndarray], dict[str, Any]], list[np.ndarray]]:
    def ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
        # NumPy, like PyTorch, returns the first index among ties and the first NaN if any.
        return [np.asarray(fn(xs[0], axis=a["axis"], keepdims=a["keepdims"])).astype(np.int64)]

    return ref


def _arg_core(node: Node) -> int:
    """Output dims from the reduced axis on (with keepdims, that axis itself counts)."""
    rank_out = node.outputs[0].type.rank if node.outputs else node.inputs[0].type.rank
    return max(rank_out - node.attrs["axis"], 0)


def ops() -> list[OpDef]:
    # Gradient rules, C lowerings and FLOP counts are imported here, when the registry is
    # filled, not at import time (sol.ops.registry explains why).
    from sol import workload
    from sol.autodiff.rules import index as grad
    from sol.autodiff.rules import no_gradient
    from sol.lowering import elementwise as c
    from sol.lowering import index as lower

    out = [
        OpDef("gather", LayerClass.PARAM_BOUND, _gather_infer, _gather_ref, (2, 2),
              {"axis": 0, "wrap": True, "padding": None},
              normalize=_gather_normalize, core_dims=_gather_core,
              doc="numpy.take(x, indices, axis): embedding lookup; indices in [-n, n) (wrap=True: negative "
                  "ones count from the end) or [0, n) (wrap=False: PyTorch's and TensorFlow's rule); others "
                  "are an error. padding: a row of x whose gradient is zero (PyTorch's padding_idx); "
                  "the lookup is unaffected", gradient=grad.gather, c_loops=lower.lower),
        OpDef("gather_elements", LayerClass.IO_BOUND, _gather_elements_infer, _gather_elements_ref, (2, 2),
              {"axis": REQUIRED}, normalize=_gather_elements_normalize,
              doc="torch.gather(x, axis, indices) / numpy.take_along_axis: out[..., i, ...] = x[..., indices[..., i, "
                  "...], ...] with indices of x's rank, as large as x or smaller in every dim but axis; out has the "
                  "indices' shape. Valid indices [0, n); any other is an IndexOutOfRangeError at run time (never read)",
              gradient=grad.gather_elements, c_loops=lower.lower_gather_elements),
        OpDef("scatter", LayerClass.IO_BOUND, _scatter_infer, _scatter_ref, (3, 3), {"axis": REQUIRED},
              normalize=_scatter_normalize,
              doc="torch index_put / index_copy along one axis: x with x[..., positions[j], ...] = updates[..., j, "
                  "...]; positions 1-D in [-n, n) (negative ones count from the end), any other is an "
                  "IndexOutOfRangeError at run time (nothing written there); a repeated position keeps its last "
                  "slice", gradient=grad.scatter, c_loops=lower.lower_scatter),
        OpDef("scatter_elements", LayerClass.IO_BOUND, _scatter_elements_infer, _scatter_elements_ref, (3, 3),
              {"axis": REQUIRED, "reduction": "none", "include_self": True},
              normalize=_scatter_elements_normalize,
              doc="torch.scatter / scatter_add / scatter_reduce along axis: for every element of indices (x's rank), "
                  "updates at the same position combined into x[..., indices[...], ...] (reduction none: replaced, the "
                  "last of repeated positions kept; sum, prod, amax, amin (NaN wins): in row-major order, in x's "
                  "dtype). include_self=False: the positions named start from the reduction's identity. Valid "
                  "indices [0, n); others an IndexOutOfRangeError at run time (nothing written)",
              gradient=grad.scatter_elements, c_loops=lower.lower_scatter_elements),
        _compare("eq", np.equal, c.eq), _compare("ne", np.not_equal, c.ne), _compare("lt", np.less, c.lt),
        _compare("le", np.less_equal, c.le), _compare("gt", np.greater, c.gt),
        _compare("ge", np.greater_equal, c.ge),
        _logical("logical_not", np.logical_not, 1, c.logical_not),
        _logical("logical_and", np.logical_and, 2, c.logical_and),
        _logical("logical_or", np.logical_or, 2, c.logical_or),
        OpDef("where", LayerClass.ELEMENTWISE, _where_infer,
              lambda xs, a: [np.where(xs[0], xs[1], xs[2]).astype(xs[1].dtype)], (3, 3),
              doc="cond ? a : b, broadcasting all three; masked_fill lowers to it", gradient=grad.where,
              c_expr=c.where),
        OpDef("max", LayerClass.IO_BOUND, _select_infer, _select_reduce(np.max), (1, 1),
              {"axes": REQUIRED, "keepdims": False, "ties": "split"}, normalize=_ties_normalize,
              core_dims=_reduce_core, doc=_TIES, gradient_attrs=("ties",), gradient=grad.max_or_min,
              flops=workload.per_input, c_loops=lower.lower),
        OpDef("min", LayerClass.IO_BOUND, _select_infer, _select_reduce(np.min), (1, 1),
              {"axes": REQUIRED, "keepdims": False, "ties": "split"}, normalize=_ties_normalize,
              core_dims=_reduce_core, doc=_TIES, gradient_attrs=("ties",), gradient=grad.max_or_min,
              flops=workload.per_input, c_loops=lower.lower),
        # Integer results: no gradient.
        OpDef("argmax", LayerClass.IO_BOUND, _arg_infer, _arg_ref(np.argmax), (1, 1),
              {"axis": REQUIRED, "keepdims": False}, normalize=_arg_normalize, core_dims=_arg_core,
              gradient=no_gradient, flops=workload.per_input, c_loops=lower.lower),
        OpDef("argmin", LayerClass.IO_BOUND, _arg_infer, _arg_ref(np.argmin), (1, 1),
              {"axis": REQUIRED, "keepdims": False}, normalize=_arg_normalize, core_dims=_arg_core,
              gradient=no_gradient, flops=workload.per_input, c_loops=lower.lower),
    ]
    # Selections, comparisons and lookups make no NaN or infinity of their own (sol.passes.finite).
    for o in out:
        o.preserves_finite = True
    return out
