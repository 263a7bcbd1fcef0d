"""ATen converters for ops defined on a tensor's memory rather than its values: as_strided,
as_strided_copy, as_strided_scatter and the functional resize (``resize_``, ``resize_as_``).

Why they can be compiled at all: sol computes on values, but the exported graph records every
tensor's layout (``meta["val"]``: strides and storage offset of the fake tensor), so the storage
position of each element is known at import. Reading ``offset + sum(i_d * stride_d)`` from the
storage is then a gather of constant logical positions from the tensor flattened, and writing
there a scatter into constant positions: exact, with no C of its own.

What is refused (by name, never guessed): a read or write of a storage position that no element
of the tensor itself holds (another view's memory, or memory ``resize_`` would leave
uninitialized), overlapping writes (PyTorch raises), sizes or strides known only at run time, and
an explicit storage offset while an input of the graph is itself a view into a larger storage
(the offset would then be counted from memory the graph does not see).

The layout is the traced one: like ``torch.export``'s program, the compiled graph assumes the
inputs it is called with are laid out as the example inputs were (a contiguous tensor then).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from sol.plugin_api import Value
from sol_pytorch.aten.base import LAYOUT_DEPENDENT, Args, Emitter, Unsupported, _tensor, converts
from sol_pytorch.aten.index import training_import

# --- storage positions ----------------------------------------------------------------------------


def _ints(values: Sequence[Any], what: str) -> tuple[int, ...]:
    if any(not isinstance(v, int) for v in values):
        raise Unsupported(f"{what} known only at run time")
    return tuple(int(v) for v in values)


def _positions(shape: Sequence[int], stride: Sequence[int], offset: int) -> np.ndarray:
    """The storage position of every element of a tensor of ``shape`` (row-major, int64)."""
    pos = np.full(tuple(shape), offset, dtype=np.int64)
    for d, (n, s) in enumerate(zip(shape, stride)):
        pos += (np.arange(n, dtype=np.int64) * s).reshape((n,) + (1,) * (len(shape) - d - 1))
    return pos


def _layout(val: Any) -> tuple[tuple[int, ...], tuple[int, ...], int]:
    """Shape, strides and storage offset of a fake tensor (Unsupported where symbolic)."""
    if not isinstance(val, torch.Tensor) or val.layout is not torch.strided:
        raise Unsupported("the tensor's memory layout is not known from the trace")
    shape = _ints(val.shape, "a size")
    return shape, _ints(val.stride(), "a stride"), _ints([val.storage_offset()], "a storage offset")[0]


def _logical(val: Any, wanted: np.ndarray) -> np.ndarray:
    """For each storage position in ``wanted``, the row-major index of an element of the tensor
    ``val`` stored there (any one where elements share memory: they hold one value). Refused
    where a position holds no element of the tensor: that memory is not the graph's to read."""
    shape, stride, offset = _layout(val)
    pos = _positions(shape, stride, offset).reshape(-1)
    order = np.argsort(pos, kind="stable")
    ranked = pos[order]
    at = np.searchsorted(ranked, wanted.reshape(-1)) if ranked.size else np.zeros(wanted.size, dtype=np.int64)
    inside = at < ranked.size
    hit = np.zeros(wanted.size, dtype=bool)
    hit[inside] = ranked[at[inside]] == wanted.reshape(-1)[inside]
    if not hit.all():
        raise Unsupported("it reads or writes memory outside the tensor's own elements (another view's "
                          "or uninitialized memory)")
    return order[at].astype(np.int64).reshape(wanted.shape)


def _input_val(em: Emitter, position: int = 0) -> Any:
    em.graph.meta[LAYOUT_DEPENDENT] = True
    node = em.node
    arg = node.args[position] if node is not None and len(node.args) > position else None
    if arg is None or not hasattr(arg, "meta"):
        raise Unsupported("the input's memory layout is not known from the trace")
    return arg.meta.get("val")


def _explicit_offset_ok(em: Emitter) -> None:
    """An explicit storage offset counts from the start of the storage: refused while a graph
    input is a view into a larger storage (its memory before the view is not the graph's, and
    its offset is not part of what a compiled variant is specialized on)."""
    for node in em.node.graph.nodes:
        val = node.meta.get("val") if node.op == "placeholder" else None
        if isinstance(val, torch.Tensor) and val.layout is torch.strided and val.storage_offset() != 0:
            raise Unsupported("an explicit storage offset while an input of the graph is a view into a larger "
                              "storage (its storage offset is not 0)")


def _gather_flat(em: Emitter, x: Value, index: np.ndarray) -> Value:
    """``x.flatten()[index]`` with a constant index, shaped like the index."""
    if index.size == 0:
        return em.graph.add_const(np.zeros(index.shape, dtype=x.dtype), hint="empty")
    flat = em.reshape(x, (x.type.numel,))
    return em.reshape(em.emit("gather", [flat, em.const(index.reshape(-1), "int64")], axis=0, wrap=False),
                      index.shape)


def _read(em: Emitter, x: Value, size: Sequence[Any], stride: Sequence[Any], offset: Any) -> Value:
    """``x.as_strided(size, stride, offset)`` as a gather."""
    size_, stride_ = _ints(size, "a size"), _ints(stride, "a stride")
    if len(size_) != len(stride_):
        raise Unsupported(f"{len(size_)} sizes and {len(stride_)} strides")
    val = _input_val(em)
    if offset is None:
        offset = _layout(val)[2]
    else:
        _explicit_offset_ok(em)
        offset = _ints([offset], "a storage offset")[0]
    return _gather_flat(em, x, _logical(val, _positions(size_, stride_, offset)))


# --- converters -----------------------------------------------------------------------------------


@converts("aten.as_strided.default", "aten.as_strided_copy.default")
def _as_strided(em: Emitter, a: Args) -> Value:
    return em.reshape(_read(em, _tensor(a, "self"), a["size"], a["stride"], a["storage_offset"]), em.out.shape)


@converts("aten.as_strided_scatter.default")
def _as_strided_scatter(em: Emitter, a: Args) -> Value:
    """``out = self.clone(); out.as_strided(size, stride, offset).copy_(src)``: the clone's layout
    is the result's (``meta["val"]``), its storage its own, so the offset counts from its start."""
    if training_import(em):
        # PyTorch's own gradient for ``self`` is wrong (it fails torch.autograd.gradcheck: the gradient
        # flows into the overwritten positions instead of the kept ones); sol's would be right, and
        # so differ from eager's: neither is acceptable, training through it is refused
        raise Unsupported("as_strided_scatter in training (PyTorch's gradient of it fails gradcheck; sol gives none)")
    x, src = _tensor(a, "self"), _tensor(a, "src")
    size, stride = _ints(a["size"], "a size"), _ints(a["stride"], "a stride")
    if len(size) != len(stride) or tuple(src.shape) != size:
        raise Unsupported(f"a source of shape {list(src.shape)} for a view of size {list(size)}")
    out = em.val
    held = _positions(*_layout(out))
    if np.unique(held).size != held.size:  # a write would change several elements at once (a clone never overlaps)
        raise Unsupported("a result whose elements share memory")
    offset = _layout(out)[2] if a["storage_offset"] is None else _ints([a["storage_offset"]], "a storage offset")[0]
    where = _logical(out, _positions(size, stride, offset)).reshape(-1)
    if np.unique(where).size != where.size:
        raise Unsupported("overlapping writes (several elements of the view share memory: PyTorch raises)")
    if where.size == 0:
        return em.reshape(x, em.out.shape)
    flat = em.reshape(em.cast(x, em.out.dtype), (x.type.numel,))
    updates = em.reshape(em.cast(src, em.out.dtype), (where.size,))
    done = em.emit("scatter", [flat, em.const(where, "int64"), updates], axis=0)
    return em.reshape(done, em.out.shape)


@converts("aten.resize.default")
def _resize(em: Emitter, a: Args) -> Value:
    """resize keeps the storage and its offset and lays the new shape over it with the strides
    PyTorch gives the result (contiguous, or the memory format asked for; unchanged where the size
    is): what it reads is storage the input's elements hold, else uninitialized memory (refused)."""
    x = _tensor(a, "self")
    val = _input_val(em)
    shape, stride, _ = _layout(em.val)
    if (shape, stride) == _layout(val)[:2]:
        return x  # the same size and strides: nothing moves
    return _gather_flat(em, x, _logical(val, _positions(shape, stride, _layout(val)[2])))


@converts("aten.resize_as.default")
def _resize_as(em: Emitter, a: Args) -> Value:
    return _resize(em, a)
