"""Sorting, searching and scans along one axis: ``argsort``, ``searchsorted`` and ``scan``.

Three ops from which the frontends compose the whole family exactly (no op of its own for each):

* ``argsort`` (stable; NaN sorts as the largest value, as in PyTorch and NumPy): sort's values are
  ``gather_elements(x, argsort(x))``; topk, kthvalue, median, nanmedian, quantile and mode read
  positions of the sorted order.
* ``searchsorted``: PyTorch's binary search, comparison for comparison (so NaN, which fails every
  comparison, and unsorted rows give eager's positions too); bucketize and isin compose on it.
* ``scan``: the running product, log-sum-exp and the index of the running maximum / minimum
  (``cumsum`` is its own op, older); cummax/cummin's values are ``gather_elements`` of x at the
  indices, so their gradient is gather's.

Sort and scan are I/O bound with ``core_dims`` = rank - axis: one instance is a block of columns
along the axis, the dims before the axis independent loops. searchsorted's instance is the whole
tensor (a row of values may search a boundary row shared by all of them).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sol.errors import SolError
from sol.ir import Node, TensorType
from sol.ops._util import axis
from sol.ops.registry import REQUIRED, LayerClass, OpDef

SCAN_KINDS = ("prod", "logsumexp", "argmax", "argmin")
"""``scan``'s running operations: the first two keep x's dtype, the arg ones give int64."""


def _along_last(x: np.ndarray, ax: int) -> np.ndarray:
    """``x`` with ``ax`` moved last and the other dims flattened: (rows, L)."""
    moved = np.moveaxis(x, ax, -1)
    return moved.reshape(int(np.prod(moved.shape[:-1], dtype=np.int64)), moved.shape[-1])


def _from_last(rows: np.ndarray, shape: tuple[int, ...], ax: int) -> np.ndarray:
    """Inverse of :func:`_along_last` for a result shaped like x."""
    moved = tuple(d for i, d in enumerate(shape) if i != ax) + (shape[ax],)
    return np.moveaxis(rows.reshape(moved), -1, ax)


# --- argsort ------------------------------------------------------------------------------------


def _argsort_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    if types[0].rank == 0:
        raise SolError("argsort of a scalar: reshape it to one element first")
    return {"axis": axis(int(attrs["axis"]), types[0].rank), "descending": bool(attrs["descending"])}


def _argsort_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    return [TensorType(types[0].shape, "int64")]


def _sort_keys(row: np.ndarray, descending: bool) -> list[np.ndarray]:
    """Keys for ``np.lexsort`` (last key first): NaN after every number, then the value, then the
    position (a stable order). Descending reverses the value order but keeps the positions of
    equal values ascending (PyTorch's stable descending sort); NaN first."""
    pos = np.arange(row.shape[-1])
    if row.dtype.kind == "f":
        nan = np.isnan(row)
        val = np.where(nan, 0, row)
        return [pos, -val, ~nan] if descending else [pos, val, nan]
    val = row.astype(np.int64)
    return [pos, ~val] if descending else [pos, val]  # ~ reverses the order of integers, no overflow


def _argsort_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, ax = xs[0], a["axis"]
    rows = _along_last(x, ax)
    out = np.stack([np.lexsort(_sort_keys(r, a["descending"])) for r in rows]) if rows.size else rows
    return [_from_last(out.astype(np.int64), x.shape, ax)]


def _scan_core(node: Node) -> int:
    """The dims from axis on are one instance (columns along the axis, the dims after it side by
    side); the dims before it are independent loops."""
    return node.inputs[0].type.rank - node.attrs["axis"]


# --- searchsorted ---------------------------------------------------------------------------------


def _searchsorted_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    return {"right": bool(attrs["right"])}


def _searchsorted_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    seq, values = types
    if seq.dtype != values.dtype or seq.dtype == "bool":
        raise SolError(f"searchsorted: the boundaries and the values must have one numeric dtype, got {seq} and "
                       f"{values}")
    if seq.rank == 0:
        raise SolError("searchsorted: the boundaries need at least one axis")
    if seq.rank > 1 and (values.rank != seq.rank or values.shape[:-1] != seq.shape[:-1]):
        raise SolError(f"searchsorted: boundaries {seq.shape} of rank > 1 need values with the same leading dims, "
                       f"got {values.shape}")
    return [TensorType(values.shape, "int64")]


def _searchsorted_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    """PyTorch's binary search (``cus_lower_bound``/``cus_upper_bound``) for all values at once:
    lo moves past mid where ``!(seq[mid] >= v)`` (``!(seq[mid] > v)`` for right), so a NaN value
    lands after every boundary and an unsorted row gives what eager's search gives."""
    seq, values = xs
    n = seq.shape[-1]
    rows = seq.reshape(1, n) if seq.ndim == 1 else seq.reshape(-1, n)
    vals = values.reshape(rows.shape[0] if seq.ndim > 1 else 1, -1)
    lo = np.zeros(vals.shape, dtype=np.int64)
    hi = np.full(vals.shape, n, dtype=np.int64)
    which = np.arange(vals.shape[0])[:, None] if seq.ndim > 1 else np.zeros((1, 1), dtype=np.int64)
    with np.errstate(invalid="ignore"):
        while np.any(lo < hi):
            active = lo < hi
            mid = lo + ((hi - lo) >> 1)
            at = rows[np.broadcast_to(which, mid.shape), np.minimum(mid, n - 1)] if n else np.zeros(mid.shape)
            move = ~(at > vals) if a["right"] else ~(at >= vals)
            lo = np.where(active & move, mid + 1, lo)
            hi = np.where(active & ~move, mid, hi)
    return [lo.reshape(values.shape)]


# --- scan -----------------------------------------------------------------------------------------


def _scan_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    kind = attrs["kind"]
    if kind not in SCAN_KINDS:
        raise SolError(f"scan kind must be one of {SCAN_KINDS}, got {kind!r}")
    if types[0].rank == 0:
        raise SolError("scan of a scalar: reshape it to one element first")
    return {"axis": axis(int(attrs["axis"]), types[0].rank), "kind": kind}


def _scan_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = types[0]
    if x.dtype == "bool":
        raise SolError(f"scan of a bool tensor: cast it to a number type first, got {x}")
    if a["kind"] == "logsumexp" and not x.dtype.startswith("float"):
        raise SolError(f"scan logsumexp needs a floating-point tensor, got {x}")
    return [TensorType(x.shape, "int64") if a["kind"].startswith("arg") else x]


def _log_add_exp(v: np.ndarray, acc: np.ndarray) -> np.ndarray:
    """PyTorch's ``_log_add_exp_helper(v, acc)``: NaN propagates; two equal infinities give v."""
    with np.errstate(invalid="ignore", over="ignore"):
        lo = np.where(np.isnan(acc), acc, np.where(acc < v, acc, v))
        hi = np.where(np.isnan(acc), acc, np.where(v < acc, acc, v))
        general = np.log1p(np.exp(lo - hi)) + hi
    return np.where((lo != hi) | np.isfinite(lo), general, v)


def _scan_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, ax, kind = xs[0], a["axis"], a["kind"]
    rows = _along_last(x, ax)
    if kind == "prod":  # floats accumulate in float64 (PyTorch's CPU rule), integers in their type
        acc_t = np.float64 if x.dtype.kind == "f" else x.dtype
        return [_from_last(np.cumprod(rows, axis=-1, dtype=acc_t).astype(x.dtype), x.shape, ax)]
    out = np.empty(rows.shape, dtype=np.float64 if kind == "logsumexp" else np.int64)
    if kind == "logsumexp":
        acc = np.full(rows.shape[0], -np.inf)
        for i in range(rows.shape[1]):
            acc = _log_add_exp(rows[:, i].astype(np.float64), acc)
            out[:, i] = acc
        return [_from_last(out.astype(x.dtype), x.shape, ax)]
    # PyTorch's cummax/cummin: a NaN or a value >= (<=) the running one takes over (so ties name
    # the latest position), nothing replaces a NaN but a later NaN.
    best = rows[:, 0].copy() if rows.shape[1] else rows[:, :0]
    idx = np.zeros(rows.shape[0], dtype=np.int64)
    with np.errstate(invalid="ignore"):
        for i in range(rows.shape[1]):
            cur = rows[:, i]
            better = cur >= best if kind == "argmax" else cur <= best
            take = _isnan(cur) | (~_isnan(best) & better)
            best = np.where(take, cur, best)
            idx = np.where(take, i, idx)
            out[:, i] = idx
    return [_from_last(out, x.shape, ax)]


def _isnan(a: np.ndarray) -> np.ndarray:
    return np.isnan(a) if a.dtype.kind == "f" else np.zeros(a.shape, dtype=bool)


def ops() -> list[OpDef]:
    # Gradient rules and C lowerings are imported here, when the registry is filled (see
    # sol.ops.registry).
    from sol.autodiff.rules import no_gradient
    from sol.autodiff.rules import sort as grad
    from sol.lowering import sort as lower

    return [
        OpDef("argsort", LayerClass.IO_BOUND, _argsort_infer, _argsort_ref, (1, 1),
              {"axis": REQUIRED, "descending": False}, normalize=_argsort_normalize, core_dims=_scan_core,
              doc="the positions that sort x along axis (int64), stable: equal values keep their order, also when "
                  "descending; NaN sorts as the largest value (last ascending, first descending), -0.0 equals 0.0",
              gradient=no_gradient, c_loops=lower.lower_argsort),
        OpDef("searchsorted", LayerClass.IO_BOUND, _searchsorted_infer, _searchsorted_ref, (2, 2),
              {"right": False}, normalize=_searchsorted_normalize,
              doc="torch.searchsorted(boundaries, values, right): per value the first position whose boundary is "
                  ">= it (> with right), by PyTorch's binary search over the last axis; boundaries 1-D (shared) or "
                  "with the values' leading dims; -> int64",
              gradient=no_gradient, c_loops=lower.lower_searchsorted),
        OpDef("scan", LayerClass.IO_BOUND, _scan_infer, _scan_ref, (1, 1), {"axis": REQUIRED, "kind": REQUIRED},
              normalize=_scan_normalize, core_dims=_scan_core,
              doc="an inclusive running operation along axis: prod (torch.cumprod; floats accumulate in float64), "
                  "logsumexp (torch.logcumsumexp, float64 accumulator, PyTorch's infinity rules), argmax/argmin "
                  "(torch.cummax/cummin's indices: a value >= (<=) the running one or a NaN takes over) -> int64",
              gradient=grad.scan, c_loops=lower.lower_scan),
    ]
