"""Graph rewrites the planner makes before grouping, so that more of the graph fits shared loops.

Both are decided from the graph and the device's capabilities alone, like the grouping itself:

* **Recomputing free element-wise nodes.** An element-wise node that reads only values already
  in memory before the program runs (graph inputs, parameters, constants, reshapes of those:
  in a backward program, the saved activations and statistics), and other such nodes, depends
  on no group. Materializing it costs a full-size write and a read per reader group; computing
  it again in each reader's loop costs reading its operands there instead. It is cloned for
  each reader (when it is larger than the device's scratch budget, all its readers are
  fusible element-wise ops of its own shape and the clones read no more than the materialized
  value would cost) so that each clone can fuse into its reader's group:
  BatchNorm's backward reads ``x - mean`` twice, and no longer writes it.
* **Splitting channel reductions.** A ``sum``/``mean`` over axes that include the innermost
  ones and some outer ones (a per-channel sum over N, H, W) cannot share the loops of the
  element-wise chain producing its input: the kept channel is not an outer loop. Summed in two
  steps, first over the trailing axes (``keepdims``: one partial per (n, c), an I/O-bound op
  with the producer's outer loops) and then over the rest of that small tensor, the first step
  joins the producer's loop nest and the full-size input is never written for it.
"""

from __future__ import annotations

from sol.ir import Graph, Node, Value
from sol.ops.registry import LayerClass, registry
from sol.roles import DeviceCapabilities

_CHANNEL_REDUCTIONS = ("sum", "mean")


def rewrite_for_fusion(graph: Graph, caps: DeviceCapabilities) -> None:
    """Apply both rewrites to ``graph`` in place (a no-op when nothing qualifies)."""
    split_channel_reductions(graph, caps)
    recompute_free_elementwise(graph, caps)


def _is_elementwise(node: Node) -> bool:
    return node.op in registry and registry.layer_class(node) is LayerClass.ELEMENTWISE


def recompute_free_elementwise(graph: Graph, caps: DeviceCapabilities) -> int:
    """Clone each free element-wise node (see the module docstring) once per reader, each clone
    placed right before its reader; returns how many clones were made."""
    outputs = set(graph.outputs)
    free: set[Value] = set(graph.inputs) | set(graph.params) | set(graph.consts)
    free_nodes: set[Node] = set()
    for node in graph.nodes:
        if len(node.outputs) != 1 or not node.inputs or not all(v in free for v in node.inputs):
            continue
        if node.op == "reshape":
            free.add(node.output)
        elif _is_elementwise(node) and node.op in caps.fusible_ops:
            free.add(node.output)
            free_nodes.add(node)
    if not free_nodes:
        return 0
    users = graph.users()
    made = 0
    # Last first: a clone of a later node adds readers to the free nodes it reads, which are
    # then cloned for those readers too (a chain is recomputed whole in each reader group).
    for node in reversed(list(graph.nodes)):
        if node not in free_nodes:
            continue
        v = node.output
        readers = list(dict.fromkeys(users.get(v, [])))
        if len(readers) < 2 or v in outputs or v.type.nbytes <= caps.local_bytes:
            continue  # a value that fits the scratch budget stays in cache: writing it is cheap
        if not all(_is_elementwise(r) and r.op in caps.fusible_ops and r.outputs[0].shape == v.shape
                   for r in readers):
            continue  # a clone is worth it only where it can run in its reader's loops
        k = len(readers)
        in_bytes = sum(u.type.nbytes for u in dict.fromkeys(node.inputs))
        # k recomputations read k * in_bytes; materializing writes the value once, reads its
        # operands once and the value k times.
        if (k - 1) * in_bytes > (k + 1) * v.type.nbytes:
            continue
        for reader in readers[1:]:
            clone = Node(node.op, list(node.inputs), dict(node.attrs), node.source)
            out = Value(graph.fresh_name(), v.type, v.kind, producer=clone)
            clone.outputs = [out]
            clone.name = out.name
            graph.nodes.insert(graph.nodes.index(reader), clone)
            reader.inputs = [out if u is v else u for u in reader.inputs]
            users[out] = [reader]
            users[v] = [r for r in users[v] if r is not reader]
            for u in clone.inputs:
                users.setdefault(u, []).append(clone)
            made += 1
    return made


def split_channel_reductions(graph: Graph, caps: DeviceCapabilities) -> int:
    """Split ``sum``/``mean`` over (outer axes + a trailing run of axes) whose input an
    element-wise node produces into a reduction over the trailing run (kept dims) and one over
    the rest; returns how many were split."""
    made = 0
    for node in list(graph.nodes):
        if node.op not in _CHANNEL_REDUCTIONS or node.op not in caps.fusible_ops:
            continue
        x = node.inputs[0]
        producer = x.producer
        if producer is None or not _is_elementwise(producer) or producer.op not in caps.fusible_ops:
            continue
        rank, axes = x.type.rank, tuple(node.attrs["axes"])
        trailing: list[int] = []
        for ax in range(rank - 1, -1, -1):
            if ax not in axes:
                break
            trailing.insert(0, ax)
        if not trailing or len(trailing) == len(axes):
            continue  # nothing outer to keep apart, or no trailing run: one loop nest as it is
        outer = 1
        for d in x.shape[:trailing[0]]:
            outer *= d
        inner = 1
        for d in x.shape[trailing[0]:]:
            inner *= d
        if inner == 1 or outer < caps.min_parallel:
            continue  # the partial reduction would not feed enough outer iterations
        part = graph.add_node(node.op, [x], {"axes": tuple(trailing), "keepdims": True}, node.source)
        graph.nodes.remove(part)
        graph.nodes.insert(graph.nodes.index(node), part)
        # Same axes on the partial result: the trailing ones now have extent 1, so the output
        # (shape and keepdims) is unchanged; a mean of equal-sized means is the mean.
        node.inputs = [part.output] + node.inputs[1:]
        made += 1
    return made
