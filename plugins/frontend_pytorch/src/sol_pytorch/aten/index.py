"""ATen converters for token models: embedding lookups, comparisons and masks, selecting
reductions, in the style of every family: one small converter per overload, result types from
the node's fake tensor.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from sol.plugin_api import Value, known_value
from sol_pytorch.aten.base import Args, Emitter, Unsupported, _tensor, converts, dtype_name
from sol_pytorch.aten.training import RANDOM_KEY

# --- gather ------------------------------------------------------------------------------------


@converts("aten.embedding.default")
def _embedding(em: Emitter, a: Args) -> Value:
    # padding_idx / scale_grad_by_freq / sparse only change the gradient: the lookup is a gather
    # whose gradient skips the padding row (core's gather "padding"). PyTorch rejects negative
    # ids (no counting from the end): wrap=False makes them an error too.
    weight = _tensor(a, "weight")
    if training_import(em) and (a["scale_grad_by_freq"] or a["sparse"]):
        raise Unsupported("embedding with " + ("scale_grad_by_freq=True" if a["scale_grad_by_freq"] else "sparse=True")
                          + " in training (sol computes dense, unscaled gradients)")
    pad = a["padding_idx"]
    padding = int(pad) if pad is not None and 0 <= int(pad) < weight.shape[0] else None  # -1: none
    return em.emit("gather", [weight, _tensor(a, "indices")], axis=0, wrap=False, padding=padding)


def training_import(em: Emitter) -> bool:
    """Whether ``em`` builds a graph sol will differentiate (a training import)."""
    return RANDOM_KEY in em.graph.meta


@converts("aten.index_select.default")
def _index_select(em: Emitter, a: Args) -> Value:
    x, index = _tensor(a, "self"), _tensor(a, "index")
    if x.type.rank == 0:
        x = em.reshape(x, (1,))
    return em.reshape(em.emit("gather", [x, index], axis=a["dim"], wrap=False), em.out.shape)


@converts("aten.gather.default")
def _gather(em: Emitter, a: Args) -> Value:
    """torch.gather: core's gather_elements (an index outside the axis is an error at run time,
    as in PyTorch; negative ones too). ``sparse_grad`` only changes the gradient's layout."""
    x, index = _tensor(a, "self"), _tensor(a, "index")
    if x.type.rank == 0 or index.type.rank == 0:  # 0-d tensors: one element along an axis of one
        x, index = em.reshape(x, (1,) * max(x.type.rank, 1)), em.reshape(index, (1,) * max(index.type.rank, 1))
    if x.type.rank != index.type.rank:
        raise Unsupported(f"gather with an index of rank {index.type.rank} for an input of rank {x.type.rank}")
    return em.reshape(em.emit("gather_elements", [x, index], axis=int(a["dim"])), em.out.shape)


@converts("aten.index.Tensor")
def _index(em: Emitter, a: Args) -> Value:
    """``x[i, j]`` with index tensors (advanced indexing; None entries keep a dimension whole).

    Index tensors known while tracing (aranges, as transformers' mask builders use them:
    ``padding_mask[batch_idx, kv_idx]``) make the element each result position reads known
    too: PyTorch itself indexes a tensor of positions, and the result is one lookup of those
    positions in the flattened ``x`` (exact, any index pattern). One index tensor computed at run
    time is a gather along its dimension (negative indices count from the end, as in PyTorch).
    Boolean indices give data-dependent shapes (refused before this converter runs)."""
    x = _tensor(a, "self")
    indices = list(a["indices"])
    given = [(d, i) for d, i in enumerate(indices) if i is not None]
    if any(i.dtype == "bool" for _, i in given if isinstance(i, Value)):
        raise Unsupported("indexing with a boolean mask")
    known = {d: known_value(i) if isinstance(i, Value) else None for d, i in given}
    if all(k is not None for k in known.values()):
        if x.type.numel == 0:  # nothing to read; PyTorch checks the indices against the shape alone
            return _index_empty(em, x, indices, known)
        positions = torch.arange(x.type.numel).reshape(x.shape)
        # a dimension without an index tensor is kept whole: slice(None) (None would add an axis)
        keys = tuple(torch.from_numpy(np.asarray(known[d]).astype(np.int64)) if d in known else slice(None)
                     for d in range(len(indices)))
        try:
            picked = positions[keys].numpy()
        except IndexError as exc:  # eager raises the same for these indices
            raise Unsupported(f"index out of range: {exc}") from None
        flat = em.reshape(x, (x.type.numel,))
        return em.reshape(em.emit("gather", [flat, em.const(picked, "int64")], axis=0), em.out.shape)
    if len(given) == 1 and isinstance(given[0][1], Value):
        d, i = given[0]
        return em.reshape(em.emit("gather", [x, i], axis=d, wrap=True), em.out.shape)
    dims = [d for d, _ in given]
    if dims != list(range(dims[0], dims[-1] + 1)) or not all(isinstance(i, Value) for _, i in given):
        raise Unsupported("indexing with index tensors computed at run time in non-adjacent dimensions")
    return _index_block(em, x, [(d, i) for d, i in given if isinstance(i, Value)])


def _index_empty(em: Emitter, x: Value, indices: list[Any], known: dict[int, Any]) -> Value:
    """Indexing an empty tensor with known indices: PyTorch's own indexing of an empty tensor of
    that shape says whether the indices are valid (and the result is empty or raises)."""
    keys = tuple(torch.from_numpy(np.asarray(known[d]).astype(np.int64)) if d in known else slice(None)
                 for d in range(len(indices)))
    try:
        picked = torch.empty(x.shape)[keys]
    except IndexError as exc:
        raise Unsupported(f"index out of range: {exc}") from None
    t = em.out
    if picked.numel() or tuple(picked.shape) != t.shape:  # cannot happen: said rather than assumed
        raise Unsupported(f"indexing an empty tensor gave {tuple(picked.shape)}, PyTorch {t.shape}")
    return em.graph.add_const(np.zeros(t.shape, dtype=t.dtype), hint="empty")


def _index_block(em: Emitter, x: Value, given: list[tuple[int, Value]]) -> Value:
    """``x[:, i, j]`` with adjacent index tensors: the indexed dims flattened into one, each
    result position's flat index there (``i * stride_i + j``, each index wrapped from the end
    first) looked up by a gather. An index out of range in any dim must not read a neighbour's
    element: it makes the flat index invalid, which the gather reports as an error at run time."""
    first, last = given[0][0], given[-1][0]
    block = x.shape[first:last + 1]
    size = int(np.prod(block))
    strides = [int(np.prod(block[k + 1:])) for k in range(len(block))]
    flat: Value | None = None
    valid: Value | None = None
    for (d, i), stride in zip(given, strides):
        n = x.shape[d]
        i = em.cast(i, "int64")
        wrapped = em.emit("where", [em.emit("lt", [i, em.const(0, "int64")]),
                                    em.emit("add", [i, em.const(n, "int64")]), i])
        ok = em.emit("logical_and", [em.emit("ge", [wrapped, em.const(0, "int64")]),
                                     em.emit("lt", [wrapped, em.const(n, "int64")])])
        term = em.emit("mul", [wrapped, em.const(stride, "int64")]) if stride != 1 else wrapped
        flat = term if flat is None else em.emit("add", [flat, term])
        valid = ok if valid is None else em.emit("logical_and", [valid, ok])
    assert flat is not None and valid is not None
    flat = em.emit("where", [valid, flat, em.const(size, "int64")])
    rows = em.reshape(x, x.shape[:first] + (size,) + x.shape[last + 1:])
    return em.reshape(em.emit("gather", [rows, flat], axis=first, wrap=False), em.out.shape)


# --- comparisons, logical ops, where ------------------------------------------------------------


def _promoted(*operands: Any) -> str:
    """PyTorch's result type of ``operands`` (tensors of the model, Python scalars), by asking
    PyTorch itself: a dimensioned tensor, a 0-d tensor and a scalar promote differently."""
    probes = [torch.empty((1,) * v.type.rank, dtype=getattr(torch, v.dtype)) if isinstance(v, Value) else v
              for v in operands]
    if len(probes) == 1:
        return dtype_name(probes[0].dtype) if isinstance(probes[0], torch.Tensor) else dtype_name(
            torch.tensor(probes[0]).dtype)
    dtype = torch.result_type(probes[0], probes[1])
    for p in probes[2:]:
        dtype = torch.promote_types(dtype, torch.result_type(torch.empty((), dtype=dtype), p))
    return dtype_name(dtype)


def _comparison(op: str) -> Any:
    def convert(em: Emitter, a: Args) -> Value:
        dt = _promoted(a["self"], a["other"])
        return em.emit(op, [em.operand(a["self"], dt), em.operand(a["other"], dt)])

    return convert


for _op in ("eq", "ne", "lt", "le", "gt", "ge"):
    converts(f"aten.{_op}.Tensor", f"aten.{_op}.Scalar")(_comparison(_op))


def _as_bool(em: Emitter, x: Any) -> Value:
    return em.operand(x, "bool")


# --- writes at run-time positions: index_put / index_copy (a static KV cache's update) ----------


@converts("aten.index_put.default")
def _index_put(em: Emitter, a: Args) -> Value:
    """``x[:, i] = v`` with one integer index tensor (leading dims whole): core's scatter, the
    index flattened and ``v`` broadcast to the slices it writes. Accumulating writes, boolean
    masks and several index tensors are refused by name."""
    x = _tensor(a, "self")
    given = [(d, i) for d, i in enumerate(a["indices"]) if i is not None]
    if a["accumulate"] or len(given) != 1 or not isinstance(given[0][1], Value) or given[0][1].dtype == "bool":
        from sol_pytorch.aten.scatter import index_put  # indexed adds, several index tensors, masks

        return index_put(em, x, list(a["indices"]), _tensor(a, "values"), bool(a["accumulate"]))
    d, index = given[0]
    count = max(index.type.numel, 0)
    shape = x.shape[:d] + index.shape + x.shape[d + 1:]
    values = em.emit("broadcast_to", [em.cast(_tensor(a, "values"), x.dtype)], shape=shape)
    flat = x.shape[:d] + (count,) + x.shape[d + 1:]
    return em.emit("scatter", [x, em.reshape(index, (count,)), em.reshape(values, flat)], axis=d)


@converts("aten.index_copy.default")
def _index_copy(em: Emitter, a: Args) -> Value:
    x, index, source = _tensor(a, "self"), _tensor(a, "index"), _tensor(a, "source")
    if x.type.rank == 0:  # a 0-d tensor: one position along an axis of one
        return em.reshape(em.emit("scatter", [em.reshape(x, (1,)), em.reshape(index, (1,)),
                                               em.reshape(source, (1,))], axis=0), ())
    return em.emit("scatter", [x, em.reshape(index, (max(index.type.numel, 0),)), source], axis=int(a["dim"]))


@converts("aten.copy.default")
def _copy(em: Emitter, a: Args) -> Value:
    """The functional form of ``x.copy_(src)``: ``src`` cast to x's dtype and broadcast to its shape."""
    x = _tensor(a, "self")
    return em.emit("broadcast_to", [em.cast(_tensor(a, "src"), x.dtype)], shape=x.shape)


@converts("aten.logical_not.default")
def _logical_not(em: Emitter, a: Args) -> Value:
    return em.cast(em.emit("logical_not", [_tensor(a, "self")]), em.out.dtype)


def _logical(op: str) -> Any:
    def convert(em: Emitter, a: Args) -> Value:
        return em.cast(em.emit(op, [_tensor(a, "self"), _tensor(a, "other")]), em.out.dtype)

    return convert


converts("aten.logical_and.default")(_logical("logical_and"))
converts("aten.logical_or.default")(_logical("logical_or"))


def _bitwise(op: str) -> Any:
    """``~mask``, ``mask & other``: on bool tensors the bitwise ops are the logical ones."""

    def convert(em: Emitter, a: Args) -> Value:
        operands = [a["self"]] + ([a["other"]] if "other" in a else [])
        if em.out.dtype != "bool":
            raise Unsupported(f"bitwise operation on {em.out.dtype} (only bool tensors are supported)")
        return em.emit(op, [_as_bool(em, x) for x in operands])

    return convert


converts("aten.bitwise_not.default")(_bitwise("logical_not"))
converts("aten.bitwise_and.Tensor", "aten.bitwise_and.Scalar")(_bitwise("logical_and"))
converts("aten.bitwise_or.Tensor", "aten.bitwise_or.Scalar")(_bitwise("logical_or"))


@converts("aten.where.self", "aten.where.ScalarSelf", "aten.where.ScalarOther", "aten.where.Scalar")
def _where(em: Emitter, a: Args) -> Value:
    dt = em.out.dtype
    cond = _as_bool(em, a["condition"])
    return em.emit("where", [cond, em.operand(a["self"], dt), em.operand(a["other"], dt)])


@converts("aten.masked_fill.Scalar", "aten.masked_fill.Tensor")
def _masked_fill(em: Emitter, a: Args) -> Value:
    dt = em.out.dtype
    value = a["value"]
    if isinstance(value, Value) and value.type.rank != 0:
        raise Unsupported(f"masked_fill value must be a scalar or a 0-d tensor, got {value.type}")
    return em.emit("where", [_as_bool(em, a["mask"]), em.operand(value, dt), em.operand(a["self"], dt)])


# --- selecting reductions ------------------------------------------------------------------------


def _dims(x: Value, dim: Any) -> tuple[int, ...]:
    if dim is None or (isinstance(dim, (list, tuple)) and len(dim) == 0):
        return tuple(range(x.type.rank))
    return (int(dim),) if isinstance(dim, int) else tuple(int(d) for d in dim)


def _select(op: str, x: Value, dims: tuple[int, ...], keepdim: bool, em: Emitter, ties: str = "split") -> Value:
    if x.type.rank == 0:
        return x
    return em.emit(op, [x], axes=dims, keepdims=keepdim, ties=ties)


def _arg(op: str, em: Emitter, x: Value, dim: Any, keepdim: bool, shape: tuple[int, ...]) -> Value:
    if dim is None or x.type.rank == 0:  # over all elements, as one flat axis
        flat = em.reshape(x, (max(x.type.numel, 1),) if x.type.rank else (1,))
        return em.reshape(em.emit(op, [flat], axis=0), shape)
    return em.emit(op, [x], axis=int(dim), keepdims=keepdim)


def _max_min(kind: str) -> Any:
    def full(em: Emitter, a: Args) -> Value:
        x = _tensor(a, "self")
        return _select(kind, x, _dims(x, None), False, em)

    def dim(em: Emitter, a: Args) -> tuple[Value, Value]:
        x = _tensor(a, "self")
        keep = bool(a.get("keepdim", False))
        # The gradient goes to the element the returned index names (eager's), not split among ties.
        values = _select(kind, x, _dims(x, a["dim"]), keep, em, ties="first")
        indices_shape = tuple(int(d) for d in em.val[1].shape)
        return values, _arg(f"arg{kind}", em, x, a["dim"], keep, indices_shape)

    def amax(em: Emitter, a: Args) -> Value:
        x = _tensor(a, "self")
        return _select(kind, x, _dims(x, a.get("dim")), bool(a.get("keepdim", False)), em)

    def arg(em: Emitter, a: Args) -> Value:
        return _arg(f"arg{kind}", em, _tensor(a, "self"), a.get("dim"), bool(a.get("keepdim", False)),
                    em.out.shape)

    converts(f"aten.{kind}.default")(full)
    converts(f"aten.{kind}.dim")(dim)
    converts(f"aten.a{kind}.default")(amax)
    converts(f"aten.arg{kind}.default")(arg)
    return full


_max_min("max")
_max_min("min")
