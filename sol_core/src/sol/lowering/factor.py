"""Loop lowering of the matrix factorizations (sol.ops.factor) for
:class:`sol.lowering.GroupLowering`: each op is one instance per matrix; the group's outer loops
may cover part of the batch, the record's ``batch`` the rest."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sol.ir import Node
from sol.lowering.base import ctype, numel
from sol.lowering.records import (
    BaseFields,
    CholeskyRecord,
    LuFactorRecord,
    LuPermutationRecord,
    OpRecord,
    TriangularSolveRecord,
)
from sol.ops.factor import NOT_PD, SINGULAR
from sol.sourcetext import c_string

if TYPE_CHECKING:
    from sol.lowering.loops import GroupLowering


def _batch(node: Node, depth: int, core: int) -> int:
    shape = node.outputs[0].shape
    return numel(shape[depth:len(shape) - core])


def _check(node: Node, reason: tuple[str, str]) -> dict[str, Any]:
    """A checked factorization's record fields: whether it checks, where (the check's op name and
    the node's source) and the reason's two pieces, all C string literals."""
    head, tail = reason
    return {"check": bool(node.attrs["check"]),
            "where": c_string(f"{node.attrs['check']}{' <- ' + node.source if node.source else ''}"),
            "reason_head": c_string(head), "reason_tail": c_string(tail)}


def lower_lu_factor(low: GroupLowering, node: Node, depth: int, base: BaseFields) -> tuple[str, OpRecord]:
    m, n = node.inputs[0].shape[-2:]
    return "lu_factor", LuFactorRecord(**base, batch=_batch(node, depth, 2), M=m, N=n, K=min(m, n),
                                       **_check(node, SINGULAR))


def lower_lu_permutation(low: GroupLowering, node: Node, depth: int, base: BaseFields) -> tuple[str, OpRecord]:
    piv = node.inputs[0]
    where = c_string(f"lu_permutation{' <- ' + node.source if node.source else ''}")
    return "lu_permutation", LuPermutationRecord(**base, TX=ctype(piv), batch=_batch(node, depth, 1),
                                                 K=piv.shape[-1], M=node.attrs["m"], where=where)


def lower_triangular_solve(low: GroupLowering, node: Node, depth: int, base: BaseFields) -> tuple[str, OpRecord]:
    a, b = node.inputs
    tr = node.attrs["transpose"]
    return "triangular_solve", TriangularSolveRecord(
        **base, b=low._sub_tensor(b, depth), batch=_batch(node, depth, 2), N=a.shape[-1], K=b.shape[-1],
        upper=node.attrs["upper"] != tr, unit=node.attrs["unit"], transpose=tr)


def lower_cholesky(low: GroupLowering, node: Node, depth: int, base: BaseFields) -> tuple[str, OpRecord]:
    return "cholesky", CholeskyRecord(**base, batch=_batch(node, depth, 2), N=node.inputs[0].shape[-1],
                                      **_check(node, NOT_PD))
