"""BatchNorm's inference formula as plain element-wise ops, for what the inference passes leave.

At inference BatchNorm is folded into its producer or becomes a per-channel multiply-add with
precomputed constants (:mod:`sol.passes.batchnorm`). When training, those passes do not run and
the statistics or the affine weights may be run-time tensors (trained parameters are inputs), so
``batch_norm`` reaches the late stage intact. Devices have no ``batch_norm`` loop (its operands
are per-channel vectors, not broadcastable as they stand), so it becomes
``(x - mean) * (weight * rsqrt(var + eps)) + bias`` with the vectors reshaped to (C, 1, ...):
element-wise ops that fuse with their neighbours like any others.
"""

from __future__ import annotations

import numpy as np

from sol.ir import Graph, Node, Value


def to_elementwise(graph: Graph) -> bool:
    changed = False
    for bn in list(graph.nodes):
        if bn.op == "batch_norm":
            _expand(graph, bn)
            changed = True
    return changed


def _expand(graph: Graph, bn: Node) -> None:
    x, mean, var, weight, bias = bn.inputs
    axis = bn.attrs["axis"]
    shape = (x.shape[axis],) + (1,) * (x.type.rank - 1 - axis)
    last = bn

    def add(op: str, inputs: list[Value], **attrs: object) -> Value:
        nonlocal last
        last = graph.add_node(op, inputs, dict(attrs), source=bn.source, after=last)
        return last.output

    eps = graph.add_const(np.asarray(bn.attrs["eps"], dtype=var.dtype), hint="eps")
    scale = add("mul", [weight, add("rsqrt", [add("add", [var, eps])])])
    centered = add("sub", [x, add("reshape", [mean], shape=shape)])
    scaled = add("mul", [centered, add("reshape", [scale], shape=shape)])
    out = add("add", [scaled, add("reshape", [bias], shape=shape)])
    graph.replace_uses(bn.output, out)
    graph.nodes.remove(bn)
