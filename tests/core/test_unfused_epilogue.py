"""The planner gives a library call the epilogue it held back for a depth-first fusion with an
I/O op (concat, pooling) whenever that fusion does not happen, and only then."""

from __future__ import annotations

import numpy as np

from sol.debug import run_reference
from sol.ir import Graph, TensorType, Value
from sol.planner.partition import plan_graph
from sol.planner.plan import GroupKind, Plan
from sol.roles import Backend

from graphs import randn
from interpreter_device import InterpreterDevice, run_plan


class _Library(Backend):
    """Runs conv2d; absorbs per-channel adds and relu/sigmoid/tanh, nothing else."""

    name, device = "eplib", "interp"

    def claims(self, node, graph):  # type: ignore[no-untyped-def]
        return node.op == "conv2d"

    def absorbs(self, anchor, chain, node, graph):  # type: ignore[no-untyped-def]
        return node.op in ("add", "relu", "sigmoid", "tanh")


def _conv(g: Graph, x: Value, c_out: int, name: str) -> Value:
    """conv2d 3x3 (same size) + per-channel bias, as frontends import it."""
    w = g.add_param(f"{name}.w", randn(c_out, x.shape[1], 3, 3) * 0.3)
    b = g.add_param(f"{name}.b", randn(c_out, 1, 1))
    y = g.add_node("conv2d", [x, w], {"padding": 1}).output
    return g.add_node("add", [y, b]).output


def fire(n: int = 1, c: int = 5, hw: int = 6) -> Graph:
    """Two convolutions with different epilogues (bias+relu, bias+sigmoid+tanh) concatenated on
    the channel axis, then a pooling that fuses with the concat's reader, not with the convs."""
    g = Graph("fire")
    x = g.add_input("x", TensorType((n, 3, hw, hw)))
    a = g.add_node("relu", [_conv(g, x, c, "a")]).output
    b = g.add_node("tanh", [g.add_node("sigmoid", [_conv(g, x, c + 2, "b")]).output]).output
    y = g.add_node("concat", [a, b], {"axis": 1}).output
    g.outputs = [g.add_node("max_pool2d", [y], {"kernel": 2}).output]
    return g


def _plan(g: Graph, local_bytes: int) -> Plan:
    return plan_graph(g, InterpreterDevice(local_bytes), [_Library()])


def _shape(plan: Plan) -> list[tuple[GroupKind, list[str]]]:
    return [(grp.kind, [n.op for n in grp.nodes]) for grp in plan.groups]


def _check_numerics(g: Graph, plan: Plan) -> None:
    xs = [randn(*v.shape) for v in g.inputs]
    x = xs[0]
    x[0, 0, 0, :3] = np.nan  # NaN must flow through wherever the epilogue runs
    for want, got in zip(run_reference(g, xs), run_plan(plan, xs)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_epilogues_absorbed_when_the_concat_does_not_fuse() -> None:
    # 64 bytes of scratch: no per-batch slice of a branch fits, so the concat cannot share the
    # chains' loops. Before, each chain was left as a loop nest of its own anyway.
    for n in (1, 3):
        g = fire(n)
        plan = _plan(g, local_bytes=64)
        kinds = _shape(plan)
        assert kinds[:2] == [
            (GroupKind.LIBRARY, ["conv2d", "add", "relu"]),
            (GroupKind.LIBRARY, ["conv2d", "add", "sigmoid", "tanh"]),
        ]
        assert [op for _, ops in kinds[2:] for op in ops] == ["concat", "max_pool2d"]
        _check_numerics(g, plan)


def test_epilogues_kept_for_the_concat_when_it_fuses() -> None:
    # Enough scratch: the chains run depth-first with the concat (the seed's conv -> [bias,
    # ReLU, pool] kernel), as before; nothing is moved back into the libraries.
    g = fire(3)
    plan = _plan(g, local_bytes=1 << 20)
    kinds = _shape(plan)
    assert kinds[:2] == [(GroupKind.LIBRARY, ["conv2d"]), (GroupKind.LIBRARY, ["conv2d"])]
    assert sorted(op for _, ops in kinds[2:] for op in ops) == sorted(
        ["add", "relu", "add", "sigmoid", "tanh", "concat", "max_pool2d"])
    _check_numerics(g, plan)


def test_chain_reading_its_own_group_stays_there() -> None:
    # The chain's add also reads a value computed in the chain's own group (an avg-pool branch
    # that the add joined): moving the add into the convolution's epilogue would make the library
    # call read that group, which reads the library call: a cycle. It stays where it is.
    g = Graph("cycle")
    x = g.add_input("x", TensorType((1, 4, 6, 6)))
    c = g.add_node("conv2d", [x, g.add_param("w", randn(4, 4, 3, 3) * 0.3)], {"padding": 1}).output
    u = g.add_node("avg_pool2d", [x], {"kernel": 3, "stride": 1, "padding": 1}).output
    u = g.add_node("relu", [u]).output
    s = g.add_node("relu", [g.add_node("add", [c, u]).output]).output
    y = g.add_node("concat", [s, x], {"axis": 1}).output
    g.outputs = [g.add_node("max_pool2d", [y], {"kernel": 2}).output]
    plan = _plan(g, local_bytes=64)
    conv_group = next(grp for grp in plan.groups if grp.kind is GroupKind.LIBRARY)
    assert [n.op for n in conv_group.nodes] == ["conv2d"]
    _check_numerics(g, plan)
