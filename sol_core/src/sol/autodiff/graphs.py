"""Graph copies and the parameter-to-input conversion training needs."""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable

from sol.errors import SolError
from sol.ir import Graph, Node, Value, ValueKind


def next_free_number(values: Iterable[Value]) -> int:
    """One past the largest number ending any value name: a graph's fresh names must not repeat
    the names of values copied into it."""
    best = -1
    for v in values:
        m = re.search(r"(\d+)$", v.name)
        if m:
            best = max(best, int(m.group(1)))
    return best + 1


def clone_graph(graph: Graph, name: str | None = None) -> tuple[Graph, dict[Value, Value]]:
    """A structural copy (new values and nodes; parameter and constant arrays shared, not copied)
    and the map from the original's values to the copy's. Passes rewrite graphs in place, so
    everything autodiff hands to ``compile_graph`` is a copy and the caller's graph stays intact."""
    out = Graph(name or graph.name, meta=dict(graph.meta))
    out._names = itertools.count(next_free_number(graph.values()))
    vmap: dict[Value, Value] = {}
    for v in graph.inputs:
        vmap[v] = Value(v.name, v.type, ValueKind.INPUT)
        out.inputs.append(vmap[v])
    for v in graph.params:
        vmap[v] = Value(v.name, v.type, ValueKind.PARAM, data=v.data)
        out.params.append(vmap[v])
    for v in graph.consts:
        vmap[v] = Value(v.name, v.type, ValueKind.CONST, data=v.data)
        out.consts.append(vmap[v])
    for n in graph.nodes:
        m = Node(n.op, [vmap[v] for v in n.inputs], dict(n.attrs), n.source, n.name)
        m.outputs = [Value(v.name, v.type, ValueKind.NODE, producer=m) for v in n.outputs]
        vmap.update(zip(n.outputs, m.outputs))
        out.nodes.append(m)
    out.outputs = [vmap[v] for v in graph.outputs]
    return out, vmap


def params_to_inputs(graph: Graph, params: Iterable[Value | str]) -> list[Value]:
    """Turn parameters (values or names) into graph inputs, appended after the existing inputs in
    the order given; returns the new input values (the same objects, now of kind INPUT).

    A parameter is placed on the device once, at load time; a trained parameter changes after
    every optimizer step, so the training programs must read it at every call like data. The
    values drop their arrays (``data``): the caller passes the current ones at every call."""
    by_name = {p.name: p for p in graph.params}
    out = []
    for p in params:
        v = by_name.get(p) if isinstance(p, str) else p
        if v is None or v not in graph.params:
            raise SolError(f"{p!r} is not a parameter of graph {graph.name!r}; "
                           f"its parameters are {', '.join(by_name) or 'none'}")
        graph.params.remove(v)
        v.kind = ValueKind.INPUT
        v.data = None
        graph.inputs.append(v)
        out.append(v)
    return out
