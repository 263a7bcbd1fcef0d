"""Loop lowering of the index and selection ops (gather, gather_elements, max/min, argmax/argmin)
and of the running sum cumsum for :class:`sol.lowering.GroupLowering`: sizes and C offset
expressions for the devices' op macros.

Kept apart from :mod:`sol.lowering.loops` because gather addresses its operands differently from
every other I/O-bound op: at a depth past ``axis`` one outer iteration is one (prefix, index
position) pair, so ``x`` and the indices are offset by different parts of the outer index ``o``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sol.ir import Node, Value
from sol.lowering.base import contiguous_strides, ctype, linear, numel
from sol.lowering.records import (
    ArgReduceRecord,
    BaseFields,
    CumsumRecord,
    Dim,
    GatherElementsRecord,
    GatherRecord,
    OpRecord,
    ScatterElementsRecord,
    ScatterRecord,
)
from sol.sourcetext import c_string

if TYPE_CHECKING:
    from sol.lowering.loops import GroupLowering

def lower(low: GroupLowering, node: Node, depth: int, base: BaseFields) -> tuple[str, OpRecord]:
    """(op macro name, record) for one index/selection node at the group's ``depth``."""
    if node.op == "gather":
        return "gather", _gather(low, node, depth, base)
    if node.op in ("max", "min"):
        rec = low._reduce(node, depth, base)
        if not rec.contiguous:
            # The first element along every reduced axis seeds the result (no identity value
            # exists for integer max/min, and -inf would hide nothing but cost a pass).
            rec.first = " && ".join(f"i{ax - depth} == 0" for ax in node.attrs["axes"]) or "true"
        return "reduce_select", rec
    if node.op in ("argmax", "argmin"):
        x = node.inputs[0]
        ax = node.attrs["axis"] - depth
        inner = x.shape[depth:]
        return "argreduce", ArgReduceRecord(**base, TX=ctype(x), pre=numel(inner[:ax]), L=inner[ax],
                                            post=numel(inner[ax + 1:]))
    raise AssertionError(node.op)


def _pointer(low: GroupLowering, v: Value, offset: str) -> str:
    """``v``'s sub-tensor for this outer iteration: its scratch buffer if it is one (scratch holds
    exactly this iteration's part), else the global buffer at ``offset`` elements."""
    if v in low.local_sym:
        return low.local_sym[v]
    return f"({low.sym(v)} + {offset})" if offset != "0" else low.sym(v)


def _gather(low: GroupLowering, node: Node, depth: int, base: BaseFields) -> GatherRecord:
    x, idx = node.inputs
    ax = node.attrs["axis"]
    xs, ids = x.shape, idx.shape
    outer = low.kernel.outer_size > 1
    if depth <= ax:
        # The outer loops run over x's leading dims only: every instance reads all indices.
        x_off = f"o * {numel(xs[depth:])}" if outer else "0"
        i_off = "0"
        pre, count = numel(xs[depth:ax]), numel(ids)
    else:
        # o = prefix * J + position among the first j index dims.
        j = depth - ax
        positions = numel(ids[:j])
        x_off = f"(o / {positions}) * {numel(xs[ax:])}" if outer else "0"
        i_off = f"(o % {positions}) * {numel(ids[j:])}" if outer else "0"
        pre, count = 1, numel(ids[j:])
    where = f"gather{' <- ' + node.source if node.source else ''}"
    base = base.copy()
    base["x"] = _pointer(low, x, x_off)
    return GatherRecord(**base, idx=_pointer(low, idx, i_off), TI=ctype(idx),
                        pre=pre, count=count, L=xs[ax], post=numel(xs[ax + 1:]), axis=ax, where=c_string(where),
                        wrap=node.attrs["wrap"])


def lower_gather_elements(low: GroupLowering, node: Node, depth: int, base: BaseFields) -> tuple[str, OpRecord]:
    """gather_elements is one instance per tensor (no ``core_dims``: depth 0), so the record's
    loop nest runs over the whole output, and x's offset is computed per position."""
    x, idx = node.inputs
    ax = node.attrs["axis"]
    shape = node.outputs[0].shape
    out_st = contiguous_strides(shape, len(shape))
    x_st = contiguous_strides(x.shape, len(x.shape))
    where = f"gather_elements{' <- ' + node.source if node.source else ''}"
    return "gather_elements", GatherElementsRecord(
        **base, idx=_pointer(low, idx, "0"), TI=ctype(idx), dims=[Dim(e) for e in shape],
        out_offset=linear(out_st), x_offset=linear([0 if d == ax else s for d, s in enumerate(x_st)]),
        stride=x_st[ax], L=x.shape[ax], axis=ax, where=c_string(where))


def lower_cumsum(low: GroupLowering, node: Node, depth: int, base: BaseFields) -> tuple[str, OpRecord]:
    """cumsum at the group's ``depth`` (at most its axis): the dims left form (pre, L, post)."""
    x = node.inputs[0]
    ax = node.attrs["axis"] - depth
    inner = x.shape[depth:]
    acc = "double" if x.dtype.startswith("float") else ctype(x)
    return "cumsum", CumsumRecord(**base, pre=numel(inner[:ax]), L=inner[ax], post=numel(inner[ax + 1:]), ACC=acc)


def lower_scatter(low: GroupLowering, node: Node, depth: int, base: BaseFields) -> tuple[str, OpRecord]:
    """scatter is one instance per tensor (depth 0): the record covers x, the positions and the
    new slices whole, as (pre, L, post) around the axis."""
    x, idx, upd = node.inputs
    ax = node.attrs["axis"]
    where = f"scatter{' <- ' + node.source if node.source else ''}"
    return "scatter", ScatterRecord(**base, idx=_pointer(low, idx, "0"), TI=ctype(idx), upd=_pointer(low, upd, "0"),
                                    pre=numel(x.shape[:ax]), L=x.shape[ax], J=idx.shape[0],
                                    post=numel(x.shape[ax + 1:]), axis=ax, where=c_string(where))


def lower_scatter_elements(low: GroupLowering, node: Node, depth: int,
                           base: BaseFields) -> tuple[str, OpRecord]:
    """scatter_elements is one instance per tensor (depth 0): the record's loop nest runs over
    the index's elements; the update and the output position are addressed per element."""
    from sol.ops.index import _scatter_identity  # the identity PyTorch starts from

    x, idx, upd = node.inputs
    ax, reduction = node.attrs["axis"], node.attrs["reduction"]
    shape = idx.shape
    x_st = contiguous_strides(x.shape, len(x.shape))
    init = ""
    if not node.attrs["include_self"] and reduction != "none":
        value = _scatter_identity(reduction, np.dtype(x.dtype))
        init = low.literal(float(value), x.dtype) if isinstance(value, float) else repr(int(value))
        if init.startswith("-") and not isinstance(value, float):  # the most negative integer: no literal in C
            init = f"({int(value) + 1} - 1)"
    where = f"scatter_elements{' <- ' + node.source if node.source else ''}"
    return "scatter_elements", ScatterElementsRecord(
        **base, idx=_pointer(low, idx, "0"), TI=ctype(idx), upd=_pointer(low, upd, "0"),
        dims=[Dim(e) for e in shape], idx_offset=linear(contiguous_strides(shape, len(shape))),
        upd_offset=linear(contiguous_strides(upd.shape, len(shape))),
        y_offset=linear([0 if d == ax else s for d, s in enumerate(x_st)]), stride=x_st[ax], L=x.shape[ax],
        size=numel(x.shape), axis=ax, reduction=reduction, init=init, where=c_string(where))
