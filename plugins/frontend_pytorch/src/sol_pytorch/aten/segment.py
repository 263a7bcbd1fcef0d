"""ATen converters for value-dependent positions in a static shape: nonzero_static and
_segment_reduce (lengths or offsets known only at run time).

Both are compositions of core ops, no C of their own:

* ``nonzero_static(x, size, fill_value)``: the k-th nonzero element (row-major) is the first
  position where the running count of nonzeros (``cumsum``) reaches k + 1 (``searchsorted``); its
  coordinates come from a constant table (``gather``) whose extra last row is ``fill_value``, which
  is what a k beyond the count finds.
* ``_segment_reduce(data, reduce, lengths | offsets, axis, initial)``: each element's segment is
  the number of segment starts at or before it (``searchsorted`` over the offsets, a ``cumsum`` of
  the lengths); ``scatter_elements`` reduces the elements into their segments, which start from
  ``initial`` (or the reduction's identity), as PyTorch's CPU kernel folds them one by one;
  elements outside every segment go to an extra slot that is dropped. ``mean`` is the sum
  divided by the segment's length, ``initial`` (NaN without one) for an empty segment.
"""

from __future__ import annotations

import numpy as np

from sol.plugin_api import Value
from sol_pytorch.aten.base import Args, Emitter, Unsupported, _tensor, converts
from sol_pytorch.aten.scatter import _no_training

# --- nonzero_static -------------------------------------------------------------------------------


@converts("aten.nonzero_static.default")
def _nonzero_static(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "self")
    size, fill = int(a["size"]), int(a["fill_value"])
    rank, n = x.type.rank, x.type.numel
    if size == 0 or rank == 0 or n == 0:  # no coordinates to find: the result is all fill (or empty)
        return em.graph.add_const(np.full((size, rank), fill, dtype=np.int64), hint="k")
    mask = x if x.dtype == "bool" else em.emit("ne", [x, em.const(0, x.dtype)])  # NaN is nonzero
    count = em.emit("cumsum", [em.cast(em.reshape(mask, (n,)), "int64")], axis=0)
    rank_k = em.const(np.arange(1, size + 1, dtype=np.int64), "int64")
    where = em.emit("searchsorted", [count, rank_k], right=False)  # n where fewer than k nonzeros
    table = np.full((n + 1, rank), fill, dtype=np.int64)
    table[:n] = np.stack(np.unravel_index(np.arange(n), x.shape), axis=1)
    return em.emit("gather", [em.const(table, "int64"), where], axis=0, wrap=False)


# --- _segment_reduce ------------------------------------------------------------------------------

_IDENTITY = {"max": -np.inf, "min": np.inf, "sum": 0.0, "mean": 0.0, "prod": 1.0}
_SCATTER = {"max": "amax", "min": "amin", "sum": "sum", "mean": "sum", "prod": "prod"}


def _bounds(em: Emitter, lengths: Value | None, offsets: Value | None, lead: tuple[int, ...]) -> Value:
    """The segments' start offsets and the end of the last, along the last axis (int64)."""
    if offsets is not None:
        return em.cast(offsets, "int64")
    assert lengths is not None
    ends = em.emit("cumsum", [em.cast(lengths, "int64")], axis=len(lead))
    zero = em.emit("broadcast_to", [em.const(0, "int64")], shape=lead + (1,))
    return em.emit("concat", [zero, ends], axis=len(lead))


def _segments(em: Emitter, bounds: Value, lead: tuple[int, ...], n: int, count: int) -> Value:
    """Each element's segment along the axis, ``count`` (the dropped slot) outside every one."""
    pos = em.emit("broadcast_to", [em.const(np.arange(n, dtype=np.int64), "int64")], shape=lead + (n,))
    seg = em.emit("sub", [em.emit("searchsorted", [bounds, pos], right=True), em.const(1, "int64")])
    return em.emit("where", [em.emit("lt", [seg, em.const(0, "int64")]), em.const(count, "int64"), seg])


@converts("aten.segment_reduce.default")
def _segment_reduce(em: Emitter, a: Args) -> Value:
    data = _tensor(a, "data")
    reduce = str(a["reduce"])
    if reduce not in _IDENTITY:
        raise Unsupported(f"reduce={reduce!r}")
    if a.get("indices") is not None:
        raise Unsupported("segments given by indices (PyTorch has no kernel for them either)")
    lengths, offsets = a.get("lengths"), a.get("offsets")
    if not isinstance(lengths, Value) and not isinstance(offsets, Value):
        raise Unsupported("segments given neither by lengths nor by offsets tensors")
    _no_training(em, "_segment_reduce", _SCATTER[reduce])
    out = em.out
    dt, rank = out.dtype, data.type.rank
    if not dt.startswith("float") or rank == 0:
        raise Unsupported(f"a segment reduction of a {data.type} tensor")
    axis = int(a["axis"]) % rank
    lead, count, n = tuple(data.shape[:axis]), out.shape[axis], data.shape[axis]
    initial = a.get("initial")
    empty = float(initial) if initial is not None else (np.nan if reduce == "mean" else _IDENTITY[reduce])
    if out.numel == 0:
        return em.graph.add_const(np.zeros(out.shape, dtype=dt), hint="empty")
    start = float(initial) if initial is not None else _IDENTITY[reduce]
    slots = out.shape[:axis] + (count + 1,) + out.shape[axis + 1:]
    base = em.emit("broadcast_to", [em.const(start, dt)], shape=slots)
    if data.type.numel == 0:
        folded = base
    else:
        bounds = _bounds(em, lengths if isinstance(lengths, Value) else None,
                         offsets if isinstance(offsets, Value) else None, lead)
        seg = _segments(em, bounds, lead, n, count)
        index = em.emit("broadcast_to", [em.reshape(seg, lead + (n,) + (1,) * (rank - axis - 1))], shape=data.shape)
        folded = em.emit("scatter_elements", [base, index, em.cast(data, dt)], axis=axis,
                         reduction=_SCATTER[reduce], include_self=True)
    result = em.emit("slice", [folded], axes=(axis,), starts=(0,), stops=(count,), steps=(1,))
    if reduce != "mean":
        return result
    return _mean(em, result, a, lead, axis, rank, dt, empty)


def _mean(em: Emitter, total: Value, a: Args, lead: tuple[int, ...], axis: int, rank: int, dt: str,
          empty: float) -> Value:
    """The segments' sums divided by their lengths; ``empty`` where a segment is empty."""
    lengths, offsets = a.get("lengths"), a.get("offsets")
    if isinstance(lengths, Value):
        size = em.cast(lengths, "int64")
    else:
        assert isinstance(offsets, Value)  # _segment_reduce checked that one of the two is a tensor
        bounds = em.cast(offsets, "int64")
        count = bounds.shape[-1] - 1
        stop = em.emit("slice", [bounds], axes=(axis,), starts=(1,), stops=(count + 1,), steps=(1,))
        begin = em.emit("slice", [bounds], axes=(axis,), starts=(0,), stops=(count,), steps=(1,))
        size = em.emit("sub", [stop, begin])
    size = em.reshape(size, lead + (size.shape[-1],) + (1,) * (rank - axis - 1))
    none = em.emit("le", [size, em.const(0, "int64")])
    mean = em.emit("div", [total, em.cast(size, dt)])
    return em.emit("where", [none, em.const(empty, dt), mean])
