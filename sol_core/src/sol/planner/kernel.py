"""Build the depth-first loop nest of a FUSED group: shared outer loops, then stages.

Consecutive element-wise ops of one iteration shape become a single pointwise stage computed in
registers; each I/O-bound op is a stage of its own reading and writing memory. A value crosses
stages through per-iteration scratch (``locals``: the seed's ``float N[...]``), or through global
memory when a reader outside the group needs it anyway or the scratch budget is spent.
"""

from __future__ import annotations

from sol.ir import Node, Value
from sol.ops.registry import LayerClass, registry
from sol.planner.plan import FusedKernel, Group, Stage


def max_depth(node: Node) -> int:
    """How many leading output dims ``node`` leaves independent (the loops it can share)."""
    opdef = registry.get(node.op, node)
    rank = node.outputs[0].type.rank
    if opdef.layer_class is LayerClass.ELEMENTWISE:
        # Keep the innermost dim for the vectorized loop: an element-wise op could share every
        # loop, but a stage with an empty inner loop has nothing to vectorize.
        return max(rank - 1, 0) if rank > 1 else rank
    if opdef.core_dims is None:
        return 0
    return max(rank - opdef.core_dims(node), 0)


def build_kernel(group: Group, depth: int, users: dict[Value, list[Node]], local_bytes: int,
                 global_values: set[Value]) -> FusedKernel:
    outer = group.nodes[0].outputs[0].shape[:depth]
    stages: list[Stage] = []
    current: Stage | None = None
    stage_of: dict[Value, Stage] = {}
    for node in group.nodes:
        shape = node.outputs[0].shape[depth:]
        if registry.layer_class(node) is LayerClass.ELEMENTWISE:
            if current is None or current.shape != shape:
                current = Stage("pointwise", [], shape)
                stages.append(current)
            current.nodes.append(node)
            stage = current
        else:
            current = None
            stage = Stage("op", [node], shape)
            stages.append(stage)
        for v in node.outputs:
            stage_of[v] = stage

    in_group = set(group.nodes)
    locals_: dict[Value, int] = {}
    for stage in stages:
        for node in stage.nodes:
            for v in node.outputs:
                readers = [u for u in users.get(v, []) if u in in_group]
                crosses = any(stage_of[r.outputs[0]] is not stage or stage.kind == "op" or
                              registry.layer_class(r) is not LayerClass.ELEMENTWISE for r in readers)
                if v in global_values or crosses or stage.kind == "op":
                    stage.stores.append(v)
                    if v not in global_values:
                        locals_[v] = _inner_numel(v, depth)
            for v in node.inputs:
                if stage_of.get(v) is not stage and v not in stage.loads:
                    stage.loads.append(v)
    _fit_budget(locals_, local_bytes, group, global_values)
    return FusedKernel(depth, outer, stages, locals_)


def _inner_numel(v: Value, depth: int) -> int:
    n = 1
    for d in v.shape[depth:]:
        n *= d
    return n


def _fit_budget(locals_: dict[Value, int], budget: int, group: Group, global_values: set[Value]) -> None:
    """Spill the largest scratch values to global memory until the rest fits the budget."""
    def used() -> int:
        return sum(n * v.type.itemsize for v, n in locals_.items())

    for v in sorted(locals_, key=lambda v: -locals_[v]):
        if used() <= budget:
            break
        del locals_[v]
        global_values.add(v)
        group.outputs.append(v)
