"""Where every value that crosses a group boundary lives.

Intermediates share one workspace ("arena"): each gets a byte range that no other value uses
while it is live (from the group that writes it to the last group that reads it or an alias of
it), packed greedily largest-first. Reshapes are aliases and cost nothing.
"""

from __future__ import annotations

from sol.ir import Graph, Value, ValueKind
from sol.planner.plan import Group, GroupKind, MemoryPlan, Slot, Storage

ALIGN = 64  # bytes: a cache line, and the widest vector register


def _alias_root(v: Value) -> Value:
    while v.producer is not None and v.producer.op == "reshape":
        v = v.producer.inputs[0]
    return v


def ensure_distinct_outputs(graph: Graph) -> None:
    """Each graph output must own its buffer: copy outputs that are inputs, parameters, repeated,
    or reshapes of those, through an ``identity`` node."""
    claimed: set[Value] = set()
    for i, v in enumerate(graph.outputs):
        root = _alias_root(v)
        if root.kind is not ValueKind.NODE or root in claimed:
            graph.outputs[i] = graph.add_node("identity", [v]).output
            root = graph.outputs[i]
        claimed.add(root)


def plan_memory(graph: Graph, groups: list[Group]) -> MemoryPlan:
    slots: dict[Value, Slot] = {}
    for i, v in enumerate(graph.inputs):
        slots[v] = Slot(Storage.INPUT, i)
    for i, v in enumerate(graph.params):
        slots[v] = Slot(Storage.PARAM, i)
    for i, v in enumerate(graph.consts):
        slots[v] = Slot(Storage.CONST, i)
    for g in groups:
        if g.kind is GroupKind.ALIAS:
            node = g.nodes[0]
            slots[node.output] = Slot(Storage.ALIAS, alias_of=node.inputs[0])
    for i, v in enumerate(graph.outputs):
        root = _alias_root(v)
        slots[root] = Slot(Storage.OUTPUT, i)

    # Lifetimes of arena values, in group order; aliases extend their root's life.
    first: dict[Value, int] = {}
    last: dict[Value, int] = {}
    for gi, g in enumerate(groups):
        for v in g.outputs:
            root = _alias_root(v)
            if root not in slots:
                first.setdefault(root, gi)
                last[root] = max(last.get(root, gi), gi)
        for v in g.inputs:
            root = _alias_root(v)
            if root in first:
                last[root] = max(last[root], gi)
    # Per-step scratch of RECURRENT groups (h @ W_hh^T of one step), live during their group only.
    items: list[tuple[int, int, int, Value | int]] = [(v.type.nbytes, first[v], last[v], v) for v in first]
    for gi, g in enumerate(groups):
        if g.kind is GroupKind.RECURRENT and g.recurrent is not None:
            items.append((g.recurrent.gh_elements * g.recurrent.y.type.itemsize, gi, gi, g.id))
    scratch: dict[int, int] = {}
    placed: list[tuple[int, int, int, int]] = []  # (offset, size, first, last)
    arena = naive = 0
    for nbytes, start_v, end_v, owner in sorted(items, key=lambda it: (-it[0], it[1])):
        size = _aligned(nbytes)
        naive += size
        # First fit among the byte ranges of values live at the same time, by start address.
        busy = sorted((o, o + n) for o, n, start, end in placed if not (end < start_v or end_v < start))
        offset = 0
        for lo, hi in busy:
            if offset + size <= lo:
                break
            offset = max(offset, _aligned(hi))
        placed.append((offset, size, start_v, end_v))
        if isinstance(owner, Value):
            slots[owner] = Slot(Storage.ARENA, offset)
        else:
            scratch[owner] = offset
        arena = max(arena, offset + size)
    return MemoryPlan(slots, arena, naive, scratch)


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN
