"""Loop lowering shared by C-family devices: strides, broadcast, dimension merging, scratch."""

from __future__ import annotations

import numpy as np

from sol.ir import Graph, TensorType
from sol.lowering import CRenderer, Dialect, GroupLowering, OpStage, PointwiseStage, contiguous_strides
from sol.lowering.records import PoolRecord
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


# --- the C-family generator: dialects, the element-wise table, typed records -------------------

class ToyDialect(Dialect):
    """A minimal dialect spelling everything its own way, to see that nothing is hard-wired."""

    name = "toy"
    min_fn, max_fn = "toy_min", "toy_max"
    op_overrides = {"neg": lambda d, a, T, _: f"toy_negate({a[0]})"}
    unsupported_ops = frozenset({"softmax"})

    def const(self, T, value):  # type: ignore[no-untyped-def]
        return f"TOY<{T}>({value})"

    def convert(self, T, expr):  # type: ignore[no-untyped-def]
        return f"to_{T}({expr})"

    def math(self, fn, T):  # type: ignore[no-untyped-def]
        return f"toy_{fn}_{T}"

    def outer_loop(self, loop):  # type: ignore[no-untyped-def]
        # A CUDA-like mapping: one block per outer iteration.
        return ["const long o = blockIdx.x;", f"if (o < {loop.extent}) {{"]


def _plan(g: Graph):  # type: ignore[no-untyped-def]
    roles().passes.run(g)
    return plan_graph(g, InterpreterDevice(), [ConvLibrary()])


def test_a_dialect_renders_the_elementwise_table_with_its_own_casts_and_math_names() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((2, 3, 4, 5)))
    s = g.add_node("sigmoid", [x]).output
    c = g.add_node("clamp", [s], {"min": 0.0, "max": 6.0}).output
    n = g.add_node("neg", [c]).output
    g.outputs = [g.add_node("cast", [n], {"dtype": "float64"}).output]
    plan = _plan(g)
    (grp,) = [grp for grp in plan.groups if grp.kernel is not None]
    (stage,) = CRenderer(plan, ToyDialect()).lower(grp).stages
    assert isinstance(stage, PointwiseStage)
    body = "\n".join(stage.statements)
    assert "(TOY<float>(1) / (TOY<float>(1) + toy_exp_float(-" in body  # sigmoid: constants and math
    assert "toy_min(toy_max(r" in body and "TOY<float>(0.0)), TOY<float>(6.0))" in body  # clamp
    assert "toy_negate(r" in body  # the dialect's own rule for one op
    assert "const double r" in body and "= to_double(r" in body  # cast
    assert "static_cast" not in body and "std::" not in body


def test_the_outer_loop_hook_and_typed_records() -> None:
    plan = _plan(seed_net())
    (grp,) = [grp for grp in plan.groups if grp.kernel is not None]
    ctx = CRenderer(plan, ToyDialect()).fused(grp)
    assert ctx["outer_loop"] == ["  const long o = blockIdx.x;", "  if (o < 2000) {"]
    assert ctx["outer_index"] == ["const long o0 = (o / 1000) % 2;", "const long o1 = (o / 1) % 1000;"]
    assert ctx["decls"] and all(" restrict v" in d for d in ctx["decls"])
    pool = ctx["lowered"].stages[1]
    assert isinstance(pool, OpStage) and pool.op == "pool"
    rec = pool.record
    # The seed's AvgPool13 over each 13x13 ReLU plane kept in scratch (L5), one output per plane.
    assert isinstance(rec, PoolRecord) and rec.op == "avg_pool2d" and rec.x == "L5"
    assert (rec.H, rec.W, rec.OH, rec.OW, rec.kh, rec.sh) == (13, 13, 1, 1, 13, 13)
    assert (rec.owlo, rec.owhi) == (0, 1)  # no padding: every window is inside the input


def test_fusible_ops_are_derived_from_what_the_generator_lowers() -> None:
    ops = Dialect().fusible_ops()
    assert {"relu", "gelu", "where", "max_pool2d", "softmax", "mean", "gather", "conv2d_backward_data"} <= ops
    # Compute-bound ops without a loop lowering, shape ops and recurrences are not fusible.
    assert not ops & {"conv2d", "dense", "matmul", "reshape", "lstm_recurrence"}
    toy = ToyDialect().fusible_ops()
    assert "softmax" not in toy and ops - toy == {"softmax"}
    assert Dialect().recurrent_ops() == {"lstm_recurrence", "gru_recurrence"}
