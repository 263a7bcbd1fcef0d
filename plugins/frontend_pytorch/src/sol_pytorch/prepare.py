"""Getting an exported graph ready for conversion without tracing it again where that can be
avoided. ``ExportedProgram.run_decompositions`` re-traces the whole model (about a second for a
BERT- or ResNet-sized network, a fifth of a cold compile), so two cheap paths come first:

* an in-place op on a tensor the graph itself made (torchvision's ``ReLU(inplace=True)``, a
  residual ``out += identity``) becomes its out-of-place twin, and the later readers of the
  updated tensor read the twin's result: what functionalization does, for the simple case where
  no view aliases the updated tensor;
* an op sol has no converter for whose inputs are all such folded constants (the ``arange``,
  ``new_ones``, ``diff`` of transformers' mask builders with no mask given) needs no
  decomposition: the importer runs it once in PyTorch and keeps its value
  (``Importer._fold``).

Anything else (an input or a view updated in place, an unknown op on run-time values) takes
``run_decompositions`` as before.
"""

from __future__ import annotations

from collections.abc import Container, Iterator

import torch
from torch import fx

_SEEDED = torch.Tag.nondeterministic_seeded


def calls(graph: fx.Graph) -> Iterator[fx.Node]:
    return (n for n in graph.nodes if n.op == "call_function")


def mutates(node: fx.Node) -> bool:
    return isinstance(node.target, torch._ops.OpOverload) and (node.target._schema.is_mutable
                                                                 or _updates_running_stats(node))


_UNMARKED_UPDATES = {"aten::batch_norm": 5, "aten::native_batch_norm": 5}
"""Ops whose schema marks no argument written although, with ``training`` (the argument at the
given position) true, they update the running statistics they are given in place; functionalizing
(``run_decompositions``) turns each into ``_native_batch_norm_legit_functional`` and the updates
into input or buffer updates, so that sol writes them back as eager does."""


def _updates_running_stats(node: fx.Node) -> bool:
    schema = node.target._schema  # type: ignore[union-attr]
    position = _UNMARKED_UPDATES.get(schema.name)
    if position is None or schema.overload_name:
        return False
    args = list(node.args) + [node.kwargs.get(a.name) for a in schema.arguments[len(node.args):]]
    training, running = args[position], args[3:5]
    return bool(training) and any(r is not None for r in running)


def _aliases(target: torch._ops.OpOverload) -> bool:
    """Whether an op's result may share memory with an argument (views, in-place ops)."""
    schema = target._schema
    return schema.is_mutable or any(r.alias_info is not None for r in schema.returns)


def _out_of_place(target: torch._ops.OpOverload) -> torch._ops.OpOverload | None:
    """``aten.relu.default`` for ``aten.relu_.default``: the twin with the same arguments whose only
    difference is that it returns a new tensor; None where there is no such twin."""
    schema = target._schema
    packet_name = schema.name.split("::")[-1]
    if not packet_name.endswith("_") or packet_name.endswith("__"):
        return None
    written = [i for i, a in enumerate(schema.arguments) if a.alias_info is not None and a.alias_info.is_write]
    if written != [0] or len(schema.returns) != 1:
        return None
    packet = getattr(torch.ops.aten, packet_name[:-1], None)
    twin = getattr(packet, schema.overload_name or "default", None) if packet is not None else None
    if not isinstance(twin, torch._ops.OpOverload) or _aliases(twin):
        return None
    if [a.name for a in twin._schema.arguments] != [a.name for a in schema.arguments]:
        return None
    return twin


def _fresh(node: object) -> bool:
    """A tensor no other tensor can alias: made by an op that returns new memory."""
    return (isinstance(node, fx.Node) and node.op == "call_function"
            and isinstance(node.target, torch._ops.OpOverload) and not _aliases(node.target))


def functionalize_simple(graph: fx.Graph) -> bool:
    """Rewrite every in-place op of ``graph`` as its out-of-place twin when that is exact (see the
    module docstring); True when no in-place op is left. On False the graph is unchanged."""
    order = {n: i for i, n in enumerate(graph.nodes)}
    plan: list[tuple[fx.Node, torch._ops.OpOverload]] = []
    rewritten: set[fx.Node] = set()
    for node in calls(graph):
        if not mutates(node):
            continue
        twin = _out_of_place(node.target)  # type: ignore[arg-type]
        target = node.args[0] if node.args else None
        if twin is None or not isinstance(target, fx.Node) or not (_fresh(target) or target in rewritten):
            return False
        for user in target.users:
            if user is node:
                continue
            if user.op == "output":
                return False  # the graph signature names the updated tensor: keep the general path
            if order[user] < order[node] and user.op == "call_function" and isinstance(
                    user.target, torch._ops.OpOverload) and _aliases(user.target):
                return False  # a view taken before the update would see it
        plan.append((node, twin))
        rewritten.add(node)
    for node, twin in plan:
        target = node.args[0]
        assert isinstance(target, fx.Node)
        for user in list(target.users):
            if user is not node and order[user] > order[node]:
                user.replace_input_with(target, node)
        node.target = twin
    return True


def unknown_ops(graph: fx.Graph, known: Container[str]) -> set[torch._ops.OpOverload]:
    """The ATen ops of ``graph`` no converter takes (``known`` holds the converted names) and the
    importer cannot fold either: what decomposing is for. The importer folds an unknown op whose
    inputs are all folded values themselves (a converted op makes a graph value, not a constant:
    its readers are not folded), deterministic, not in place."""
    folded: set[fx.Node] = set()
    unknown: set[torch._ops.OpOverload] = set()
    for node in calls(graph):
        target = node.target
        if not isinstance(target, torch._ops.OpOverload) or str(target) in known:
            continue
        if _SEEDED not in target.tags and not target._schema.is_mutable and all(
                n in folded for n in node.all_input_nodes):
            folded.add(node)
        else:
            unknown.add(target)
    return unknown
