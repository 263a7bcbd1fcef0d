"""How the planner places the index ops (sol/ops/index.py): an embedding gather shares its outer
loops (batch, position) with the element-wise ops after it, and a gather from a table computed in
the same fused group never reads the table from per-iteration scratch, which holds only the
current outer slice."""

from __future__ import annotations

import numpy as np
import pytest

from sol.debug import run_reference
from sol.errors import SolError
from sol.ir import Graph, TensorType
from sol.ops.registry import LayerClass
from sol.planner.partition import plan_graph
from sol.planner.plan import GroupKind, Plan
from sol.plugins import roles

from interpreter_device import InterpreterDevice, run_plan

rng = np.random.default_rng(0)


def _plan(g: Graph) -> Plan:
    roles().passes.run(g)
    return plan_graph(g, InterpreterDevice(1 << 20), [])


def _group_of(plan: Plan, op: str):  # type: ignore[no-untyped-def]
    return next(grp for grp in plan.groups if any(n.op == op for n in grp.nodes))


def test_embedding_gather_fuses_with_the_sum_after_it() -> None:
    g = Graph("embed")
    table = g.add_param("table", rng.standard_normal((30, 8)).astype(np.float32))
    ids = g.add_input("ids", TensorType((2, 5), "int64"))
    pos = g.add_param("pos", rng.standard_normal((5, 8)).astype(np.float32))
    rows = g.add_node("gather", [table, ids], {"axis": 0}).output
    g.outputs.append(g.add_node("relu", [g.add_node("add", [rows, pos]).output]).output)
    plan = _plan(g)
    group = _group_of(plan, "gather")
    assert [n.op for n in group.nodes] == ["gather", "add", "relu"]
    assert group.kind is GroupKind.FUSED and group.kernel is not None
    assert group.kernel.outer_shape == (2, 5)  # one row copy per (sequence, position)
    assert group.layer_class is LayerClass.PARAM_BOUND  # the embedding lookup leads the group
    feeds = [rng.integers(-30, 30, (2, 5))]
    np.testing.assert_allclose(run_plan(plan, feeds)[0], run_reference(g, feeds)[0], rtol=1e-6)


@pytest.mark.parametrize("axis", [0, 1])
def test_gather_from_a_computed_table_reads_whole_rows(axis: int) -> None:
    g = Graph("computed")
    x = g.add_input("x", TensorType((4, 6)))
    ids = g.add_input("ids", TensorType((3,), "int64"))
    table = g.add_node("tanh", [x]).output
    g.outputs.append(g.add_node("gather", [table, ids], {"axis": axis}).output)
    plan = _plan(g)
    group = _group_of(plan, "gather")
    assert group.kernel is not None
    # Outer loops only over the dims before `axis`: any row along it stays readable.
    assert group.kernel.depth <= axis
    feeds = [rng.standard_normal((4, 6)).astype(np.float32), np.array([3, 0, 2])]
    np.testing.assert_allclose(run_plan(plan, feeds)[0], run_reference(g, feeds)[0], rtol=1e-6)


def test_gather_rules() -> None:
    g = Graph("rules")
    x = g.add_input("x", TensorType((4, 6)))
    with pytest.raises(SolError, match="indices must be integers"):
        g.add_node("gather", [x, g.add_input("f", TensorType((2,)))])
    out = g.add_node("gather", [x, g.add_input("i", TensorType((2, 3), "int32"))], {"axis": -1}).output
    assert out.shape == (4, 2, 3) and out.dtype == "float32"
    ref = run_reference_gather(np.arange(6.0).reshape(2, 3), np.array([-1, 0]), wrap=True)
    np.testing.assert_array_equal(ref, [[2.0, 0.0], [5.0, 3.0]])
    with pytest.raises(IndexError, match="index -1 is out of range"):
        run_reference_gather(np.arange(6.0).reshape(2, 3), np.array([-1, 0]), wrap=False)


def run_reference_gather(x: np.ndarray, ids: np.ndarray, wrap: bool) -> np.ndarray:
    from sol.ops.registry import registry

    return registry.get("gather").reference([x, ids], {"axis": 1, "wrap": wrap})[0]


def test_comparisons_give_bool_and_where_needs_a_bool_condition() -> None:
    g = Graph("cmp")
    a = g.add_input("a", TensorType((3, 1)))
    b = g.add_input("b", TensorType((4,)))
    c = g.add_node("lt", [a, b]).output
    assert c.type == TensorType((3, 4), "bool")
    with pytest.raises(SolError, match="different dtypes"):
        g.add_node("eq", [a, g.add_input("i", TensorType((4,), "int64"))])
    with pytest.raises(SolError, match="condition must be bool"):
        g.add_node("where", [a, a, b])
    assert g.add_node("where", [c, a, b]).output.type == TensorType((3, 4))
    assert g.add_node("argmax", [a], {"axis": 0, "keepdims": True}).output.type == TensorType((1, 1), "int64")
