"""Which values of a graph can be NaN or infinite when every graph input and parameter is finite.

Why a backend asks: some vendor-library epilogues differ from the frameworks only at NaN or
infinity (a clip computed as max(x, lo) then min(x, hi) in vector instructions turns NaN into its
lower bound; the frameworks keep the NaN). Such an epilogue is exact wherever its operand is
finite, and a convolution's result is finite unless a NaN or an infinity reaches it or its sums
overflow float's range (then the frameworks give infinity too, and a clip of an infinity agrees,
but an infinity that later meets another one can make a NaN the epilogue drops: overflow is the
one case this analysis does not cover). So a backend may fuse such an epilogue where this
analysis proves the operand finite *given finite graph inputs and parameters*, and the device
checks that premise when it runs: parameters once when loading, inputs at every call (and runs
an exact variant where they are not finite).

The analysis is a forward dataflow over the graph (or, without the graph at hand, a walk up the
producers of the values asked about):

* graph inputs and parameters are finite (the premise), constants are finite if their values are;
* a value of an integer or bool type is always finite;
* a node's float outputs may be non-finite if any input may be, or if the op can make non-finite
  values from finite ones: ``OpDef.preserves_finite`` says it cannot (relu, add, conv, softmax...),
  its default (False) says it may (div, log, sqrt, exp, pow, an op nobody has looked at).

Overflow is ignored throughout: ``x * y`` of finite floats is called finite.

Backends ask during planning and devices again while rendering, once per fused epilogue: given
the graph, :func:`may_be_nonfinite` answers from one forward pass over it, kept until the graph's
structure changes (a walk per question cost 0.2 s on DenseNet-121's 175 questions, this 5 ms).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable
from itertools import chain
from operator import attrgetter

import numpy as np

from sol.ir import Graph, Node, Value, ValueKind


def is_float(v: Value) -> bool:
    return v.dtype.startswith("float")


def creates_nonfinite(node: Node) -> bool:
    """May ``node`` compute a NaN or an infinity from finite inputs (its op's flag, per node for
    ops whose answer depends on attributes; an unknown op may)?"""
    from sol.ops.registry import registry

    if node.op not in registry:
        return True
    flag = registry.get(node.op).preserves_finite
    return not (flag(node) if callable(flag) else flag)


def const_is_finite(v: Value) -> bool:
    """A constant's values, checked (constants are part of the program, not of the premise)."""
    return v.data is None or not is_float(v) or bool(np.isfinite(np.asarray(v.data)).all())


def may_be_nonfinite(values: Iterable[Value], graph: Graph | None = None) -> bool:
    """True if any of ``values`` may hold a NaN or an infinity although every graph input and
    parameter is finite (overflow aside). With ``graph`` (the graph the values are in), the
    answer comes from that graph's forward pass, computed once per structure; without, from a
    walk up the values' producers."""
    if graph is not None:
        maybe = _nonfinite_ids(graph)
        return any(id(v) in maybe for v in values)
    memo: dict[Value, bool] = {}
    return any(_nonfinite(v, memo) for v in values)


# The last graph's forward pass: the graph (weakly: a cache must not keep a model's weights
# alive), its structure when analysed, and the ids of the values that may be non-finite.
_last: tuple[weakref.ref[Graph], tuple[object, ...], frozenset[int]] | None = None
_last_lock = threading.Lock()


def _structure(graph: Graph) -> tuple[object, ...]:
    """What the answers depend on, by identity: every node, its op, attributes and inputs, and
    the constants (whose values are read). A pass that rewires, renames or adds anything changes
    it. Built from C-level maps (a loop over the nodes in Python cost 0.2 ms per question)."""
    nodes = graph.nodes
    inputs = list(map(_INPUTS, nodes))
    return (tuple(map(id, graph.consts)), tuple(map(id, nodes)), tuple(map(_OP, nodes)),
            tuple(map(id, map(_ATTRS, nodes))), tuple(map(len, inputs)), tuple(map(id, chain.from_iterable(inputs))))


_INPUTS, _OP, _ATTRS = attrgetter("inputs"), attrgetter("op"), attrgetter("attrs")


def _nonfinite_ids(graph: Graph) -> frozenset[int]:
    global _last
    structure = _structure(graph)
    last = _last
    if last is not None and last[0]() is graph and last[1] == structure:
        return last[2]
    ids = frozenset(map(id, nonfinite_values(graph)))
    with _last_lock:
        _last = (weakref.ref(graph), structure, ids)
    return ids


def _nonfinite(root: Value, memo: dict[Value, bool]) -> bool:
    """The answer for ``root``, walking its producers without recursion (graphs are deep)."""
    stack: list[tuple[Value, bool]] = [(root, False)]
    while stack:
        v, expanded = stack.pop()
        if v in memo:
            continue
        if not is_float(v):
            memo[v] = False
        elif v.kind is ValueKind.CONST:
            memo[v] = not const_is_finite(v)
        elif v.kind is not ValueKind.NODE or v.producer is None:
            memo[v] = False  # an input or a parameter: finite by the premise
        elif creates_nonfinite(v.producer):
            memo[v] = True  # no need to look further up
        elif expanded:
            memo[v] = any(memo[u] for u in v.producer.inputs)
        else:
            stack.append((v, True))
            stack.extend((u, False) for u in v.producer.inputs if u not in memo)
    return memo[root]


def nonfinite_values(graph: Graph) -> set[Value]:
    """Every value of ``graph`` that may be non-finite under the premise (inputs and parameters
    finite): the forward form of :func:`may_be_nonfinite`, for reports and tests."""
    maybe = {c for c in graph.consts if not const_is_finite(c)}
    for node in graph.nodes:
        if creates_nonfinite(node) or any(v in maybe for v in node.inputs):
            maybe.update(v for v in node.outputs if is_float(v))
    return maybe


def premise_of(values: Iterable[Value]) -> list[Value]:
    """The float graph inputs and parameters ``values`` depend on, each once, in the order
    found: what must be finite for an answer of :func:`may_be_nonfinite` about ``values`` to
    hold at run time (a device checks exactly these)."""
    found: dict[Value, None] = {}
    seen: set[Value] = set()
    stack = list(values)
    while stack:
        v = stack.pop()
        if v in seen:
            continue
        seen.add(v)
        if v.kind in (ValueKind.INPUT, ValueKind.PARAM):
            if is_float(v):
                found[v] = None
        elif v.producer is not None:
            stack.extend(v.producer.inputs)
    return list(found)
