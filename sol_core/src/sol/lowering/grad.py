"""Loop lowering of the backward ops (:mod:`sol.ops.grad_ops`) for
:class:`sol.lowering.GroupLowering`: sizes and pointers for the devices' op macros.

``max_pool2d_backward`` is an I/O-bound stage over (N, C) planes like the forward pooling.
The convolution gradients are compute bound: devices with a library primitive take them as
library groups; a device without one fuses them and gets a single loop-nest stage (depth 0)
from here, each output element a gather over the elements that contributed to it, so the loops
parallelize and vectorize without atomics.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sol.ir import Node
from sol.lowering.base import ctype, numel
from sol.lowering.records import BaseFields, ConvBackwardRecord, GatherBackwardRecord, OpRecord, PoolBackwardRecord

if TYPE_CHECKING:
    from sol.lowering.loops import GroupLowering

def lower(low: GroupLowering, node: Node, depth: int, base: BaseFields) -> tuple[str, OpRecord]:
    """(op macro name, record) for one backward node at the group's ``depth``; ``base``: the
    :class:`~sol.lowering.records.OpRecord` fields."""
    a = node.attrs
    if node.op == "gather_backward":
        return "gather_backward", _scatter(low, node, depth, base)
    (pt, pb), (pl, pr) = a["padding"]
    dh, dw = a["dilation"]
    window: dict[str, Any] = {"pt": pt, "pb": pb, "pl": pl, "pr": pr, "sh": a["stride"][0], "sw": a["stride"][1],
                              "dh": dh, "dw": dw, "g": low._sub_tensor(node.inputs[1], depth)}
    if node.op in ("max_pool2d_backward", "max_pool2d_select"):
        x = node.inputs[0]
        pooled = node.inputs[1] if node.op == "max_pool2d_backward" else node.outputs[0]
        return node.op, PoolBackwardRecord(**base, **window, planes=numel(x.shape[depth:-2]), H=x.shape[2],
                                           W=x.shape[3], OH=pooled.shape[2], OW=pooled.shape[3], kh=a["kernel"][0],
                                           kw=a["kernel"][1])
    first, second = node.inputs
    if node.op == "conv2d_backward_data":  # inputs (grad_y, weight) -> grad_x
        gy, w, x_shape = first, second, a["shape"]
    else:  # inputs (x, grad_y) -> grad_w
        gy, w, x_shape = second, node.outputs[0], first.shape
    n, c, h, wd = x_shape
    o, cg, kh, kw = w.shape
    groups = a["groups"]
    return node.op, ConvBackwardRecord(**base, **window, N=n, C=c, H=h, W=wd, O=o, CG=cg, OG=o // groups,
                                       OH=gy.shape[2], OW=gy.shape[3], kh=kh, kw=kw)


def _scatter(low: GroupLowering, node: Node, depth: int, base: BaseFields) -> GatherBackwardRecord:
    """One instance: the rows of one prefix (dims before ``axis`` not in the outer loops). The
    indices are shared by every outer iteration, so they are addressed whole."""
    idx, g = node.inputs
    y = node.outputs[0]
    ax = node.attrs["axis"]
    return GatherBackwardRecord(**base, idx=low._base(idx), I=ctype(idx), pre=numel(y.shape[depth:ax]),
                                size=y.shape[ax], inner=numel(y.shape[ax + 1:]), nidx=numel(idx.shape),
                                wrap=node.attrs["wrap"], g=low._sub_tensor(g, depth))
