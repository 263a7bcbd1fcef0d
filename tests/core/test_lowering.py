"""Loop lowering shared by C-family devices: strides, broadcast, dimension merging, scratch."""

from __future__ import annotations

import numpy as np

from sol.ir import Graph, TensorType
from sol.lowering import GroupLowering, contiguous_strides
from sol.planner.partition import plan_graph
from sol.plugins import roles
from sol.roles import Backend

from graphs import randn, seed_net
from interpreter_device import InterpreterDevice


class ConvLibrary(Backend):
    name, device = "convlib", "interp"

    def claims(self, node, graph):  # type: ignore[no-untyped-def]
        return node.op == "conv2d"


def _lower(g: Graph):  # type: ignore[no-untyped-def]
    roles().passes.run(g)
    plan = plan_graph(g, InterpreterDevice(), [ConvLibrary()])
    fused = [grp for grp in plan.groups if grp.kernel is not None]
    names = {v: f"v{i}" for i, v in enumerate(g.values())}
    ew = lambda node, args, ct: f"{node.op}({', '.join(args)})"  # noqa: E731
    return [GroupLowering(grp, names.__getitem__, ew, lambda i, n: f"// #{i} {n.op}").lower() for grp in fused]


def test_strides_broadcast_right_aligned() -> None:
    assert contiguous_strides((2, 3, 4), 3) == [12, 4, 1]
    assert contiguous_strides((3, 1, 1), 4) == [0, 1, 0, 0]
    assert contiguous_strides((), 2) == [0, 0]


def test_pure_pointwise_chain_is_one_flat_parallel_loop() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((2, 3, 4, 5)))
    y = g.add_node("relu", [x]).output
    g.outputs = [g.add_node("mul", [y, g.add_const(np.float32(2.0))]).output]
    (k,) = _lower(g)
    (stage,) = k.stages
    assert [lp.extent for lp in stage.loops] == [120] and stage.parallel and stage.work == 120
    assert k.outer_size == 1 and not k.locals


def test_per_channel_operand_keeps_channel_loop_and_merges_the_rest() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((2, 3, 4, 5)))
    g.outputs = [g.add_node("add", [x, g.add_param("b", randn(3, 1, 1))]).output]
    (k,) = _lower(g)
    loops = [lp.extent for lp in k.stages[0].loops]
    assert loops == [2, 3, 20]  # batch, channel (the bias changes), then H*W merged
    # The bias is indexed by the channel loop alone; the input walks all three loops.
    assert "add(v0[i0 * 60 + i1 * 20 + i2], v1[i1])" in k.stages[0].statements[0]


def test_seed_group_keeps_relu_plane_in_scratch() -> None:
    lowered = _lower(seed_net())
    (k,) = lowered
    assert k.outer == [2, 1000] and k.parallel_outer
    assert [(ct, n) for ct, _, n in k.locals] == [("float", 169)]
    assert [getattr(s, "op", "pointwise") for s in k.stages] == ["pointwise", "pool"]
