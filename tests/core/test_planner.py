"""The planner: layer classes, depth-first fusion, library epilogues, memory reuse, explain."""

from __future__ import annotations

import numpy as np
import pytest

from sol.debug import run_reference
from sol.explanation import Explanation
from sol.ir import Graph, TensorType
from sol.ops.registry import LayerClass
from sol.planner.partition import plan_graph
from sol.planner.plan import GroupKind, Plan, Storage
from sol.plugins import roles
from sol.roles import Backend

from graphs import branchy, conv_bn_relu_pool, randn, seed_net
from interpreter_device import InterpreterDevice, run_plan

EPILOGUE = {"add", "relu", "sigmoid", "tanh", "clamp", "mul"}


class ToyLibrary(Backend):
    """Claims conv2d/dense/matmul; absorbs element-wise ops of the same shape or per-channel."""

    name, device = "toylib", "interp"

    def claims(self, node, graph):  # type: ignore[no-untyped-def]
        return node.op in ("conv2d", "dense", "matmul")

    def absorbs(self, anchor, chain, node, graph):  # type: ignore[no-untyped-def]
        return node.op in EPILOGUE


def _plan(g: Graph, local_bytes: int = 1 << 20, library: bool = True) -> Plan:
    roles().passes.run(g)
    return plan_graph(g, InterpreterDevice(local_bytes), [ToyLibrary()] if library else [])


def _check_numerics(g: Graph, plan: Plan) -> None:
    xs = [randn(*v.shape) for v in g.inputs]
    want = run_reference(g, xs)
    got = run_plan(plan, xs)
    for w, o in zip(want, got):
        np.testing.assert_allclose(o, w, rtol=1e-5, atol=1e-6)


def test_seed_network_bias_relu_pool_in_one_depth_first_group() -> None:
    g = seed_net()
    plan = _plan(g)
    kinds = [(grp.kind, [n.op for n in grp.nodes]) for grp in plan.groups]
    assert kinds == [(GroupKind.LIBRARY, ["conv2d"]), (GroupKind.FUSED, ["add", "relu", "avg_pool2d"])]
    fused = plan.groups[1]
    assert fused.layer_class is LayerClass.IO_BOUND
    assert fused.kernel is not None and fused.kernel.depth == 2 and fused.kernel.outer_shape == (2, 1000)
    assert [s.kind for s in fused.kernel.stages] == ["pointwise", "op"]
    # ReLU's result lives in per-(batch, channel) scratch: 13*13 floats, never in global memory.
    relu_out = fused.nodes[1].output
    assert fused.kernel.locals == {relu_out: 169}
    _check_numerics(g, plan)


def test_epilogue_absorbed_when_no_io_op_follows() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((2, 8)))
    y = g.add_node("dense", [x, g.add_param("w", randn(4, 8)), g.add_param("b", randn(4))]).output
    g.outputs = [g.add_node("relu", [y]).output]
    plan = _plan(g)
    assert [(grp.kind, [n.op for n in grp.nodes]) for grp in plan.groups] == [
        (GroupKind.LIBRARY, ["dense", "add", "relu"])]
    _check_numerics(g, plan)


def test_conv_bn_relu_pool_reshape() -> None:
    g = conv_bn_relu_pool()
    plan = _plan(g)
    assert [grp.kind for grp in plan.groups] == [GroupKind.LIBRARY, GroupKind.FUSED, GroupKind.ALIAS]
    _check_numerics(g, plan)


@pytest.mark.parametrize("local_bytes", [1 << 20, 64], ids=["scratch", "tiny-scratch-spills"])
def test_branches_concat_softmax_reductions(local_bytes: int) -> None:
    g = branchy()
    plan = _plan(g, local_bytes, library=False)
    _check_numerics(g, plan)
    if local_bytes == 64:
        assert all(grp.kernel.local_bytes() <= 64 for grp in plan.groups if grp.kernel)


def test_memory_plan_reuses_dead_buffers_and_never_overlaps_live_ones() -> None:
    g = Graph("chain")
    x = g.add_input("x", TensorType((4, 16, 32, 32)))
    y = x
    for i in range(6):  # softmax over axis 0 shares no loop with anything: a chain of groups
        y = g.add_node("softmax", [y], {"axis": 0}).output
        y = g.add_node("sigmoid" if i % 2 else "tanh", [y]).output
    g.outputs = [y]
    plan = _plan(g, library=False)
    assert plan.memory.arena_bytes < plan.memory.naive_bytes
    _check_numerics(g, plan)
    # No two arena values that are live at the same time share bytes.
    order = {grp.id: i for i, grp in enumerate(plan.groups)}
    live = {}
    for grp in plan.groups:
        for v in grp.outputs:
            slot = plan.memory.slots[v]
            if slot.storage is Storage.ARENA:
                readers = [order[h.id] for h in plan.groups if v in h.inputs]
                live[v] = (order[grp.id], max(readers, default=order[grp.id]), slot.index, v.type.nbytes)
    items = list(live.values())
    for i, (f1, l1, o1, s1) in enumerate(items):
        for f2, l2, o2, s2 in items[i + 1:]:
            if not (l1 < f2 or l2 < f1):
                assert o1 + s1 <= o2 or o2 + s2 <= o1


def test_groups_never_form_a_cycle() -> None:
    # relu -> pool, and relu -> sigmoid -> (needs pool result): merging sigmoid's add into the
    # first group would need the pool group's output inside it.
    g = Graph()
    x = g.add_input("x", TensorType((2, 3, 4, 4)))
    a = g.add_node("relu", [x]).output
    p = g.add_node("adaptive_avg_pool2d", [a], {"output_size": (1, 1)}).output
    s = g.add_node("sigmoid", [p]).output
    g.outputs = [g.add_node("mul", [a, s]).output]
    plan = _plan(g, library=False)
    _check_numerics(g, plan)


def test_no_cycle_through_a_group_that_gained_a_producer_after_being_read() -> None:
    # The shape of a BatchNorm backward: the per-channel group P is read (through a reshape)
    # before it takes a node depending on sum(a); a later node of a's group that reads the
    # reshape must not join a's group, which would then wait for itself.
    g = Graph()
    x = g.add_input("x", TensorType((2, 3, 4, 4)))
    y = g.add_input("y", TensorType((3,)))
    a = g.add_node("mul", [x, x]).output
    s = g.add_node("sum", [a], {"axes": (0, 2, 3), "keepdims": False}).output
    p = g.add_node("add", [y, g.add_const(np.float32(1.0))]).output
    r = g.add_node("reshape", [p], {"shape": (3, 1, 1)}).output
    q = g.add_node("mul", [p, s]).output
    g.outputs = [g.add_node("mul", [a, r]).output, q]
    plan = _plan(g, library=False)
    produced: set = set(g.inputs) | set(g.consts)
    for grp in plan.groups:
        assert all(v in produced for v in grp.inputs), f"{grp.label} runs before its inputs exist"
        produced.update(grp.outputs)
        produced.update(v for n in grp.nodes for v in n.outputs)
    _check_numerics(g, plan)


def test_op_no_device_can_run_names_op_and_source() -> None:
    from sol.errors import UnsupportedOpError

    class NoPool(InterpreterDevice):
        pass

    dev = NoPool()
    object.__setattr__(dev, "_caps", type(dev.capabilities)(1, frozenset({"relu"})))
    g = Graph()
    x = g.add_input("x", TensorType((1, 1, 4, 4)))
    g.outputs = [g.add_node("max_pool2d", [x], {"kernel": 2}, source="model.pool (net.py:12)").output]
    with pytest.raises(UnsupportedOpError, match=r"max_pool2d.*model.pool \(net.py:12\).*'interp'"):
        plan_graph(g, dev, [])


def test_explain_lists_groups_classes_and_libraries() -> None:
    text = str(Explanation(_plan(seed_net())))
    assert "library toylib" in text and "compute bound" in text
    assert "generated loop nest, depth-first over 2x1000" in text and "avg_pool2d" in text
    assert "digraph" in Explanation(_plan(seed_net())).dot()


def test_dot_keeps_hostile_value_names_inside_labels() -> None:
    """Graph input names come from the model (a forward argument's name): in DOT they are only
    escaped label text, never node ids or statements."""
    g = Graph("hostile")
    x = g.add_input('x"];\n evil [label="pwn', TensorType((1, 3, 4, 4)))
    g.outputs = [g.add_node("relu", [x]).output]
    dot = Explanation(_plan(g)).dot()
    assert not any(line.strip().startswith("evil") for line in dot.splitlines())
    for line in dot.splitlines():
        unescaped = line.replace('\\"', "")
        assert unescaped.count('"') % 2 == 0, line


def test_fused_depth_never_exceeds_what_an_op_allows() -> None:
    """Groups are renumbered into execution order after partitioning; every fused kernel's depth
    must still be the one its own ops allow (a concat along axis 1 shares only the batch loop)."""
    from sol.planner.kernel import max_depth

    g = Graph("concat_after_pointwise")
    a = g.add_input("a", TensorType((2, 3, 4, 4)))
    b = g.add_input("b", TensorType((2, 5, 4, 4)))
    c = g.add_input("c", TensorType((2, 6)))
    ea = g.add_node("mul", [a, g.add_const(np.float32(2.0))]).output
    eb = g.add_node("relu", [b]).output
    ec = g.add_node("tanh", [c]).output  # an unrelated group created before the concat's
    g.outputs = [g.add_node("concat", [ea, eb], {"axis": 1}).output, ec]
    plan = _plan(g, library=False)
    for grp in plan.groups:
        if grp.kernel is None:
            continue
        for n in grp.nodes:
            assert grp.kernel.depth <= max_depth(n), (grp.label, n.op, grp.kernel.depth)
            assert n.outputs[0].shape[:grp.kernel.depth] == grp.kernel.outer_shape
    _check_numerics(g, plan)


def _batchnorm_backward_shape() -> tuple[Graph, dict]:
    """BatchNorm's training backward in miniature: the centred input x - mean is computed from
    saved values only and read twice (by g * centred, summed per channel, and by centred * slope,
    the slope coming from that sum); dx = g * w + centred * slope."""
    g = Graph("bn_backward")
    x = g.add_input("x", TensorType((2, 4, 8, 8)))
    mean = g.add_input("mean", TensorType((4,)))
    go = g.add_input("go", TensorType((2, 4, 8, 8)))
    grad = g.add_node("mul", [go, g.add_node("relu", [x]).output]).output
    centred = g.add_node("sub", [x, g.add_node("reshape", [mean], {"shape": (4, 1, 1)}).output]).output
    gc = g.add_node("sum", [g.add_node("mul", [grad, centred]).output], {"axes": (0, 2, 3), "keepdims": False}).output
    slope = g.add_node("mul", [gc, g.add_const(np.float32(-1.0 / 128))]).output
    t = g.add_node("mul", [centred, g.add_node("reshape", [slope], {"shape": (4, 1, 1)}).output]).output
    dx = g.add_node("add", [g.add_node("mul", [grad, g.add_const(np.float32(0.5))]).output, t]).output
    g.outputs = [dx, gc]
    return g, {"dx": dx, "grad": grad}


def test_saved_value_chain_and_channel_sum_join_their_consumers_loops() -> None:
    """Issue #7: an element-wise node over saved values only (x - mean) is recomputed in each
    group that reads it instead of being written as a full-size tensor, the chain it starts joins
    its reader's group, and the per-channel sum shares the loops of the chain producing its input
    (summed per (n, c) inside them, then over n): the only full-size tensors written are dx and
    the gradient both of dx's group and the sum's group read."""
    g, v = _batchnorm_backward_shape()
    plan = _plan(g, local_bytes=1024, library=False)  # x - mean (2 KiB) would not stay in cache
    full = (2, 4, 8, 8)
    written = {out for grp in plan.groups for out in grp.outputs if out.shape == full}
    assert written <= {v["dx"], v["grad"]}, sorted(out.producer.op for out in written)
    for grp in plan.groups:  # every clone of x - mean sits with the node that reads it
        for n in grp.nodes:
            if n.op == "sub":
                assert all(plan.group_of(r) is grp for r in g.nodes if n.output in r.inputs)
    sums = [n for n in g.nodes if n.op == "sum"]
    assert any(n.attrs["axes"] == (2, 3) and plan.group_of(n).kernel.depth == 2 for n in sums)
    _check_numerics(g, plan)
