"""Loop lowering of the sort family (sol.ops.sort) for :class:`sol.lowering.GroupLowering`: the
sizes of each op's (pre, L, post) view and the pointers the devices' op macros read."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sol.ir import Node
from sol.lowering.base import ctype, numel
from sol.lowering.index import _pointer
from sol.lowering.records import ArgsortRecord, BaseFields, OpRecord, ScanRecord, SearchsortedRecord

if TYPE_CHECKING:
    from sol.lowering.loops import GroupLowering


def lower_argsort(low: GroupLowering, node: Node, depth: int, base: BaseFields) -> tuple[str, OpRecord]:
    """argsort at the group's ``depth`` (at most its axis): the dims left form (pre, L, post)."""
    x = node.inputs[0]
    ax = node.attrs["axis"] - depth
    inner = x.shape[depth:]
    return "argsort", ArgsortRecord(**base, TX=ctype(x), pre=numel(inner[:ax]), L=inner[ax],
                                    post=numel(inner[ax + 1:]), descending=node.attrs["descending"])


def lower_searchsorted(low: GroupLowering, node: Node, depth: int, base: BaseFields) -> tuple[str, OpRecord]:
    """searchsorted is one instance per tensor (depth 0): every value row and its boundary row."""
    seq, values = node.inputs
    n = seq.shape[-1]
    m = values.shape[-1] if values.type.rank else 1
    rows = numel(values.shape[:-1]) if values.type.rank else 1
    return "searchsorted", SearchsortedRecord(**base, vals=_pointer(low, values, "0"), TX=ctype(seq), rows=rows,
                                              M=m, N=n, shared=seq.type.rank == 1, right=node.attrs["right"])


def lower_scan(low: GroupLowering, node: Node, depth: int, base: BaseFields) -> tuple[str, OpRecord]:
    """scan at the group's ``depth`` (at most its axis): the dims left form (pre, L, post)."""
    x = node.inputs[0]
    ax = node.attrs["axis"] - depth
    inner = x.shape[depth:]
    kind = node.attrs["kind"]
    acc = "double" if x.dtype.startswith("float") and not kind.startswith("arg") else ctype(x)
    return "scan", ScanRecord(**base, TX=ctype(x), ACC=acc, kind=kind, pre=numel(inner[:ax]), L=inner[ax],
                              post=numel(inner[ax + 1:]))
