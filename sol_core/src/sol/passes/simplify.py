"""Simplifications: dead code, constant folding, reshape and transpose chains, common subexpressions."""

from __future__ import annotations

from typing import Any

import numpy as np

from sol.ir import Graph, Value, ValueKind


def dead_code(graph: Graph) -> bool:
    live = set(graph.outputs)
    keep = []
    for node in reversed(graph.nodes):
        if any(v in live for v in node.outputs):
            keep.append(node)
            live.update(node.inputs)
    changed = len(keep) != len(graph.nodes)
    graph.nodes = keep[::-1]
    before = len(graph.params) + len(graph.consts)
    graph.prune_unused()
    return changed or before != len(graph.params) + len(graph.consts)


def known_value(v: Value, params: bool = False) -> Any:
    """``v``'s array when it is computed from constants only (and from parameters' current
    values, with ``params``) by the ops' NumPy references, else None. Frontends ask while
    converting (a shape or an axis computed in the graph must be known when optimizing)."""
    from sol.ops.registry import registry

    if v.kind is ValueKind.CONST or (params and v.kind is ValueKind.PARAM):
        return v.data
    node = v.producer
    if node is None:
        return None
    inputs = [known_value(i, params) for i in node.inputs]
    if any(i is None for i in inputs):
        return None
    out = registry.run_reference(node, inputs)[node.outputs.index(v)]
    return np.asarray(out).astype(v.dtype, copy=False).reshape(v.shape)


def _fold(graph: Graph, foldable: tuple[ValueKind, ...], as_param: bool) -> bool:
    from sol.ops.registry import registry

    changed = False
    for node in list(graph.nodes):
        if not node.inputs or any(v.kind not in foldable for v in node.inputs):
            continue
        results = registry.run_reference(node, [v.data for v in node.inputs])  # type: ignore[misc]
        for out, data in zip(node.outputs, results):
            data = data.astype(out.dtype, copy=False).reshape(out.shape)
            new = (graph.add_param(f"{node.op}:{out.name}", data) if as_param
                   else graph.add_const(data, hint="k"))
            graph.replace_uses(out, new)
        graph.nodes.remove(node)
        changed = True
    if changed:
        graph.prune_unused()
    return changed


def constant_fold(graph: Graph) -> bool:
    """Nodes that read only constants are evaluated once with their NumPy reference."""
    return _fold(graph, (ValueKind.CONST,), as_param=False)


def fold_params(graph: Graph) -> bool:
    """Inference: nodes that read only parameters/constants (a weight transpose, a BN scale)
    are evaluated at optimize time; the result becomes a parameter placed once on the device."""
    return _fold(graph, (ValueKind.CONST, ValueKind.PARAM), as_param=True)


def merge_reshapes(graph: Graph) -> bool:
    changed = False
    for node in list(graph.nodes):
        if node.op != "reshape":
            continue
        src = node.inputs[0]
        if src.shape == node.output.shape and not (node.output in graph.outputs and src.kind is not ValueKind.NODE):
            graph.replace_uses(node.output, src)
            graph.nodes.remove(node)
            changed = True
        elif src.producer is not None and src.producer.op == "reshape":
            node.inputs = [src.producer.inputs[0]]
            changed = True
    return changed


def merge_transposes(graph: Graph) -> bool:
    """A transpose of a transpose is one transpose, and none where the two cancel. Frontends of
    channels-last frameworks move images to the IR's NCHW and back around layout-sensitive ops;
    between two such ops the pair cancels."""
    changed = False
    for node in list(graph.nodes):
        if node.op != "transpose":
            continue
        src = node.inputs[0]
        if src.producer is not None and src.producer.op == "transpose":
            inner = src.producer.attrs["perm"]
            node.inputs = [src.producer.inputs[0]]
            node.attrs = dict(node.attrs, perm=tuple(inner[p] for p in node.attrs["perm"]))
            changed = True
        source = node.inputs[0]
        if node.attrs["perm"] == tuple(range(len(node.attrs["perm"]))) and not (
                node.output in graph.outputs and source.kind is not ValueKind.NODE):
            graph.replace_uses(node.output, source)
            graph.nodes.remove(node)
            changed = True
    return changed


def common_subexpressions(graph: Graph) -> bool:
    seen: dict[tuple, list] = {}
    changed = False
    for node in list(graph.nodes):
        key = (node.op, tuple(id(v) for v in node.inputs), repr(sorted(node.attrs.items())))
        if key in seen:
            for old, new in zip(node.outputs, seen[key]):
                graph.replace_uses(old, new)
            graph.nodes.remove(node)
            changed = True
        else:
            seen[key] = node.outputs
    return changed
