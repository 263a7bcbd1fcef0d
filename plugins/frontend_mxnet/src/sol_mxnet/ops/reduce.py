"""Reductions: sum, mean, max, min (``axis`` a tuple or all, ``keepdims``, ``exclude``)."""

from __future__ import annotations

from sol.plugin_api import Value
from sol_mxnet.ops.base import Context, MXNode, Unsupported, axis_of, converts, require_float

_OPS = {"sum": "sum", "sum_axis": "sum", "mean": "mean", "max": "max", "max_axis": "max", "min": "min",
        "min_axis": "min"}


@converts(*_OPS)
def reduce(ctx: Context, node: MXNode) -> list[Value]:
    (x,) = ctx.inputs(node)
    require_float(x, node.op)
    a = node.attrs
    given = a.optional_ints("axis")
    rank = x.type.rank
    axes = set(range(rank)) if given is None or len(given) == 0 else {axis_of(int(i or 0), rank) for i in given}
    if a.bool("exclude", False):
        axes = set(range(rank)) - axes
    if not axes:
        return [ctx.emit("identity", [x])]
    if any(x.shape[i] == 0 for i in axes):
        raise Unsupported(f"{node.op} over an empty axis")
    keep = a.bool("keepdims", False)
    y = ctx.emit(_OPS[node.op], [x], axes=tuple(sorted(axes)), keepdims=keep)
    return [ctx.reshape(y, (1,)) if y.type.rank == 0 else y]  # MXNet's reduction over everything is (1,)
