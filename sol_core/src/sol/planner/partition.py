"""Partition a graph into groups: library calls with absorbed epilogues, depth-first fused loop
nests of element-wise and I/O-bound ops, and free aliases.

The planner owns the graph algorithm; devices and backends only answer questions about single
ops (``Backend.claims``, ``Backend.absorbs``, ``DeviceCapabilities.fusible_ops``), as in
Inductor's scheduler. Nodes are visited in topological order and each joins the best legal group:

* a compute- or parameter-bound op a backend claims anchors a LIBRARY group;
* an element-wise op reading a library group's result becomes that library's epilogue if the
  backend can absorb it, unless the element-wise chain leads into a fusible I/O-bound op: then
  the chain goes depth-first with that op (the seed's conv -> [bias, ReLU, AvgPool] kernel);
* an execution-order-constrained op (an LSTM/GRU recurrence) gets a RECURRENT group of its
  own if the device lists it in ``recurrent_ops``: a loop over time the device renders from
  :class:`~sol.planner.plan.RecurrentKernel` (its input projection was hoisted out by a pass);
* element-wise and I/O-bound ops otherwise join a FUSED group of a producer when they share its
  outer loops (same leading dims), the scratch budget allows and no cycle between groups forms;
* afterwards, a FUSED group whose results only one other FUSED group reads joins that consumer
  under the same rules (a node joins one producer's group; the chain it could not join, e.g. one
  that starts from saved values, is not left to write its result to memory);
* last, a chain that was kept out of a library's epilogue for an I/O op that then did not join
  it (a concat over the scratch budget, too few outer iterations for the cores) becomes that
  library's epilogue after all: no separate loop nest between the library call and the I/O op.

Before grouping, :mod:`sol.planner.rewrite` clones element-wise nodes over saved values for each
reader and splits per-channel reductions, so that both fit their neighbours' loops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sol.errors import UnsupportedOpError
from sol.ir import Graph, Node, Value, ValueKind
from sol.ops.registry import LayerClass, registry
from sol.planner.kernel import build_kernel, max_depth
from sol.planner.layout import channels_last
from sol.planner.memory import ensure_distinct_outputs, plan_memory
from sol.planner.plan import Group, GroupKind, Plan, RecurrentKernel
from sol.planner.rewrite import rewrite_for_fusion
from sol.roles import Backend, Device

_LIBRARY_CLASSES = (LayerClass.COMPUTE_BOUND, LayerClass.PARAM_BOUND)


@dataclass
class _State:
    graph: Graph
    device: Device
    backends: list[Backend]
    users: dict[Value, list[Node]]
    groups: list[Group] = field(default_factory=list)
    group_of: dict[Node, Group] = field(default_factory=dict)
    depth: dict[int, int] = field(default_factory=dict)  # FUSED group id -> current depth
    ancestors: dict[int, set[int]] = field(default_factory=dict)  # group id -> ids it depends on

    def new_group(self, kind: GroupKind, node: Node, cls: LayerClass, backend: str | None = None) -> Group:
        g = Group(len(self.groups), kind, [], cls, backend=backend)
        self.groups.append(g)
        self.ancestors[g.id] = set()
        if kind is GroupKind.FUSED:
            self.depth[g.id] = max_depth(node)
        self.add(g, node)
        return g

    def add(self, g: Group, node: Node) -> None:
        g.nodes.append(node)
        self.group_of[node] = g
        new: set[int] = set()
        for v in node.inputs:
            h = self.group_of.get(v.producer) if v.producer is not None else None
            if h is not None and h is not g:
                new |= {h.id} | self.ancestors[h.id]
        new -= self.ancestors[g.id]
        if new:
            # Groups that already read g now depend on g's new producers too: without this, a
            # later node could join one of those producers through a stale ancestor set and
            # close a cycle (backward graphs, where one gradient feeds many groups, do this).
            self.ancestors[g.id] |= new
            for anc in self.ancestors.values():
                if g.id in anc:
                    anc |= new

    def producer_group(self, v: Value) -> Group | None:
        return self.group_of.get(v.producer) if v.producer is not None else None

    def would_cycle(self, g: Group, node: Node) -> bool:
        """Adding ``node`` to ``g`` makes g depend on the groups producing node's other inputs;
        that is a cycle if any of them depends on g."""
        for v in node.inputs:
            h = self.producer_group(v)
            if h is not None and h is not g and g.id in self.ancestors[h.id]:
                return True
        return False


def plan_graph(graph: Graph, device: Device, backends: list[Backend], options: dict | None = None) -> Plan:
    """Group, order and memory-plan ``graph`` for ``device``."""
    if device.capabilities.preferred_layout == "nhwc":
        channels_last(graph, lambda node: any(b.claims(node, graph) for b in backends))
    ensure_distinct_outputs(graph)
    rewrite_for_fusion(graph, device.capabilities)
    st = _State(graph, device, backends, graph.users())
    fusible = device.capabilities.fusible_ops
    for node in graph.nodes:
        if _writes_nothing(node):
            continue  # e.g. the copy of an empty graph output: no group, no kernel (see sol.passes.empty)
        cls = registry.layer_class(node)
        if node.op == "reshape":
            st.new_group(GroupKind.ALIAS, node, LayerClass.SHAPE)
        elif cls in _LIBRARY_CLASSES and (b := _claimant(st, node)) is not None:
            st.new_group(GroupKind.LIBRARY, node, cls, backend=b.name)
        elif cls is LayerClass.ORDER_CONSTRAINED:
            if node.op not in device.capabilities.recurrent_ops:
                raise _unsupported(node, device, backends)
            st.new_group(GroupKind.RECURRENT, node, cls)  # alone: its steps must run in order
        elif node.op not in fusible:
            raise _unsupported(node, device, backends)
        elif cls is LayerClass.ELEMENTWISE and _absorb(st, node):
            pass
        elif not _merge_into_producer(st, node):
            st.new_group(GroupKind.FUSED, node, cls)
    _merge_into_consumers(st)
    _absorb_unfused_epilogues(st)
    groups = _topological(st)
    for g in groups:
        _finish(st, g)
    memory = plan_memory(graph, groups)
    return Plan(graph, device.name, groups, memory, dict(options or {}))


def _writes_nothing(node: Node) -> bool:
    """All of the node's outputs are empty (a dimension of size 0): there is nothing to compute."""
    return bool(node.outputs) and all(v.type.numel == 0 for v in node.outputs)


def _claimant(st: _State, node: Node) -> Backend | None:
    for b in st.backends:
        if b.claims(node, st.graph):
            return b
    return None


def _unsupported(node: Node, device: Device, backends: list[Backend]) -> UnsupportedOpError:
    where = f" at {node.source}" if node.source else ""
    libs = ", ".join(b.name for b in backends) or "none"
    return UnsupportedOpError(
        f"op {node.op!r}{where} cannot run on device {device.name!r}: its templates do not "
        f"generate it and no library backend ({libs}) claims it with these attributes {node.attrs}",
        op=node.op, source=node.source)


def _leads_into_io(st: _State, node: Node) -> bool:
    """Does the single-reader element-wise chain starting at ``node`` feed a fusible I/O op?"""
    return _chain_io_op(st, node) is not None


def _chain_io_op(st: _State, node: Node) -> Node | None:
    """The fusible I/O op that the single-reader element-wise chain starting at ``node`` feeds."""
    fusible = st.device.capabilities.fusible_ops
    cur = node
    while True:
        readers = st.users.get(cur.output, [])
        if len(readers) != 1 or cur.output in st.graph.outputs:
            return None
        nxt = readers[0]
        cls = registry.layer_class(nxt)
        if cls is LayerClass.IO_BOUND:
            return nxt if nxt.op in fusible and registry.get(nxt.op).core_dims is not None else None
        if cls is not LayerClass.ELEMENTWISE:
            return None
        cur = nxt


def _absorb(st: _State, node: Node) -> bool:
    """Make ``node`` the next epilogue op of the library group whose result it reads."""
    for v in node.inputs:
        g = st.producer_group(v)
        if g is None or g.kind is not GroupKind.LIBRARY or g.nodes[-1].outputs[0] is not v:
            continue
        if len(st.users.get(v, [])) != 1 or v in st.graph.outputs:
            continue
        if node.output.shape != v.shape or st.would_cycle(g, node) or _leads_into_io(st, node):
            continue
        backend = next(b for b in st.backends if b.name == g.backend)
        if backend.absorbs(g.anchor, g.epilogue, node, st.graph):
            st.add(g, node)
            return True
    return False


def _merge_into_producer(st: _State, node: Node) -> bool:
    caps = st.device.capabilities
    want = max_depth(node)
    for v in node.inputs:
        g = st.producer_group(v)
        if g is None or g.kind is not GroupKind.FUSED or st.would_cycle(g, node):
            continue
        depth = min(st.depth[g.id], want)
        outer = g.nodes[0].outputs[0].shape[:depth]
        if depth < 1 or node.output.shape[:depth] != outer:
            continue
        inside = [u for u in node.inputs if st.producer_group(u) is g]
        if any(u.type.rank != node.output.type.rank or u.shape[:depth] != outer for u in inside):
            continue  # in-group operands must line up with the shared outer loops
        outer_size = math.prod(outer)
        has_io = any(registry.layer_class(n) is LayerClass.IO_BOUND for n in g.nodes + [node])
        if has_io and depth < st.depth[g.id] and outer_size < caps.min_parallel:
            continue  # would starve the cores
        scratch = sum(u.type.nbytes // outer_size for u in inside)
        if scratch > caps.local_bytes:
            continue
        st.depth[g.id] = depth
        st.add(g, node)
        return True
    return False


def _merge_into_consumers(st: _State) -> None:
    """Move each FUSED group whose values are read by one other FUSED group only (and are no
    graph outputs) into that group, latest first so that whole chains move, when the two share
    outer loops, the scratch budget allows and no path leads from one to the other through a
    third group (which would make a cycle). Emptied groups are dropped and ids renumbered."""
    caps = st.device.capabilities
    outputs = set(st.graph.outputs)
    for a in reversed(st.groups):
        if a.kind is not GroupKind.FUSED or not a.nodes:
            continue
        readers = [r for n in a.nodes for v in n.outputs for r in st.users.get(v, [])
                   if st.group_of[r] is not a]
        if not readers or any(v in outputs for n in a.nodes for v in n.outputs):
            continue
        b = st.group_of[readers[0]]
        if b.kind is not GroupKind.FUSED or any(st.group_of[r] is not b for r in readers):
            continue
        if any(x != a.id and a.id in st.ancestors[x] for x in st.ancestors[b.id]):
            continue  # b also reads a through another group
        depth = min(st.depth[a.id], st.depth[b.id])
        outer = b.nodes[0].outputs[0].shape[:depth]
        if depth < 1 or a.nodes[0].outputs[0].shape[:depth] != outer:
            continue
        crossing = list(dict.fromkeys(v for r in readers for v in r.inputs if st.producer_group(v) is a))
        if any(v.type.rank != r.outputs[0].type.rank or v.shape[:depth] != outer
               for r in readers for v in r.inputs if v in crossing):
            continue  # in-group operands must line up with the shared outer loops
        outer_size = math.prod(outer)
        shallower = depth < max(st.depth[a.id], st.depth[b.id])
        has_io = any(registry.layer_class(n) is LayerClass.IO_BOUND for n in a.nodes + b.nodes)
        if has_io and shallower and outer_size < caps.min_parallel:
            continue
        if sum(v.type.nbytes // outer_size for v in crossing) > caps.local_bytes:
            continue
        _absorb_group(st, a, b, depth)
    _drop_empty(st)


def _drop_empty(st: _State) -> None:
    """Drop emptied groups and renumber the rest (ancestors are not used after grouping)."""
    kept = [g for g in st.groups if g.nodes]
    st.depth = {i: st.depth[g.id] for i, g in enumerate(kept) if g.id in st.depth}
    st.ancestors = {i: set() for i in range(len(kept))}
    for i, g in enumerate(kept):
        g.id = i
    st.groups = kept


def _absorb_unfused_epilogues(st: _State) -> None:
    """Give a library the epilogue it was denied for a depth-first fusion that did not happen.

    ``_absorb`` leaves an element-wise chain out of a library call's epilogue when the chain leads
    into a fusible I/O op, so that the chain runs in that op's loops instead. Whether the I/O op
    joins is only known once grouping is done: a channel concat or a pooling whose per-iteration
    slice exceeds the scratch budget, or whose shallower loops would starve the cores, stays in a
    group of its own. The chain then runs as a loop nest of its own between the two, reading and
    writing a full-size tensor that the library could have produced with the chain applied as
    post-ops at no extra memory traffic. Here every such chain head is moved into its library
    group's epilogue (then the next one, now reading the epilogue's result), where the backend
    absorbs it and no cycle between groups forms.
    """
    moved = False
    for g in st.groups:
        if g.kind is not GroupKind.FUSED:
            continue
        while (found := _unfused_epilogue_step(st, g)) is not None:
            node, lib = found
            g.nodes.remove(node)
            lib.nodes.append(node)
            st.group_of[node] = lib
            moved = True
    if moved:
        _drop_empty(st)


def _unfused_epilogue_step(st: _State, g: Group) -> tuple[Node, Group] | None:
    """A node of FUSED group ``g`` that reads a library group's result, was kept out of its
    epilogue for an I/O op that ended up in another group, and can be absorbed now."""
    for node in g.nodes:
        if registry.layer_class(node) is not LayerClass.ELEMENTWISE:
            continue
        io = _chain_io_op(st, node)
        if io is None or st.group_of.get(io) is g:
            continue  # not deferred for an I/O op, or the fusion it was deferred for happened
        for v in node.inputs:
            lib = st.producer_group(v)
            if lib is None or lib.kind is not GroupKind.LIBRARY or lib.nodes[-1].outputs[0] is not v:
                continue
            if len(st.users.get(v, [])) != 1 or v in st.graph.outputs or node.output.shape != v.shape:
                continue
            if not _may_move(st, node, lib):
                continue
            backend = next(b for b in st.backends if b.name == lib.backend)
            if backend.absorbs(lib.anchor, lib.epilogue, node, st.graph):
                return node, lib
    return None


def _may_move(st: _State, node: Node, lib: Group) -> bool:
    """Moving ``node`` into ``lib`` makes lib read node's other operands: that closes a cycle if
    one of them comes from a group that depends on lib (such as the node's own fused group)."""
    return not any((h := st.producer_group(u)) is not None and h is not lib and _depends_on(st, h, lib)
                   for u in node.inputs)


def _depends_on(st: _State, start: Group, target: Group) -> bool:
    """Does ``start`` read, directly or through other groups, a value ``target`` produces?"""
    seen: set[int] = set()
    todo = [start]
    while todo:
        cur = todo.pop()
        for n in cur.nodes:
            for v in n.inputs:
                h = st.producer_group(v)
                if h is None or h is cur or id(h) in seen:
                    continue
                if h is target:
                    return True
                seen.add(id(h))
                todo.append(h)
    return False


def _absorb_group(st: _State, a: Group, b: Group, depth: int) -> None:
    """Put a's nodes in front of b's (b reads a, a nothing of b: still topological)."""
    b.nodes[:0] = a.nodes
    for n in a.nodes:
        st.group_of[n] = b
    a.nodes = []
    st.depth[b.id] = depth
    gained = (st.ancestors[b.id] | st.ancestors[a.id]) - {a.id, b.id}
    st.ancestors[b.id] = gained
    for anc in st.ancestors.values():
        if a.id in anc or b.id in anc:
            anc.discard(a.id)
            anc |= {b.id} | gained
    st.ancestors[a.id] = set()


def _topological(st: _State) -> list[Group]:
    order: list[Group] = []
    done: set[int] = set()
    deps = {g.id: {st.producer_group(v).id for n in g.nodes for v in n.inputs  # type: ignore[union-attr]
                   if st.producer_group(v) not in (None, g)} for g in st.groups}

    def visit(g: Group) -> None:
        if g.id in done:
            return
        done.add(g.id)
        for d in sorted(deps[g.id]):
            visit(st.groups[d])
        order.append(g)

    for g in st.groups:
        visit(g)
    # Renumber in execution order; per-group state keyed by id must follow.
    st.depth = {i: st.depth[g.id] for i, g in enumerate(order) if g.id in st.depth}
    for i, g in enumerate(order):
        g.id = i
    return order


def _finish(st: _State, g: Group) -> None:
    inside = {v for n in g.nodes for v in n.outputs}
    seen: set[Value] = set()
    for n in g.nodes:
        for v in n.inputs:
            if v not in inside and v not in seen:
                seen.add(v)
                g.inputs.append(v)
    for n in g.nodes:
        for v in n.outputs:
            outside = any(st.group_of.get(u) is not g for u in st.users.get(v, []))
            if outside or v in st.graph.outputs:
                g.outputs.append(v)
    if g.kind is GroupKind.RECURRENT:
        g.outputs = list(g.nodes[0].outputs)  # y, h_n, c_n all written, read later or not
        g.recurrent = recurrent_kernel(g.nodes[0])
    if g.kind is GroupKind.FUSED:
        g.kernel = build_kernel(g, st.depth[g.id], st.users, st.device.capabilities.local_bytes, set(g.outputs))
        g.layer_class = _dominant_class(g)
    if not g.outputs and g.kind is not GroupKind.ALIAS:
        g.outputs.append(g.nodes[-1].outputs[0])


def _dominant_class(g: Group) -> LayerClass:
    classes = [registry.layer_class(n) for n in g.nodes]
    return LayerClass.IO_BOUND if LayerClass.IO_BOUND in classes else classes[0]


def is_static(v: Value) -> bool:
    return v.kind in (ValueKind.PARAM, ValueKind.CONST)


def recurrent_kernel(node: Node) -> RecurrentKernel:
    """The loop over time of an ``lstm_recurrence``/``gru_recurrence`` node (inputs: gx, h0,
    [c0], w_hh, [b_hh]; outputs: y, h_n, [c_n])."""
    cell = node.op.split("_")[0]
    states = 2 if cell == "lstm" else 1
    gx, w_hh = node.inputs[0], node.inputs[1 + states]
    b_hh = node.inputs[2 + states] if len(node.inputs) > 2 + states else None
    steps, batch, width = gx.shape
    hidden = w_hh.shape[1]
    return RecurrentKernel(cell=cell, steps=steps, batch=batch, hidden=hidden, gates=width // hidden,
                           reverse=bool(node.attrs["reverse"]), gx=gx, h0=node.inputs[1],
                           c0=node.inputs[2] if states == 2 else None, w_hh=w_hh, b_hh=b_hh,
                           y=node.outputs[0], h_n=node.outputs[1], c_n=node.outputs[2] if states == 2 else None)
