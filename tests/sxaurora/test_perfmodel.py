"""The VE roofline model counts FLOPs with the op table (``OpDef.flops``, sol.workload): its only
addition is what a transcendental function costs the VE beyond its one FLOP, which lengthens the
compute time, never the FLOPs it reports."""

from __future__ import annotations

import numpy as np
import pytest

from sol.api import plan
from sol.ir import Graph, TensorType
from sol.planner.plan import GroupKind
from sol.workload import group_work, node_flops
from sol_sxaurora import perfmodel

from graphs import randn, seed_net

quiet = pytest.mark.filterwarnings("ignore:sol device 've' runs emulated")


def _mixed_net() -> Graph:
    """Functions the VE has no instruction for (gelu, exp inside softmax, tanh and sigmoid inside
    an LSTM step), ops the op table counts per input (max, variance) or not at all (cast)."""
    g = Graph("mixed")
    x = g.add_input("x", TensorType((4, 6, 16)))
    d = g.add_node("dense", [x, g.add_param("w", randn(16, 16)), g.add_param("b", randn(16))]).output
    s = g.add_node("softmax", [g.add_node("gelu", [d]).output], {"axis": 2}).output
    m = g.add_node("max", [s], {"axes": (2,), "keepdims": False}).output
    v = g.add_node("variance", [s, g.add_node("mean", [s], {"axes": (2,), "keepdims": True}).output],
                   {"axes": (2,), "keepdims": True}).output
    h0 = g.add_input("h0", TensorType((6, 8)))
    c0 = g.add_input("c0", TensorType((6, 8)))
    lstm = g.add_node("lstm", [s, h0, c0, g.add_param("w_ih", randn(32, 16)), g.add_param("w_hh", randn(32, 8))])
    g.outputs = [m, g.add_node("cast", [v], {"dtype": "float64"}).output, lstm.outputs[0]]
    return g


@quiet
@pytest.mark.parametrize("net", [lambda: seed_net(2), _mixed_net], ids=["seed", "mixed"])
def test_the_ve_model_reports_the_op_tables_flops(net) -> None:  # type: ignore[no-untyped-def]
    p = plan(net(), "ve")
    ops = {n.op for g in p.groups for n in g.nodes}
    checked = 0
    for group in p.groups:
        est = perfmodel.estimate(group, p)
        if group.kind is GroupKind.ALIAS:
            assert est is None
            continue
        assert est is not None
        assert est.flops == group_work(group).flops == sum(node_flops(n) for n in group.nodes)
        checked += 1
    assert checked >= 2
    if "gelu" in ops:
        assert {"softmax", "lstm_recurrence", "max", "variance", "cast"} <= ops


@quiet
def test_only_transcendental_functions_add_ve_operations_on_top_of_the_op_table() -> None:
    p = plan(_mixed_net(), "ve")
    nodes = {n.op: n for g in p.groups for n in g.nodes}
    for op in ("max", "variance", "cast", "dense", "mean"):
        if op in nodes:
            assert perfmodel.function_overhead(nodes[op]) == 0.0, op
    gelu, softmax, lstm = nodes["gelu"], nodes["softmax"], nodes["lstm_recurrence"]
    assert perfmodel.function_overhead(gelu) == 15 * gelu.outputs[0].type.numel  # 16 operations, 1 counted
    assert perfmodel.function_overhead(softmax) == 9 * softmax.outputs[0].type.numel  # its exp
    assert perfmodel.function_overhead(lstm) == (3 * 11 + 2 * 11) * lstm.outputs[0].type.numel  # 3 sigmoid, 2 tanh
    group = next(g for g in p.groups if gelu in g.nodes)
    est = perfmodel.estimate(group, p)
    assert est is not None and est.bound.startswith("compute")
    ops = sum(perfmodel.ve_operations(n) for n in group.nodes)
    ve = perfmodel.TYPE_20B
    rate = ve.fp64_flops if any(v.dtype == "float64" for v in group.outputs) else ve.fp32_flops
    assert ops > est.flops and est.seconds == pytest.approx(ops / rate + ve.parallel_start_s)
    assert np.isclose(perfmodel.ve_operations(gelu), node_flops(gelu) + 15 * gelu.outputs[0].type.numel)
