"""Debugging aids: run a graph with the ops' NumPy references, and compare against it."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sol.ir import Graph, Value


def run_reference(graph: Graph, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:
    """Evaluate ``graph`` node by node with each op's NumPy reference implementation."""
    from sol.ops.registry import registry

    env: dict[Value, np.ndarray] = {}
    for v, a in zip(graph.inputs, inputs):
        env[v] = np.asarray(a)
    for v in graph.params + graph.consts:
        env[v] = v.data  # type: ignore[assignment]
    for node in graph.nodes:
        outs = registry.run_reference(node, [env[v] for v in node.inputs])
        for v, o in zip(node.outputs, outs):
            env[v] = np.asarray(o)
    return [env[v] for v in graph.outputs]


def compare(graph: Graph, program, inputs: Sequence[np.ndarray]) -> list[float]:  # type: ignore[no-untyped-def]
    """Largest absolute difference per output between ``program`` and the NumPy reference."""
    want = run_reference(graph, inputs)
    got = program(*inputs)
    return [float(np.max(np.abs(np.asarray(g, np.float64) - w))) if w.size else 0.0 for g, w in zip(got, want)]
