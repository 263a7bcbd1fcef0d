"""ATen converters for writes at run-time positions and the lookups they mirror: torch.scatter,
scatter_add and scatter_reduce, index_add, index_reduce, index_put with ``accumulate=True``, with
several index tensors or with a boolean mask, put, take, take_along_dim, masked_scatter,
embedding_bag and bilinear.

Everything that combines several values at one position is core's ``scatter_elements``
(torch.scatter's semantics: one update per index element, reduced into x along an axis, in
row-major order, as PyTorch's CPU kernels do); an index along one axis (index_add, index_reduce,
index_put) is spread over the slices it names, a flat index (put, index_put with several index
tensors) addresses x flattened. ``mean`` is composed of two sums (the values and the counts),
exactly as PyTorch divides. Gradients: core's rules for replacing and summing scatters (PyTorch's
``grad.gather(dim, index)``); prod, amax and amin have none in sol and are refused by name in a
training import.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from sol.plugin_api import Value
from sol_pytorch.aten.base import Args, Emitter, Unsupported, _tensor, converts
from sol_pytorch.aten.index import training_import

_REDUCE = {"sum": "sum", "add": "sum", "prod": "prod", "multiply": "prod", "amax": "amax", "amin": "amin",
           "mean": "mean"}


# --- building blocks ------------------------------------------------------------------------------


def _no_training(em: Emitter, what: str, reduction: str) -> None:
    """prod / amax / amin have no gradient rule in sol: a training import refuses them by name."""
    if reduction in ("prod", "amax", "amin") and training_import(em):
        raise Unsupported(f"{what} with reduce={reduction!r} in training (sol has no gradient for it)")


def _scatter(em: Emitter, x: Value, index: Value, src: Value, axis: int, reduction: str,
             include_self: bool = True) -> Value:
    """Core's scatter_elements; ``mean`` as PyTorch computes it: the sum divided by the number
    of values summed at each position (x's own value counting where include_self), at least 1."""
    if reduction != "mean":
        return em.emit("scatter_elements", [x, index, src], axis=axis, reduction=reduction, include_self=include_self)
    dt = x.dtype
    if not dt.startswith("float"):
        raise Unsupported(f"a scatter mean of {dt} tensors (PyTorch's floor division)")
    total = em.emit("scatter_elements", [x, index, src], axis=axis, reduction="sum", include_self=include_self)
    start = em.emit("broadcast_to", [em.const(1.0 if include_self else 0.0, dt)], shape=x.shape)
    ones = em.emit("broadcast_to", [em.const(1.0, dt)], shape=src.shape)
    count = em.emit("scatter_elements", [start, index, ones], axis=axis, reduction="sum")
    count = em.emit("where", [em.emit("eq", [count, em.const(0.0, dt)]), em.const(1.0, dt), count])
    return em.emit("div", [total, count])


def _spread(em: Emitter, index: Value, axis: int, shape: Sequence[int]) -> Value:
    """A 1-D index along ``axis`` as an index of ``shape`` (each slice's elements all name the
    slice's position): index_add's and index_put's form of torch.scatter's index."""
    rank = len(shape)
    line = em.reshape(index, (1,) * axis + (index.type.numel,) + (1,) * (rank - axis - 1))
    return em.emit("broadcast_to", [line], shape=tuple(shape))


def _wrapped(em: Emitter, index: Value, size: int) -> Value:
    """Negative positions counted from the end (index_put, put); what stays outside [0, size)
    is reported at run time by the scatter, as PyTorch raises."""
    i = em.cast(index, "int64")
    return em.emit("where", [em.emit("lt", [i, em.const(0, "int64")]), em.emit("add", [i, em.const(size, "int64")]), i])


def _at_least_1d(em: Emitter, *values: Value) -> list[Value]:
    """PyTorch treats 0-d tensors in scatter-like ops as holding one element along one axis."""
    rank = max(max(v.type.rank for v in values), 1)
    return [em.reshape(v, (1,) * rank) if v.type.rank == 0 else v for v in values]


# --- torch.scatter family -------------------------------------------------------------------------


def _scatter_op(em: Emitter, a: Args, src: Value, reduction: str, include_self: bool = True) -> Value:
    x, index = _tensor(a, "self"), _tensor(a, "index")
    if index.type.numel == 0:  # nothing to write: x as it is
        return x
    x, index, src = _at_least_1d(em, x, index, em.cast(src, x.dtype))
    if not x.type.rank == index.type.rank == src.type.rank:
        raise Unsupported(f"scatter with an index of rank {index.type.rank} for an input of rank {x.type.rank}")
    axis = int(a["dim"]) % x.type.rank
    return em.reshape(_scatter(em, x, index, src, axis, reduction, include_self), em.out.shape)


def _value_source(em: Emitter, a: Args) -> Value:
    """scatter's ``value`` form: the scalar as an update at every index element."""
    index = _tensor(a, "index")
    return em.emit("broadcast_to", [em.const(a["value"], em.out.dtype)], shape=index.shape)


@converts("aten.scatter.src", "aten.scatter.value", "aten.scatter.reduce", "aten.scatter.value_reduce")
def _scatter_(em: Emitter, a: Args) -> Value:
    src = _tensor(a, "src") if "src" in a else _value_source(em, a)
    reduction = _REDUCE[a["reduce"]] if a.get("reduce") is not None else "none"
    _no_training(em, "scatter", reduction)
    return _scatter_op(em, a, src, reduction)


@converts("aten.scatter_add.default")
def _scatter_add(em: Emitter, a: Args) -> Value:
    return _scatter_op(em, a, _tensor(a, "src"), "sum")


@converts("aten.scatter_reduce.two")
def _scatter_reduce(em: Emitter, a: Args) -> Value:
    reduction = _REDUCE.get(str(a["reduce"]))
    if reduction is None:
        raise Unsupported(f"scatter_reduce with reduce={a['reduce']!r}")
    _no_training(em, "scatter_reduce", reduction)
    return _scatter_op(em, a, _tensor(a, "src"), reduction, bool(a["include_self"]))


# --- along one axis: index_add, index_reduce ------------------------------------------------------


def _index_op(em: Emitter, a: Args, source: Value, reduction: str, include_self: bool = True) -> Value:
    """index_add / index_reduce: ``source``'s slice j combined into x's slice ``index[j]``."""
    x, index = _tensor(a, "self"), _tensor(a, "index")
    if index.type.numel == 0:
        return x
    x, source = _at_least_1d(em, x, em.cast(source, x.dtype))
    axis = int(a["dim"]) % x.type.rank
    index = em.reshape(index, (index.type.numel,))
    return em.reshape(_scatter(em, x, _spread(em, index, axis, source.shape), source, axis, reduction, include_self),
                      em.out.shape)


@converts("aten.index_add.default")
def _index_add(em: Emitter, a: Args) -> Value:
    source = em.cast(_tensor(a, "source"), em.out.dtype)
    alpha = a.get("alpha", 1)
    if alpha != 1:
        source = em.emit("mul", [source, em.const(alpha, source.dtype)])
    return _index_op(em, a, source, "sum")


@converts("aten.index_reduce.default")
def _index_reduce(em: Emitter, a: Args) -> Value:
    reduction = _REDUCE.get(str(a["reduce"]))
    if reduction is None:
        raise Unsupported(f"index_reduce with reduce={a['reduce']!r}")
    _no_training(em, "index_reduce", reduction)
    return _index_op(em, a, _tensor(a, "source"), reduction, bool(a["include_self"]))


# --- index_put: accumulating, several index tensors, boolean masks --------------------------------


def index_put(em: Emitter, x: Value, indices: list[Any], values: Value, accumulate: bool) -> Value:
    """``x[i, j] = v`` / ``x[i, j] += v`` with index tensors in adjacent dims (a None before them
    keeps a dim whole): the indexed dims as one flat axis, each index element's flat position
    (negative ones wrapped; one out of range in any dim makes it invalid, reported at run time),
    ``v`` broadcast to the indexed shape; replaced by core's scatter, summed by scatter_elements
    (every repeated position's value added, in order, as PyTorch's CPU kernel)."""
    given = [(d, i) for d, i in enumerate(indices) if i is not None]
    if any(not isinstance(i, Value) for _, i in given):
        raise Unsupported("index_put with an index that is not a tensor")
    if any(i.dtype == "bool" for _, i in given):
        if len(given) != 1:
            raise Unsupported("index_put with a boolean mask and other index tensors")
        return _index_put_mask(em, x, given[0][0], given[0][1], values, accumulate)
    dims = [d for d, _ in given]
    if dims != list(range(dims[0], dims[-1] + 1)):
        raise Unsupported("index_put with index tensors in non-adjacent dimensions")
    first, last = dims[0], dims[-1]
    block = x.shape[first:last + 1]
    size = int(np.prod(block))
    shape_b = tuple(torch.broadcast_shapes(*(tuple(i.shape) for _, i in given)))
    flat: Value | None = None
    valid: Value | None = None
    for (d, i), stride in zip(given, [int(np.prod(block[k + 1:])) for k in range(len(block))]):
        n = x.shape[d]
        w = _wrapped(em, i, n)
        ok = em.emit("logical_and", [em.emit("ge", [w, em.const(0, "int64")]),
                                     em.emit("lt", [w, em.const(n, "int64")])])
        term = em.emit("mul", [w, em.const(stride, "int64")]) if stride != 1 else w
        flat = term if flat is None else em.emit("add", [flat, term])
        valid = ok if valid is None else em.emit("logical_and", [valid, ok])
    assert flat is not None and valid is not None
    flat = em.emit("where", [valid, flat, em.const(size, "int64")])  # invalid: out of range, reported
    count = int(np.prod(shape_b))
    flat = em.reshape(em.emit("broadcast_to", [flat], shape=shape_b), (count,))
    pre, post = x.shape[:first], x.shape[last + 1:]
    values = em.emit("broadcast_to", [em.cast(values, x.dtype)], shape=pre + shape_b + post)
    values = em.reshape(values, pre + (count,) + post)
    rows = em.reshape(x, pre + (size,) + post)
    if count == 0:
        return x
    if accumulate:
        out = em.emit("scatter_elements", [rows, _spread(em, flat, first, values.shape), values], axis=first,
                      reduction="sum")
    else:
        out = em.emit("scatter", [rows, flat, values], axis=first)
    return em.reshape(out, x.shape)


def _index_put_mask(em: Emitter, x: Value, first: int, mask: Value, values: Value, accumulate: bool) -> Value:
    """``x[mask] = v`` (or ``+=``) where ``v`` is the same for every selected element (it has no
    dim, or one of size 1, where the selected elements line up): a select by the mask, exact for
    every mask. One value per selected element depends on how many there are: refused."""
    k = mask.type.rank
    post = x.shape[first + k:]
    if values.type.rank > len(post) and values.shape[values.type.rank - len(post) - 1] != 1:
        raise Unsupported("index_put with a boolean mask and one value per selected element")
    v = values
    if v.type.rank > len(post):  # drop the selected-elements dim (of size 1) and what precedes it
        lead = v.shape[:v.type.rank - len(post) - 1]
        if any(d != 1 for d in lead[:max(len(lead) - first, 0)]):
            raise Unsupported("index_put with a boolean mask and values of more dimensions than the result")
        v = em.reshape(v, lead[max(len(lead) - first, 0):] + (1,) * k + post)
    v = em.emit("broadcast_to", [em.cast(v, x.dtype)], shape=x.shape)
    m = em.emit("broadcast_to", [em.reshape(em.cast(mask, "bool"), (1,) * first + mask.shape + (1,) * len(post))],
                shape=x.shape)
    if accumulate:  # each position is selected at most once: one add
        v = em.emit("add", [x, v])
    return em.emit("where", [m, v, x])


@converts("aten._unsafe_masked_index_put_accumulate.default")
def _masked_index_put_accumulate(em: Emitter, a: Args) -> Value:
    """PyTorch's decomposition of a masked indexed add (upsampling's backward): the indices
    clamped into their dims, the values where the mask is false zeroed, then an indexed add."""
    x, mask, values = _tensor(a, "self"), _tensor(a, "mask"), _tensor(a, "values")
    indices: list[Any] = []
    for d, i in enumerate(a["indices"]):
        if i is None or not isinstance(i, Value):
            indices.append(i)
            continue
        n = x.shape[d]
        i = em.cast(i, "int64")
        low, high = em.const(-n, "int64"), em.const(n - 1, "int64")
        indices.append(em.emit("minimum", [em.emit("maximum", [i, low]), high]))
    zero = em.const(0.0, values.dtype) if values.dtype.startswith("float") else em.const(0, values.dtype)
    values = em.emit("where", [em.cast(mask, "bool"), values, zero])
    return index_put(em, x, indices, values, accumulate=True)


# --- flat positions: put, take, take_along_dim ------------------------------------------------------


@converts("aten.put.default")
def _put(em: Emitter, a: Args) -> Value:
    x, index, source = _tensor(a, "self"), _tensor(a, "index"), _tensor(a, "source")
    if index.type.numel == 0:
        return x
    n, count = x.type.numel, index.type.numel
    flat = em.reshape(x, (n,))
    positions = em.reshape(index, (count,))
    values = em.reshape(em.cast(source, x.dtype), (count,))
    if a["accumulate"]:
        out = em.emit("scatter_elements", [flat, _wrapped(em, positions, n), values], axis=0, reduction="sum")
    else:  # core's scatter counts negative positions from the end, as put does
        out = em.emit("scatter", [flat, positions, values], axis=0)
    return em.reshape(out, x.shape)


@converts("aten.take.default")
def _take(em: Emitter, a: Args) -> Value:
    """x flattened, read at the index (negative positions from the end, as PyTorch)."""
    x, index = _tensor(a, "self"), _tensor(a, "index")
    flat = em.reshape(x, (x.type.numel,))
    return em.reshape(em.emit("gather", [flat, index], axis=0, wrap=True), em.out.shape)


def _floor_mod(em: Emitter, i: Value, n: int) -> Value:
    """Python's ``i % n`` for int64 ``i`` and a known n > 0 (take_along_dim wraps every index so):
    the quotient floor(i / n) in float64, then the remainder in int64, corrected by one step
    either way. Exact for |i| < 2**53; beyond, a remainder left outside [0, n) is an index
    error at run time (the gather reports it), never a wrong element."""
    q = em.emit("floor", [em.emit("div", [em.cast(i, "float64"), em.const(float(n), "float64")])])
    q = em.emit("minimum", [em.emit("maximum", [q, em.const(-2.0 ** 62, "float64")]), em.const(2.0 ** 62, "float64")])
    r = em.emit("sub", [i, em.emit("mul", [em.cast(q, "int64"), em.const(n, "int64")])])
    k = em.const(n, "int64")
    r = em.emit("where", [em.emit("lt", [r, em.const(0, "int64")]), em.emit("add", [r, k]), r])
    return em.emit("where", [em.emit("ge", [r, k]), em.emit("sub", [r, k]), r])


@converts("aten.take_along_dim.default")
def _take_along_dim(em: Emitter, a: Args) -> Value:
    x, index = _tensor(a, "self"), _tensor(a, "indices")
    dim = a.get("dim")
    if dim is None:  # x flattened; PyTorch's gather: indices in [0, n)
        flat = em.reshape(x, (x.type.numel,))
        return em.reshape(em.emit("gather_elements", [flat, em.reshape(index, (index.type.numel,))], axis=0),
                          em.out.shape)
    x, index = _at_least_1d(em, x, index)
    if x.type.rank != index.type.rank:
        raise Unsupported(f"take_along_dim with indices of rank {index.type.rank} for an input of rank {x.type.rank}")
    d = int(dim) % x.type.rank
    idx_want = list(x.shape)
    idx_want[d] = index.shape[d]
    x_want = list(index.shape)
    x_want[d] = x.shape[d]
    idx_shape = tuple(torch.broadcast_shapes(tuple(idx_want), index.shape))
    x_shape = tuple(torch.broadcast_shapes(tuple(x_want), x.shape))
    if 0 in idx_shape:
        return em.graph.add_const(np.zeros(em.out.shape, dtype=em.out.dtype), hint="empty")
    if x_shape[d] == 0:
        raise Unsupported("take_along_dim from an empty dimension (PyTorch divides by its size)")
    index = _floor_mod(em, em.emit("broadcast_to", [em.cast(index, "int64")], shape=idx_shape), x_shape[d])
    x = em.emit("broadcast_to", [x], shape=x_shape)
    return em.reshape(em.emit("gather_elements", [x, index], axis=d), em.out.shape)


# --- masked_scatter --------------------------------------------------------------------------------


@converts("aten.masked_scatter.default")
def _masked_scatter(em: Emitter, a: Args) -> Value:
    """The k-th selected position (in row-major order) takes source's k-th element: k is the
    running count of the mask (cumsum) less one, read from source flattened by a gather (too few
    source elements is an index error at run time, as PyTorch raises)."""
    x, mask, source = _tensor(a, "self"), _tensor(a, "mask"), _tensor(a, "source")
    shape = em.out.shape
    n = int(np.prod(shape))
    if source.type.numel == 0:
        raise Unsupported("masked_scatter from an empty source")
    m = em.reshape(em.emit("broadcast_to", [em.cast(mask, "bool")], shape=shape), (n,))
    k = em.emit("sub", [em.emit("cumsum", [em.cast(m, "int64")], axis=0), em.const(1, "int64")])
    k = em.emit("where", [m, k, em.const(0, "int64")])
    picked = em.emit("gather", [em.reshape(em.cast(source, em.out.dtype), (source.type.numel,)), k], axis=0,
                     wrap=False)
    xs = em.reshape(em.emit("broadcast_to", [em.cast(x, em.out.dtype)], shape=shape), (n,))
    return em.reshape(em.emit("where", [m, picked, xs]), shape)


# --- embedding_bag -----------------------------------------------------------------------------------


@converts("aten.embedding_bag.default", "aten.embedding_bag.padding_idx")
def _embedding_bag(em: Emitter, a: Args) -> tuple[Value, None, None, None]:
    """The public op: a negative padding_idx counts from the end, None is no padding row."""
    pad, rows = a.get("padding_idx"), _tensor(a, "weight").shape[0]
    if pad is not None and not -rows <= int(pad) < rows:
        raise Unsupported(f"embedding_bag with padding_idx {pad} outside a table of {rows} rows")
    return _bags(em, a, None if pad is None else int(pad) % rows)


@converts("aten._embedding_bag.default", "aten._embedding_bag_forward_only.default")
def _embedding_bag_internal(em: Emitter, a: Args) -> tuple[Value, None, None, None]:
    """The internal ops get padding_idx wrapped already; -1 means no padding row."""
    pad = int(a.get("padding_idx", -1))
    return _bags(em, a, pad if pad >= 0 else None)


def _bags(em: Emitter, a: Args, pad: int | None) -> tuple[Value, None, None, None]:
    """Rows of ``weight`` gathered and reduced per bag (sum, mean or max; empty bags give zeros):
    each index's bag from the offsets (a count of the offsets at or before it, a scatter of ones
    and a running sum), the padding index's rows sent to an extra bag that is dropped. Only the
    result is compiled; the other outputs (offset2bag, bag sizes, max indices) are training-only."""
    weight, indices = _tensor(a, "weight"), _tensor(a, "indices")
    mode = int(a.get("mode", 0))
    if training_import(em) and (a.get("scale_grad_by_freq") or a.get("sparse") or mode == 2):
        raise Unsupported("embedding_bag with max mode, scale_grad_by_freq or sparse in training")
    dt, dim = weight.dtype, weight.shape[1]
    bags = em.out.shape[0]
    count = indices.type.numel
    ids = em.reshape(indices, (count,))
    if indices.type.rank == 2:  # fixed-size bags: row b holds bag b
        bag = em.const(np.repeat(np.arange(indices.shape[0]), indices.shape[1]), "int64")
    else:
        offsets = em.cast(_tensor(a, "offsets"), "int64")
        if a.get("include_last_offset"):
            offsets = _head(em, offsets, bags)
        offsets = em.reshape(offsets, (bags,))
        marks = em.emit("scatter_elements", [em.const(np.zeros(count + 1), "int64"), offsets,
                                             em.const(np.ones(bags), "int64")], axis=0, reduction="sum")
        running = em.emit("cumsum", [marks], axis=0)
        bag = em.emit("sub", [_head(em, running, count), em.const(1, "int64")])
    if pad is not None:
        bag = em.emit("where", [em.emit("eq", [em.cast(ids, "int64"), em.const(pad, "int64")]),
                                em.const(bags, "int64"), bag])
    if count == 0:
        return em.graph.add_const(np.zeros((bags, dim), dtype=dt), hint="empty"), None, None, None
    rows = em.emit("gather", [weight, ids], axis=0, wrap=False)
    psw = a.get("per_sample_weights")
    if isinstance(psw, Value):
        rows = em.emit("mul", [rows, em.reshape(em.cast(psw, dt), (count, 1))])
    where_to = _spread(em, bag, 0, (count, dim))
    zeros = em.emit("broadcast_to", [em.const(0.0, dt)], shape=(bags + 1, dim))
    reduction = {0: "sum", 1: "mean", 2: "amax"}[mode]
    if reduction == "amax":
        out = em.emit("scatter_elements", [zeros, where_to, rows], axis=0, reduction="amax", include_self=False)
    else:
        out = _scatter(em, zeros, where_to, rows, 0, reduction, include_self=False)
    return _head(em, out, bags), None, None, None


def _head(em: Emitter, v: Value, n: int) -> Value:
    """The first ``n`` entries of ``v`` along axis 0."""
    return v if v.shape[0] == n else em.emit("slice", [v], axes=(0,), starts=(0,), stops=(n,))


# --- bilinear -----------------------------------------------------------------------------------------


@converts("aten.bilinear.default")
def _bilinear(em: Emitter, a: Args) -> Value:
    """out[..., o] = sum_ij x1[..., i] W[o, i, j] x2[..., j] + b[o]: x1 times W (as I x (O J)) by a
    matmul, times x2 and summed over j."""
    x1, x2, w = _tensor(a, "input1"), _tensor(a, "input2"), _tensor(a, "weight")
    out_f, in1, in2 = w.shape
    lead = x1.shape[:-1]
    n = int(np.prod(lead))
    dt = em.out.dtype
    if n == 0:
        return em.graph.add_const(np.zeros(em.out.shape, dtype=dt), hint="empty")
    a1 = em.reshape(em.cast(x1, dt), (n, in1))
    a2 = em.reshape(em.cast(x2, dt), (n, 1, in2))
    wm = em.reshape(em.transpose(em.cast(w, dt), (1, 0, 2)), (in1, out_f * in2))
    t = em.reshape(em.emit("matmul", [a1, wm]), (n, out_f, in2))
    y = em.emit("sum", [em.emit("mul", [t, a2])], axes=(2,))
    bias = a.get("bias")
    if isinstance(bias, Value):
        y = em.emit("add", [y, em.reshape(em.cast(bias, dt), (1, out_f))])
    return em.reshape(y, em.out.shape)
