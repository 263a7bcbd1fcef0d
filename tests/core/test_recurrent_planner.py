"""Recurrent layers in core: the ops' shape rules and references, the pass that hoists the input
projection, and the planner's RECURRENT groups (run by the NumPy interpreter device, which keeps
every tensor at its planned place in one arena: a wrong memory plan gives wrong numbers)."""

from __future__ import annotations

import numpy as np
import pytest

from sol.debug import run_reference
from sol.errors import SolError, UnsupportedOpError
from sol.ir import Graph, TensorType
from sol.ops import recurrent
from sol.ops.registry import LayerClass, registry
from sol.planner.partition import plan_graph
from sol.planner.plan import GroupKind
from sol.plugins import roles
from sol.roles import Backend

from interpreter_device import InterpreterDevice, run_plan

rng = np.random.default_rng(3)


class DenseLibrary(Backend):
    name, device = "denselib", "interp"

    def claims(self, node, graph):  # type: ignore[no-untyped-def]
        return node.op == "dense"

    def absorbs(self, anchor, chain, node, graph):  # type: ignore[no-untyped-def]
        return node.op == "add"


def _stack(cell: str, layers: int = 2, steps: int = 5, batch: int = 2, size: int = 6, hidden: int = 7) -> Graph:
    """``layers`` layers of ``cell``, each reading the previous one's y; every output returned."""
    gates = recurrent.GATES[cell]
    g = Graph(f"{cell}_stack")
    x = g.add_input("x", TensorType((steps, batch, size)))
    for layer in range(layers):
        ins = [x, g.add_input(f"h{layer}", TensorType((batch, hidden)))]
        if cell == "lstm":
            ins.append(g.add_input(f"c{layer}", TensorType((batch, hidden))))
        for name, shape in (("w_ih", (gates * hidden, x.shape[2])), ("w_hh", (gates * hidden, hidden)),
                            ("b_ih", (gates * hidden,)), ("b_hh", (gates * hidden,))):
            ins.append(g.add_param(f"{name}{layer}", rng.uniform(-0.5, 0.5, shape).astype(np.float32)))
        node = g.add_node(cell, ins, {"reverse": layer % 2 == 1})
        g.outputs.extend(node.outputs[1:])
        x = node.outputs[0]
    g.outputs.append(x)
    return g


def _feeds(g: Graph) -> list[np.ndarray]:
    return [rng.standard_normal(v.shape).astype(np.float32) for v in g.inputs]


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def test_lstm_reference_is_pytorchs_cell() -> None:
    """One step written out independently: gates i, f, g, o; c = f c + i g; h = o tanh(c)."""
    x, h0, c0 = (rng.standard_normal(s) for s in ((1, 2, 3), (2, 4), (2, 4)))
    w_ih, w_hh, b_ih, b_hh = (rng.standard_normal(s) for s in ((16, 3), (16, 4), (16,), (16,)))
    y, h, c = registry.get("lstm").reference([x, h0, c0, w_ih, w_hh, b_ih, b_hh], {"reverse": False})
    gates = x[0] @ w_ih.T + b_ih + h0 @ w_hh.T + b_hh
    i, f, gg, o = _sigmoid(gates[:, :4]), _sigmoid(gates[:, 4:8]), np.tanh(gates[:, 8:12]), _sigmoid(gates[:, 12:])
    want_c = f * c0 + i * gg
    np.testing.assert_allclose(c, want_c)
    np.testing.assert_allclose(h, o * np.tanh(want_c))
    np.testing.assert_allclose(y[0], h)


def test_gru_reference_keeps_b_hn_inside_the_reset_product() -> None:
    x, h0 = rng.standard_normal((1, 2, 3)), rng.standard_normal((2, 4))
    w_ih, w_hh, b_ih, b_hh = (rng.standard_normal(s) for s in ((12, 3), (12, 4), (12,), (12,)))
    _, h = registry.get("gru").reference([x, h0, w_ih, w_hh, b_ih, b_hh], {"reverse": False})
    gx, gh = x[0] @ w_ih.T + b_ih, h0 @ w_hh.T + b_hh
    r, z = _sigmoid(gx[:, :4] + gh[:, :4]), _sigmoid(gx[:, 4:8] + gh[:, 4:8])
    n = np.tanh(gx[:, 8:] + r * gh[:, 8:])
    np.testing.assert_allclose(h, (1 - z) * n + z * h0)


def test_reverse_runs_backwards_in_time() -> None:
    x = rng.standard_normal((4, 1, 3)).astype(np.float32)
    args = [x, np.zeros((1, 5), np.float32), rng.standard_normal((15, 3)), rng.standard_normal((15, 5))]
    fwd = registry.get("gru").reference(args, {"reverse": False})
    bwd = registry.get("gru").reference([x[::-1].copy(), *args[1:]], {"reverse": True})
    np.testing.assert_allclose(bwd[0][::-1], fwd[0], rtol=1e-6)  # y[t] belongs to input step t
    np.testing.assert_allclose(bwd[1], fwd[1], rtol=1e-6)


@pytest.mark.parametrize(("inputs", "message"), [
    ([(5, 2, 6), (2, 7), (2, 7), (28, 6), (27, 7)], r"w_hh must be \(4\*H, H\)"),
    ([(5, 2, 6), (2, 7), (2, 7), (28, 5), (28, 7)], r"w_ih must have shape \(28, 6\)"),
    ([(5, 2, 6), (2, 7), (2, 7), (28, 6), (28, 7), (28,)], "both biases"),
    ([(5, 2, 6), (3, 7), (2, 7), (28, 6), (28, 7)], r"initial state 0 must have shape \(2, 7\)"),
])
def test_shape_rule_errors(inputs: list[tuple[int, ...]], message: str) -> None:
    g = Graph()
    vs = [g.add_input(f"i{k}", TensorType(s)) for k, s in enumerate(inputs)]
    with pytest.raises(SolError, match=message):
        g.add_node("lstm", vs)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_passes_hoist_the_projection_and_the_plan_runs(cell: str) -> None:
    g = _stack(cell)
    xs = _feeds(g)
    want = run_reference(g, xs)
    roles().passes.run(g)
    ops = [n.op for n in g.nodes]
    assert ops.count("dense") == 2 and ops.count(f"{cell}_recurrence") == 2 and cell not in ops
    plan = plan_graph(g, InterpreterDevice(), [DenseLibrary()])
    kinds = [(grp.kind, [n.op for n in grp.nodes]) for grp in plan.groups]
    assert kinds == [(GroupKind.LIBRARY, ["dense", "add"]), (GroupKind.RECURRENT, [f"{cell}_recurrence"])] * 2
    for grp in plan.groups[1::2]:
        assert grp.layer_class is LayerClass.ORDER_CONSTRAINED
        k = grp.recurrent
        assert k is not None and (k.cell, k.steps, k.batch, k.hidden) == (cell, 5, 2, 7)
        assert grp.outputs == grp.nodes[0].outputs  # y, h_n (and c_n), all with a buffer
        assert grp.id in plan.memory.scratch
    assert [grp.recurrent.reverse for grp in plan.groups[1::2]] == [False, True]  # type: ignore[union-attr]
    for w, o in zip(want, run_plan(plan, xs)):
        np.testing.assert_allclose(o, w, rtol=1e-5, atol=1e-6)


def test_scratch_does_not_overlap_live_tensors() -> None:
    g = _stack("lstm")
    roles().passes.run(g)
    plan = plan_graph(g, InterpreterDevice(), [DenseLibrary()])
    for grp in plan.groups:
        if grp.kind is not GroupKind.RECURRENT or grp.recurrent is None:
            continue
        lo = plan.memory.scratch[grp.id]
        hi = lo + grp.recurrent.gh_elements * 4
        for v in grp.inputs + grp.outputs:
            _, slot = plan.memory.resolve(v)
            if slot.storage.value == "arena":
                assert slot.index + v.type.nbytes <= lo or hi <= slot.index, f"{v} overlaps the scratch"


def test_device_without_recurrent_ops_says_so() -> None:
    g = _stack("gru", layers=1)
    roles().passes.run(g)
    device = InterpreterDevice()
    device._caps = type(device._caps)(vector_width=1, fusible_ops=device._caps.fusible_ops)
    with pytest.raises(UnsupportedOpError, match="gru_recurrence"):
        plan_graph(g, device, [DenseLibrary()])
