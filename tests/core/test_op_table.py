"""One op table (issue #16 item 4): everything about an op hangs off its OpDef (shape/dtype rule,
layer class, NumPy reference, gradient rule, FLOP count, C-family lowering), core's ops and a
plugin's alike; the name-keyed views (sol.lowering.ELEMENTWISE, OP_LOWERINGS) are read from it.

The end-to-end case is a plugin op, ``softsign`` (x / (1 + |x|)), registered with its own
gradient, FLOP count and element-wise C expression: it compiles on x86 inside a fused group,
trains through ``sol.autodiff.compile_training``, and the work counts ``sol inspect --profile``
prints (``sol.workload``) use its count.
"""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import pluggy
import pytest

import sol
from sol.errors import SolError
from sol.ir import Graph, Node, TensorType
from sol.ops.registry import LayerClass, OpDef, registry

hookimpl = pluggy.HookimplMarker("sol")


# --- the plugin op --------------------------------------------------------------------------------

def _softsign_ref(xs: list[np.ndarray], attrs: dict[str, Any]) -> list[np.ndarray]:
    x = xs[0].astype(np.float64)
    return [(x / (1.0 + np.abs(x))).astype(xs[0].dtype)]


def _softsign_grad(ctx: Any, grads: list[Any]) -> list[Any]:
    """d/dx x / (1 + |x|) = 1 / (1 + |x|)^2, built from sol's own ops like core's rules."""
    g, x = grads[0], ctx.x(0)
    d = ctx.op("add", ctx.const(1.0, x), ctx.op("abs", x))
    return [ctx.op("div", g, ctx.op("mul", d, d))]


def _softsign_c(d: Any, a: list[str], T: str, attrs: dict[str, Any]) -> str:
    return f"({a[0]} / ({d.const(T, 1)} + {d.math('fabs', T)}({a[0]})))"


def _softsign_flops(node: Node) -> float:
    return 3.0 * node.outputs[0].type.numel  # abs, add, divide


SOFTSIGN = dict(infer=lambda types, attrs: [types[0]], reference=_softsign_ref, gradient=_softsign_grad,
                flops=_softsign_flops, c_expr=_softsign_c, preserves_finite=True)


def _ops_plugin(name: str, *opdefs: OpDef) -> types.ModuleType:
    mod = types.ModuleType(name)
    mod.SOL_PLUGIN_API = ">=1.0,<2"  # type: ignore[attr-defined]

    def sol_register_ops(registry: Any) -> None:
        for opdef in opdefs:
            registry.register(opdef)

    mod.sol_register_ops = hookimpl(sol_register_ops)  # type: ignore[attr-defined]
    return mod


def _softsign_net() -> Graph:
    """softsign fused between two element-wise ops: y = softsign(x * w) + x."""
    g = Graph("softsign_net")
    x = g.add_input("x", TensorType((4, 64)))
    w = g.add_param("w", np.linspace(-3, 3, 64, dtype=np.float32))
    s = g.add_node("softsign", [g.add_node("mul", [x, w]).output]).output
    g.outputs = [g.add_node("add", [s, x]).output]
    return g


@pytest.fixture
def x86_with_softsign(fresh_plugins):  # type: ignore[no-untyped-def]
    plugin = pytest.importorskip("sol_x86.plugin")
    fresh_plugins.register(plugin, "x86")
    fresh_plugins.register(_ops_plugin("softsign_ops", OpDef("softsign", LayerClass.ELEMENTWISE, **SOFTSIGN)))
    avail = fresh_plugins.roles().devices.get("x86").availability()
    if not avail.available:
        pytest.skip(f"x86 unavailable: {avail.detail}")
    return fresh_plugins


def test_a_plugin_op_with_its_own_gradient_flops_and_c_expression_compiles_trains_and_counts(
        x86_with_softsign: Any) -> None:
    from sol.api import plan
    from sol.autodiff import compile_training
    from sol.planner.plan import GroupKind
    from sol.workload import group_work

    graph = _softsign_net()
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4, 64)) * 2).astype(np.float32)
    w = np.linspace(-3, 3, 64, dtype=np.float32)
    xw = x.astype(np.float64) * w

    # Rendered by x86 from the op's own C expression, inside one fused group with mul and add.
    the_plan = plan(graph, "x86")
    (group,) = [g for g in the_plan.groups if g.kind is not GroupKind.ALIAS]
    assert [n.op for n in group.nodes] == ["mul", "softsign", "add"]
    source = x86_with_softsign.roles().devices.get("x86").render(the_plan).text
    assert "/ (float(1) + std::abs(" in source

    (y,) = sol.optimize(graph, x, device="x86")(x)
    np.testing.assert_allclose(y, xw / (1 + np.abs(xw)) + x, rtol=1e-5, atol=1e-6)

    # Training: the backward graph uses the op's gradient rule.
    training = compile_training(graph, ["x", "w"], device="x86")
    (out,), saved = training.forward(x, w)
    np.testing.assert_allclose(out, y, rtol=1e-6)
    gy = rng.standard_normal((4, 64)).astype(np.float32)
    gx, gw = training.backward(saved, [gy])
    ds = gy / (1 + np.abs(xw)) ** 2
    np.testing.assert_allclose(gx, ds * w + gy, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gw, (ds * x).sum(axis=0), rtol=1e-4, atol=1e-4)

    # The counts `sol inspect --profile` prints: 3 per softsign element, not the element-wise default of 1.
    n = 4 * 64
    assert group_work(group).flops == n + 3 * n + n


def test_the_lowering_views_are_read_from_the_op_table(fresh_plugins: Any) -> None:
    """ELEMENTWISE / OP_LOWERINGS are views of OpDef.c_expr / c_loops: a plugin's op appears in
    them by registering, an op without a lowering is absent, and the views cannot be written."""
    from sol.lowering import ELEMENTWISE, OP_LOWERINGS, Dialect

    fresh_plugins.register(_ops_plugin("softsign_ops", OpDef("softsign", LayerClass.ELEMENTWISE, **SOFTSIGN)))
    assert ELEMENTWISE["softsign"] is _softsign_c and ELEMENTWISE["relu"] is registry.get("relu").c_expr
    assert OP_LOWERINGS["softmax"] is registry.get("softmax").c_loops
    assert "softsign" not in OP_LOWERINGS and "conv2d" not in OP_LOWERINGS and "batch_norm" not in ELEMENTWISE
    assert set(ELEMENTWISE) == {n for n in registry.names() if registry.get(n).c_expr is not None}
    assert "softsign" in Dialect().fusible_ops()
    with pytest.raises(TypeError):
        ELEMENTWISE["relu"] = _softsign_c  # type: ignore[index]


def test_every_builtin_op_carries_its_gradient_and_io_bound_ops_their_loops() -> None:
    """Read from the table itself, no list kept beside it: every op has a gradient rule (possibly
    ``no_gradient``), every I/O-bound op a loop lowering, and no op a lowering its class cannot use."""
    names = registry.names()
    assert [n for n in names if registry.get(n).gradient is None] == []
    assert [n for n in names if registry.get(n).layer_class is LayerClass.IO_BOUND
            and registry.get(n).c_loops is None] == []
    for n in names:
        registry.get(n).check()


@pytest.mark.parametrize("cls, field", [(LayerClass.ELEMENTWISE, "c_loops"), (LayerClass.IO_BOUND, "c_expr")])
def test_a_lowering_that_does_not_fit_the_layer_class_withdraws_the_plugin(
        fresh_plugins: Any, caplog: pytest.LogCaptureFixture, cls: LayerClass, field: str) -> None:
    bad = OpDef("misfit", cls, lambda t, a: [t[0]], _softsign_ref, **{field: _softsign_c})  # type: ignore[arg-type]
    with pytest.raises(SolError, match=f"op 'misfit' is .*{field}"):
        bad.check()
    fresh_plugins.register(_ops_plugin("misfit_ops", bad))
    assert "misfit" not in registry
    assert "relu" in registry  # core's ops are untouched
    assert any("misfit_ops" in r.getMessage() and field in r.getMessage() for r in caplog.records)


def test_an_op_without_gradient_is_an_error_naming_it(fresh_plugins: Any) -> None:
    """``gradient=None`` means no rule: differentiating through the op says so, by name."""
    from sol.autodiff import differentiate

    no_rule = {**SOFTSIGN, "gradient": None}
    fresh_plugins.register(_ops_plugin("softsign_ops", OpDef("softsign", LayerClass.ELEMENTWISE, **no_rule)))
    with pytest.raises(SolError, match="softsign"):
        differentiate(_softsign_net(), ["x"])
