"""Inference-time BatchNorm: folded into the preceding convolution or dense layer's weights and
bias when it is that layer's only reader, otherwise rewritten as a per-channel multiply-add."""

from __future__ import annotations

import numpy as np

from sol.ir import Graph, Node, Value, ValueKind
from sol.passes.affine import scaled_weights

_STATIC = (ValueKind.PARAM, ValueKind.CONST)


def _scale_shift(bn: Node) -> tuple[np.ndarray, np.ndarray]:
    mean, var, weight, bias = (v.data.astype(np.float64).reshape(-1) for v in bn.inputs[1:])  # type: ignore[union-attr]
    scale = weight / np.sqrt(var + bn.attrs["eps"])
    return scale, bias - mean * scale


def _single_reader(graph: Graph, value: Value, users: dict[Value, list[Node]]) -> bool:
    return len(users.get(value, [])) == 1 and value not in graph.outputs


def fold_into_producer(graph: Graph) -> bool:
    changed = False
    for bn in list(graph.nodes):
        if bn.op != "batch_norm" or any(v.kind not in _STATIC for v in bn.inputs[1:]):
            continue
        users = graph.users()
        x = bn.inputs[0]
        bias_add = None
        layer = x.producer
        if layer is not None and layer.op == "add" and _single_reader(graph, x, users):
            a, b = layer.inputs
            if a.producer is not None and a.producer.op in ("conv2d", "dense") and b.kind in _STATIC:
                bias_add, layer = layer, a.producer
        if layer is None or layer.op not in ("conv2d", "dense") or layer.inputs[1].kind not in _STATIC:
            continue
        if not _single_reader(graph, layer.output, users):
            continue
        channel_axis = 1 if layer.op == "conv2d" else layer.output.type.rank - 1
        if bn.attrs["axis"] != channel_axis:
            continue
        scale, shift = _scale_shift(bn)
        w = layer.inputs[1]
        new_w = scaled_weights(w.data, scale)  # type: ignore[arg-type]
        layer.inputs[1] = graph.add_param(f"{w.name}*bn", new_w)
        bshape = layer.output.shape[channel_axis:][:1] + (1,) * (layer.output.type.rank - 1 - channel_axis)
        if bias_add is not None:
            old_b = bias_add.inputs[1].data.astype(np.float64).reshape(-1)  # type: ignore[union-attr]
            shift = shift + old_b * scale
        new_b = graph.add_param(f"{bn.inputs[4].name}*bn", shift.astype(x.dtype).reshape(bshape))
        if bias_add is not None:
            bias_add.inputs[1] = new_b
            graph.replace_uses(bn.output, bias_add.output)
        else:
            add = graph.add_node("add", [layer.output, new_b], source=bn.source, after=layer)
            graph.replace_uses(bn.output, add.output)
        graph.nodes.remove(bn)
        changed = True
    if changed:
        graph.prune_unused()
    return changed


def to_affine(graph: Graph) -> bool:
    """batch_norm -> mul(x, scale) + shift with per-channel constants (two element-wise ops)."""
    changed = False
    for bn in list(graph.nodes):
        if bn.op != "batch_norm" or any(v.kind not in _STATIC for v in bn.inputs[1:]):
            continue
        x = bn.inputs[0]
        axis = bn.attrs["axis"]
        shape = (x.shape[axis],) + (1,) * (x.type.rank - 1 - axis)
        scale, shift = _scale_shift(bn)
        s = graph.add_param(f"{bn.inputs[3].name}:scale", scale.astype(x.dtype).reshape(shape))
        t = graph.add_param(f"{bn.inputs[4].name}:shift", shift.astype(x.dtype).reshape(shape))
        mul = graph.add_node("mul", [x, s], source=bn.source, after=bn)
        add = graph.add_node("add", [mul.output, t], source=bn.source, after=mul)
        graph.replace_uses(bn.output, add.output)
        graph.nodes.remove(bn)
        changed = True
    if changed:
        graph.prune_unused()
    return changed
