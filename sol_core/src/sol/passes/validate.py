"""The IR validator, run after every pass: a broken pass fails loudly at the pass that broke it."""

from __future__ import annotations

from sol.errors import SolError
from sol.ir import Graph, ValueKind


class InvalidGraphError(SolError):
    pass


def validate(graph: Graph, after: str) -> None:
    from sol.ops.registry import registry

    def fail(msg: str) -> None:
        raise InvalidGraphError(f"invalid graph after {after}: {msg}")

    defined = set()
    for v in graph.inputs:
        if v.kind is not ValueKind.INPUT:
            fail(f"input {v!r} has kind {v.kind}")
        defined.add(v)
    for v in graph.params + graph.consts:
        data = v.data
        if data is None:
            fail(f"{v.kind.value} {v!r} has no data")
        elif tuple(data.shape) != v.shape or str(data.dtype) != v.dtype:
            fail(f"{v!r} data is {data.dtype}{list(data.shape)}")
        defined.add(v)
    for n in graph.nodes:
        for v in n.inputs:
            if v not in defined:
                fail(f"{n!r} reads {v!r} before it is defined (or it is not in the graph)")
        opdef = registry.get(n.op, n)
        want = opdef.infer([v.type for v in n.inputs], n.attrs)
        have = [v.type for v in n.outputs]
        if want != have:
            fail(f"{n!r}: output types {have} but the op's rule says {want}")
        for v in n.outputs:
            if v in defined:
                fail(f"{v!r} is defined twice")
            if v.producer is not n:
                fail(f"{v!r} does not point back to its producer {n.op}")
            defined.add(v)
    for v in graph.outputs:
        if v not in defined:
            fail(f"output {v!r} is not defined")
