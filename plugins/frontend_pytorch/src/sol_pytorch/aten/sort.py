"""Sorting, selection, searching and scans: sort/argsort/msort, topk, kthvalue, median, nanmedian,
mode, searchsorted/bucketize, cummax/cummin, cumprod, logcumsumexp, histc.

All of them compose core's three ops of the family (``sol.ops.sort``): ``argsort`` (stable, NaN
largest), ``searchsorted`` (PyTorch's binary search) and ``scan``; values are ``gather_elements`` of
the input at the positions, so they are exact copies and their gradient is gather's.

Where PyTorch leaves an order unspecified (equal values under ``sort(stable=False)``, ``topk``,
``kthvalue``, ``median``, ``mode``), sol gives the stable order: the first of equal values in
the input comes first. Values always equal eager's; the indices of ties may name another of the
equal elements than eager's selection algorithm does (PyTorch documents them as unspecified).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sol.plugin_api import Value
from sol_pytorch.aten.base import Args, Emitter, Unsupported, _slice, _tensor, converts, dtype_name

# --- helpers ---------------------------------------------------------------------------------------


def _empty(em: Emitter, k: int = 0) -> Any:
    """The node's result ``k`` as a constant, for inputs without elements (nothing to compute)."""
    val = em.val[k] if isinstance(em.val, (tuple, list)) else em.val
    shape = tuple(int(d) for d in val.shape)
    return em.graph.add_const(np.zeros(shape, dtype=dtype_name(val.dtype)), hint="empty")


def _no_elements(em: Emitter) -> bool:
    vals = em.val if isinstance(em.val, (tuple, list)) else [em.val]
    return any(int(np.prod(tuple(v.shape), dtype=np.int64)) == 0 for v in vals if isinstance(v, torch.Tensor))


def _dim(x: Value, dim: Any) -> int:
    rank = max(x.type.rank, 1)
    d = int(dim)
    if not -rank <= d < rank:
        raise Unsupported(f"dim {d} is out of range for a rank-{x.type.rank} tensor")
    return d % rank


def _argsort(em: Emitter, x: Value, dim: int, descending: bool) -> Value:
    return em.emit("argsort", [x], axis=dim, descending=descending)


def _take(em: Emitter, x: Value, idx: Value, dim: int) -> Value:
    """x's elements at the positions ``idx`` along ``dim`` (exact copies; gather's gradient)."""
    return em.emit("gather_elements", [x, idx], axis=dim)


def _scalar_pair(em: Emitter, x: Value) -> tuple[Value, Value]:
    """(x, 0): the values and index of a sort, selection or scan over a 0-d tensor."""
    return x, em.const(0, "int64")


def _out_shape(em: Emitter, k: int) -> tuple[int, ...]:
    return tuple(int(d) for d in em.val[k].shape)


# --- sort ----------------------------------------------------------------------------------------


def _sort(em: Emitter, a: Args) -> tuple[Value, Value]:
    """Stable for every ``stable`` flag: for unequal values, eager's order; equal ones keep their
    input order (PyTorch's stable sort; its unstable sort leaves them unspecified)."""
    x = _tensor(a, "self")
    if _no_elements(em):
        return _empty(em, 0), _empty(em, 1)
    if x.type.rank == 0:
        return _scalar_pair(em, x)
    dim = _dim(x, a.get("dim", -1))
    idx = _argsort(em, x, dim, bool(a.get("descending", False)))
    return _take(em, x, idx, dim), idx


converts("aten.sort.default", "aten.sort.stable")(_sort)


@converts("aten.argsort.default", "aten.argsort.stable")
def _argsort_converter(em: Emitter, a: Args) -> Value:
    return _sort(em, a)[1]


@converts("aten.msort.default")
def _msort(em: Emitter, a: Args) -> Value:
    return _sort(em, {"self": a["self"], "dim": 0})[0]


# --- selection: topk, kthvalue, median, nanmedian, mode ------------------------------------------------


@converts("aten.topk.default")
def _topk(em: Emitter, a: Args) -> tuple[Value, Value]:
    """The first k of a stable sort (descending for ``largest``): NaN counts as the largest."""
    x, k = _tensor(a, "self"), int(a["k"])
    if not bool(a.get("sorted", True)) and k > 1:
        raise Unsupported("topk with sorted=False: eager returns the k elements in its selection algorithm's "
                          "order, sol only in sorted order")
    if _no_elements(em):
        return _empty(em, 0), _empty(em, 1)
    if x.type.rank == 0:
        return _scalar_pair(em, x)
    dim = _dim(x, a.get("dim", -1))
    idx = _slice(em, _argsort(em, x, dim, bool(a.get("largest", True))), dim, 0, k)
    return _take(em, x, idx, dim), idx


def _pick(em: Emitter, x: Value, order: Value, position: Value, dim: int, keepdim: bool) -> tuple[Value, Value]:
    """The element at ``position`` (int64, kept dim of extent 1) of each row's sorted ``order``:
    (value, its index in x), the reduced dim dropped unless ``keepdim``."""
    idx = _take(em, order, position, dim)
    values = _take(em, x, idx, dim)
    if not keepdim:
        values, idx = em.reshape(values, _out_shape(em, 0)), em.reshape(idx, _out_shape(em, 1))
    return values, idx


def _row_position(em: Emitter, x: Value, dim: int, position: int) -> Value:
    shape = tuple(1 if d == dim else n for d, n in enumerate(x.shape))
    return em.emit("broadcast_to", [em.const(position, "int64")], shape=shape)


@converts("aten.kthvalue.default")
def _kthvalue(em: Emitter, a: Args) -> tuple[Value, Value]:
    x, k = _tensor(a, "self"), int(a["k"])
    if _no_elements(em):
        return _empty(em, 0), _empty(em, 1)
    if x.type.rank == 0:
        return _scalar_pair(em, x)
    dim = _dim(x, a.get("dim", -1))
    if not 1 <= k <= x.shape[dim]:
        raise Unsupported(f"kthvalue: k = {k} is out of range for a dim of size {x.shape[dim]}")
    order = _argsort(em, x, dim, False)
    return _pick(em, x, order, _row_position(em, x, dim, k - 1), dim, bool(a.get("keepdim", False)))


def _count_numbers(em: Emitter, x: Value, dim: int) -> Value:
    """How many elements of each row are not NaN (float64, the dim kept)."""
    numbers = em.cast(em.emit("logical_not", [em.emit("isnan", [x])]), "float64")
    return em.emit("sum", [numbers], axes=(dim,), keepdims=True)


def _median_position(em: Emitter, x: Value, dim: int, skip_nan: bool) -> Value:
    """The position in the stable ascending order of the lower median: (n - 1) // 2 of the n
    numbers. median (``skip_nan`` False) gives NaN for a row holding one, the first NaN (the
    position after the numbers, as eager); nanmedian the median of the numbers (position 0, a NaN,
    for a row of NaN only)."""
    n = x.shape[dim]
    if not x.dtype.startswith("float"):
        return _row_position(em, x, dim, (n - 1) // 2)
    count = _count_numbers(em, x, dim)
    if skip_nan:
        half = em.emit("mul", [em.emit("sub", [count, em.const(1.0, "float64")]), em.const(0.5, "float64")])
        lower = em.emit("maximum", [em.emit("floor", [half]), em.const(0.0, "float64")])
        return em.cast(lower, "int64")
    has_nan = em.emit("lt", [count, em.const(float(n), "float64")])
    pos = em.emit("where", [has_nan, count, em.const(float((n - 1) // 2), "float64")])
    return em.cast(pos, "int64")


def _median(skip_nan: bool) -> Any:
    def dim_form(em: Emitter, a: Args) -> tuple[Value, Value]:
        x = _tensor(a, "self")
        if _no_elements(em):
            return _empty(em, 0), _empty(em, 1)
        if x.type.rank == 0:
            return _scalar_pair(em, x)
        dim = _dim(x, a["dim"])
        order = _argsort(em, x, dim, False)
        return _pick(em, x, order, _median_position(em, x, dim, skip_nan), dim, bool(a.get("keepdim", False)))

    def whole(em: Emitter, a: Args) -> Value:
        """Over all elements: the median of the flattened tensor (a 0-d value, no index)."""
        x = _tensor(a, "self")
        if x.type.numel == 0:
            raise Unsupported("median of an empty tensor (eager gives NaN)")
        flat = em.reshape(x, (x.type.numel,))
        order = _argsort(em, flat, 0, False)
        idx = _take(em, order, _median_position(em, flat, 0, skip_nan), 0)
        return em.reshape(_take(em, flat, idx, 0), ())

    return dim_form, whole


_median_dim, _median_all = _median(False)
converts("aten.median.dim")(_median_dim)
converts("aten.median.default")(_median_all)
_nanmedian_dim, _nanmedian_all = _median(True)
converts("aten.nanmedian.dim")(_nanmedian_dim)
converts("aten.nanmedian.default")(_nanmedian_all)


# --- searching: searchsorted, bucketize ------------------------------------------------------------


def _search(em: Emitter, seq: Value, values: Any, right: bool, out_int32: bool, sorter: Any = None) -> Value:
    if not isinstance(values, Value):  # the Scalar overloads: a 0-d value of the boundaries' dtype
        values = em.const(values, seq.dtype)
    common = dtype_name(torch.promote_types(getattr(torch, seq.dtype), getattr(torch, values.dtype)))
    seq, values = em.cast(seq, common), em.cast(values, common)
    if sorter is not None:
        seq = _take(em, seq, em.cast(sorter, "int64"), seq.type.rank - 1)
    if seq.type.numel == 0 or values.type.numel == 0:
        return _empty(em)
    pos = em.emit("searchsorted", [seq, values], right=right)
    return em.cast(pos, "int32" if out_int32 else "int64")


@converts("aten.searchsorted.Tensor", "aten.searchsorted.Scalar")
def _searchsorted(em: Emitter, a: Args) -> Value:
    side = a.get("side")
    right = bool(a.get("right", False)) or side == "right"
    return _search(em, _tensor(a, "sorted_sequence"), a["self"], right, bool(a.get("out_int32", False)),
                   a.get("sorter"))


@converts("aten.bucketize.Tensor", "aten.bucketize.Scalar")
def _bucketize(em: Emitter, a: Args) -> Value:
    """bucketize(x, boundaries, right) is searchsorted(boundaries, x, right) (1-D boundaries)."""
    return _search(em, _tensor(a, "boundaries"), a["self"], bool(a.get("right", False)),
                   bool(a.get("out_int32", False)))


# --- scans: cummax, cummin, cumprod, logcumsumexp ---------------------------------------------------


def _cum_select(kind: str) -> Any:
    def convert(em: Emitter, a: Args) -> tuple[Value, Value]:
        """The running maximum's (minimum's) position, PyTorch's rule (ties and NaN: the latest),
        and the values read there."""
        x = _tensor(a, "self")
        if _no_elements(em):
            return _empty(em, 0), _empty(em, 1)
        if x.type.rank == 0:
            return _scalar_pair(em, x)
        dim = _dim(x, a["dim"])
        idx = em.emit("scan", [x], axis=dim, kind=kind)
        return _take(em, x, idx, dim), idx

    return convert


converts("aten.cummax.default")(_cum_select("argmax"))
converts("aten.cummin.default")(_cum_select("argmin"))


def _running(kind: str) -> Any:
    def convert(em: Emitter, a: Args) -> Value:
        x = em.operand(a["self"], em.out.dtype)  # cumprod's dtype= (int64 for integers) first
        if _no_elements(em):
            return _empty(em)
        if x.type.rank == 0:
            return x
        return em.emit("scan", [x], axis=_dim(x, a["dim"]), kind=kind)

    return convert


converts("aten.cumprod.default")(_running("prod"))
converts("aten.logcumsumexp.default")(_running("logsumexp"))
