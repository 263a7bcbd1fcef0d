"""Canonical forms the planner relies on: biases are separate ``add`` nodes (so a library may
absorb them or a fused loop may take them), identities, gradient stops and inference-time dropout
are gone."""

from __future__ import annotations

from sol.ir import Graph, Node, Value, ValueKind


def split_bias(graph: Graph) -> bool:
    """conv2d(x, w, b) -> add(conv2d(x, w), b[C,1,1]) (conv_transpose2d and conv2d_nhwc alike);
    dense(x, w, b) -> add(dense(x, w), b)."""
    changed = False
    for node in list(graph.nodes):
        if node.op not in ("conv2d", "conv_transpose2d", "conv2d_nhwc", "dense") or len(node.inputs) != 3:
            continue
        bias = node.inputs[2]
        node.inputs = node.inputs[:2]
        out = node.output
        after = node
        # (a channels-last output's channel axis is its last: the (C,) bias broadcasts as it is)
        if node.op != "dense" and not (node.op == "conv2d_nhwc" and node.attrs["output_nhwc"]):
            bias = _as_channel_vector(graph, bias, rank_after=2, after=node)
            if bias.kind is ValueKind.NODE and bias.producer is not None:
                after = bias.producer  # a run-time bias (e.g. trained) is reshaped right after the layer
        add = graph.add_node("add", [out, bias], source=node.source, after=after)
        _redirect(graph, out, add.output, skip=add)
        changed = True
    return changed


def _as_channel_vector(graph: Graph, bias: Value, rank_after: int, after: Node | None = None) -> Value:
    """A (C,) bias as (C, 1, 1): a NumPy view for params/consts (no copy), else a reshape."""
    shape = bias.shape + (1,) * rank_after
    if bias.kind in (ValueKind.PARAM, ValueKind.CONST) and bias.data is not None:
        view = bias.data.reshape(shape)
        if bias.kind is ValueKind.PARAM:
            return graph.add_param(bias.name, view)
        return graph.add_const(view, hint="bias")
    return graph.add_node("reshape", [bias], {"shape": shape}, after=after).output


def _redirect(graph: Graph, old: Value, new: Value, skip: object) -> None:
    for n in graph.nodes:
        if n is not skip:
            n.inputs = [new if v is old else v for v in n.inputs]
    graph.outputs = [new if v is old else v for v in graph.outputs]


def _bypass(graph: Graph, ops: tuple[str, ...]) -> bool:
    changed = False
    for node in list(graph.nodes):
        if node.op not in ops:
            continue
        src, out = node.inputs[0], node.output
        if out in graph.outputs and (src.kind is not ValueKind.NODE or src in graph.outputs):
            if node.op != "identity":  # the output needs its own buffer: keep a plain copy
                node.op, node.attrs = "identity", {}
                changed = True
            continue
        graph.replace_uses(out, src)
        graph.nodes.remove(node)
        changed = True
    return changed


def remove_identity(graph: Graph) -> bool:
    return _bypass(graph, ("identity",))


def remove_dropout(graph: Graph) -> bool:
    """Dropout is the identity at inference."""
    return _bypass(graph, ("dropout",))


def remove_stop_gradient(graph: Graph) -> bool:
    """``stop_gradient`` is the identity once autodiff has run (frontends emit it for ``detach``,
    ``no_grad`` blocks and ``tf.stop_gradient``; see :mod:`sol.ops.gradient`). Passes run on
    graphs being compiled, which are never differentiated again: every stop goes, in training
    and inference alike, so no device lowers it and it costs nothing at run time."""
    return _bypass(graph, ("stop_gradient",))


def fuse_silu(graph: Graph) -> bool:
    """mul(x, sigmoid(x)) -> silu(x), the same function (silu's definition is x * sigmoid(x), NaN
    and infinities alike). Exporters spell SiLU so (``torch.onnx.export``: Sigmoid, Mul); as one
    op it joins a convolution's or dense layer's epilogue instead of running as a loop of its own
    over the whole tensor (EfficientNet-B0 imported from ONNX: 47 such loops, a fifth of its time).
    Only where nothing else reads the sigmoid, which would otherwise be computed twice."""
    from sol.ops.registry import registry

    users = graph.users()
    outputs = set(graph.outputs)
    changed = False
    for node in graph.nodes:
        if node.op != "mul" or len(node.inputs) != 2:
            continue
        for x, gate in (node.inputs, node.inputs[::-1]):
            sigmoid = gate.producer
            if (sigmoid is None or sigmoid.op != "sigmoid" or sigmoid.inputs[0] is not x or len(users[gate]) != 1
                    or gate in outputs or x.type != node.output.type):
                continue
            node.op, node.inputs = "silu", [x]  # its output value (and so its readers) stay
            node.attrs = registry.get("silu", node).normalize_attrs({}, [x.type])
            changed = True
            break
    return changed
