"""Loop lowering shared by C-family devices: strides, broadcast, dimension merging, scratch."""

from __future__ import annotations

import ctypes
import shutil
import subprocess
import types
from pathlib import Path

import jinja2
import numpy as np
import pytest

from sol.errors import SolError
from sol.ir import Graph, TensorType
from sol.lowering import CRenderer, Dialect, GroupLowering, OpStage, PointwiseStage, contiguous_strides, reference_loops
from sol.lowering.cfamily import template_loader
from sol.lowering.records import PoolRecord
from sol.ops.registry import registry
from sol.planner.partition import plan_graph
from sol.planner.plan import GroupKind
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


# --- the reference loops of the compute-bound ops and the shipped templates --------------------

class MacroDialect(Dialect):
    """Plain C, but casts, constants and min/max spelled through macros of its own: the shipped
    templates must write every cast through the dialect (a raw ``(double)`` would slip past)."""

    name = "toy-c"
    parallel_pragma = ""
    min_fn, max_fn = "TOY_MIN", "TOY_MAX"

    def const(self, T, value):  # type: ignore[no-untyped-def]
        return f"TOY_CONST({T}, {value})"

    def convert(self, T, expr):  # type: ignore[no-untyped-def]
        return f"TOY_CAST({T}, {expr})"


# A device's network template with no op or loop template of its own: every group body comes
# from the generator's shipped templates (sol/groups.j2, sol/ops.j2).
TOY_NETWORK = """{% import "sol/groups.j2" as gen with context %}
#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#define TOY_CAST(T, x) ((T)(x))
#define TOY_CONST(T, v) ((T)(v))
#define TOY_MAX(a, b) ((a) < (b) ? (b) : (a))
#define TOY_MIN(a, b) ((b) < (a) ? (b) : (a))
typedef struct { const void* const* params; char* arena; } Net;
static void sol_index_error(Net* net, long index, long size, long axis, const char* where) {
  (void)net; (void)index; (void)size; (void)axis; (void)where;
}
{% for c in consts %}
static const {{ c.ctype }} {{ c.sym }}[{{ c.literals | length }}] = { {{ c.literals | join(", ") }} };
{% endfor %}
{% for g in groups %}
static void run_{{ g.label }}(Net* restrict net, const void* const* in, void* const* out) {
  (void)net; (void)in; (void)out;
{{ gen.body(g) | indent(2, true) }}
}
{% endfor %}
void toy_forward(const void* const* params, const void* const* in, void* const* out, char* arena) {
  Net state = {params, arena};
{% for g in groups %}
  run_{{ g.label }}(&state, in, out);
{% endfor %}
}
"""


def _compute_bound_net() -> Graph:
    """Every reference loop in one network, with the attributes that change its index arithmetic:
    groups, stride, asymmetric padding, dilation, a bias or none, output padding, float64,
    folded leading dims, batched and broadcast matmul."""
    rng = np.random.default_rng(7)

    def param(name: str, *shape: int, dtype: str = "float32"):  # type: ignore[no-untyped-def]
        return g.add_param(name, rng.standard_normal(shape).astype(dtype))

    g = Graph("compute_bound")
    x = g.add_input("x", TensorType((2, 4, 9, 8)))
    conv = g.add_node("conv2d", [x, param("w1", 6, 2, 3, 3), param("b1", 6)],
                      {"stride": (2, 1), "padding": ((1, 2), (0, 1)), "dilation": (1, 2), "groups": 2}).output
    plain = g.add_node("conv2d", [x, param("w2", 3, 4, 2, 2)]).output
    up = g.add_node("conv_transpose2d", [x, param("w3", 4, 3, 3, 3), param("b3", 6)],
                    {"stride": (2, 3), "padding": ((1, 0), (1, 1)), "output_padding": (1, 2), "groups": 2}).output
    up2 = g.add_node("conv_transpose2d", [x, param("w4", 4, 2, 2, 2)],
                     {"stride": 2, "output_padding": 1, "dilation": 2}).output
    h = g.add_input("h", TensorType((2, 3, 5)))
    dense = g.add_node("dense", [h, param("w5", 7, 5), param("b5", 7)]).output
    h64 = g.add_input("h64", TensorType((4, 5), "float64"))
    dense64 = g.add_node("dense", [h64, param("w6", 3, 5, dtype="float64")]).output
    a, b = g.add_input("a", TensorType((2, 1, 4, 5))), g.add_input("b", TensorType((3, 5, 6)))
    bmm = g.add_node("matmul", [a, b]).output  # (2, 3, 4, 6): both operands broadcast
    m = g.add_input("m", TensorType((4, 5)))
    mm = g.add_node("matmul", [m, b]).output  # (3, 4, 6): a plain matrix against a batch
    g.outputs = [conv, plain, up, up2, dense, dense64, bmm, mm]
    return g


def _run_compiled(source: str, plan, inputs: list[np.ndarray], tmp: Path) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    (tmp / "net.c").write_text(source)
    lib = tmp / "net.so"
    subprocess.run([cc, "-std=c99", "-O1", "-fPIC", "-shared", "-Wall", "-Werror", "-Wno-unused-function",
                    "-ffp-contract=off", "-fno-strict-aliasing", "-o", str(lib), str(tmp / "net.c"), "-lm"],
                   check=True, capture_output=True, text=True)
    fn = ctypes.CDLL(str(lib)).toy_forward
    fn.argtypes = [ctypes.c_void_p] * 4

    def table(arrays: list[np.ndarray]):  # type: ignore[no-untyped-def]
        return (ctypes.c_void_p * max(len(arrays), 1))(*[x.ctypes.data for x in arrays])

    g = plan.graph
    params = [np.ascontiguousarray(v.data) for v in g.params]
    outs = [np.full(v.shape, np.nan, v.dtype) for v in g.outputs]
    arena = np.zeros(plan.memory.arena_bytes + 64, np.uint8)
    fn(table(params), table(inputs), table(outs), arena.ctypes.data + (-arena.ctypes.data % 64))
    return outs


def test_a_device_without_loop_templates_runs_the_compute_bound_ops_through_the_reference_loops(
        tmp_path: Path) -> None:
    """conv2d, conv_transpose2d, dense and matmul claimed by ``reference_loops``, rendered by
    ``CRenderer.library`` and the shipped templates in a dialect of its own, compiled and run:
    each result equals the op's NumPy reference."""
    g = _compute_bound_net()
    backend = reference_loops("interp")
    plan = plan_graph(g, InterpreterDevice(), [backend])
    libs = [grp for grp in plan.groups if grp.kind is GroupKind.LIBRARY]
    assert len(libs) == 8 and {grp.backend for grp in libs} == {"interp-reference-loops"}
    renderer = CRenderer(plan, MacroDialect())
    contexts = renderer.groups()
    records = [ctx["record"] for ctx in contexts]
    assert [type(r).__name__ for r in records] == ["ConvRecord"] * 4 + ["DenseRecord"] * 2 + ["MatmulRecord"] * 2
    assert (records[2].OH, records[2].OW, records[2].CG, records[2].OG) == (19, 24, 2, 3)  # output padding in OH/OW
    assert records[1].b == "" and records[0].b and records[4].R == 6
    assert (records[6].B, records[6].x_off, records[6].w_off[:4]) == (6, [0, 0, 0, 20, 20, 20], [0, 30, 60, 0])

    env = jinja2.Environment(loader=jinja2.ChoiceLoader([template_loader(), jinja2.DictLoader({"net": TOY_NETWORK})]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    source = env.get_template("net").render(groups=contexts, consts=renderer.consts(), dialect=renderer.dialect)
    body = source.split("void run_", 1)[1]
    assert "TOY_CAST(double, " in body and "TOY_CAST(float, acc)" in body and "(double)" not in body

    rng = np.random.default_rng(1)
    inputs = [rng.standard_normal(v.shape).astype(v.dtype) for v in g.inputs]
    got = _run_compiled(source, plan, inputs, tmp_path)
    values: dict = {**dict(zip(g.inputs, inputs)), **{v: v.data for v in g.params}}
    for node in g.nodes:
        values[node.outputs[0]] = registry.run_reference(node, [values[v] for v in node.inputs])[0]
    for v, out in zip(g.outputs, got):
        want = values[v]
        assert out.dtype == want.dtype
        np.testing.assert_allclose(out, want, rtol=1e-5 if v.dtype == "float32" else 1e-12, atol=1e-5,
                                   err_msg=v.producer.op if v.producer else "")


def test_the_reference_loops_claim_only_floating_ops_with_loops_and_lose_to_a_vendor_library() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((2, 8)))
    w = g.add_param("w", randn(4, 8))
    dense = g.add_node("dense", [x, w])
    xi = g.add_input("xi", TensorType((2, 3), "int32"))
    imm = g.add_node("matmul", [xi, g.add_input("yi", TensorType((3, 2), "int32"))])
    relu = g.add_node("relu", [dense.output])
    backend = reference_loops("interp")
    assert backend.claims(dense, g) and not backend.claims(imm, g) and not backend.claims(relu, g)
    assert backend.priority < Backend.priority  # a vendor library claiming the op wins


class FusingDense(Backend):
    """A vendor library that fuses a ReLU epilogue into its dense: its groups are its own."""

    name, device = "fusing", "interp"

    def claims(self, node, graph):  # type: ignore[no-untyped-def]
        return node.op == "dense"

    def absorbs(self, anchor, chain, node, graph):  # type: ignore[no-untyped-def]
        return node.op == "relu"


def test_the_default_library_context_refuses_a_group_whose_epilogue_it_would_drop() -> None:
    g = Graph()
    x = g.add_input("x", TensorType((2, 8)))
    g.outputs = [g.add_node("relu", [g.add_node("dense", [x, g.add_param("w", randn(4, 8))]).output]).output]
    plan = plan_graph(g, InterpreterDevice(), [FusingDense()])
    (grp,) = [grp for grp in plan.groups if grp.kind is GroupKind.LIBRARY]
    assert [n.op for n in grp.epilogue] == ["relu"]
    with pytest.raises(SolError, match="take no epilogue.*'fusing' fused \\['relu'\\]"):
        CRenderer(plan, Dialect()).library(grp)


def test_a_recurrent_op_a_plugin_registers_is_in_the_derived_recurrent_set(fresh_plugins) -> None:  # type: ignore[no-untyped-def]
    """Dialect.recurrent_ops() reads the op table (OpDef.recurrent), no list of names: a plugin's
    recurrence lands in it by registering, and only an execution-order-constrained op may say so."""
    from sol.plugin_api import LayerClass, OpDef, hookimpl

    rnn = OpDef("elman_recurrence", LayerClass.ORDER_CONSTRAINED, lambda types, attrs: [types[0]],
                lambda xs, attrs: [xs[0]], recurrent=True)
    mod = types.ModuleType("elman_ops")
    mod.SOL_PLUGIN_API = ">=1.0,<2"  # type: ignore[attr-defined]
    mod.sol_register_ops = hookimpl(lambda registry: registry.register(rnn))  # type: ignore[attr-defined]
    fresh_plugins.register(mod)
    assert Dialect().recurrent_ops() == {"lstm_recurrence", "gru_recurrence", "elman_recurrence"}
    assert "elman_recurrence" not in Dialect().fusible_ops()
    with pytest.raises(SolError, match="only an execution-order-constrained op"):
        OpDef("bad", LayerClass.IO_BOUND, rnn.infer, rnn.reference, recurrent=True).check()


def test_a_device_replaces_one_shipped_macro_by_name_and_keeps_the_rest() -> None:
    """``gen.body(g, mine)``: a macro the device's own template defines wins over the shipped one
    of that name (a vendor's faster dense), the shipped templates render every other group."""
    g = Graph()
    x = g.add_input("x", TensorType((2, 8)))
    d = g.add_node("dense", [x, g.add_param("w", randn(4, 8))]).output
    g.outputs = [g.add_node("softmax", [g.add_node("matmul", [d, g.add_input("m", TensorType((4, 3)))]).output],
                            {"axis": 1}).output]
    plan = plan_graph(g, InterpreterDevice(), [reference_loops("interp")])
    renderer = CRenderer(plan, Dialect())
    mine = ('{% macro dense(s) %}vendor_gemm({{ s.x }}, {{ s.w }}, {{ s.y }}, {{ s.R }}, {{ s.N }}, {{ s.K }});'
            '{% endmacro %}')
    net = ('{% import "sol/groups.j2" as gen with context %}{% import "mine" as mine with context %}'
           '{% for g in groups %}{{ gen.body(g, mine) }}{% endfor %}')
    env = jinja2.Environment(loader=jinja2.ChoiceLoader([template_loader(), jinja2.DictLoader({"net": net,
                                                                                                "mine": mine})]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    text = env.get_template("net").render(groups=renderer.groups(), dialect=renderer.dialect)
    assert text.count("vendor_gemm(") == 1 and ", 2, 4, 8);" in text  # the dense, by the device's macro
    assert "x_off[bt]" in text and "expf(z)" in text  # matmul's reference loops, softmax's macro


class LinalgDialect(MacroDialect):
    linalg_errors = True  # its network template defines sol_linalg_error


def test_a_failed_factorization_check_reaches_sol_linalg_error_only_where_the_dialect_has_it(
        tmp_path: Path) -> None:
    """``Dialect.linalg_errors`` (plugin API 1.4): the shipped templates report a failed check
    through ``sol_linalg_error`` with the op, the reason's two pieces (the message is where, head,
    LAPACK's info, tail) and info; a dialect without it (a device written for 1.3, whose network
    template defines only ``sol_index_error``) gets the old call and still compiles and runs a
    checked factorization."""
    g = Graph("chol")
    a = g.add_input("a", TensorType((3, 3)))  # one matrix: no outer loop (its unused counter: -Werror)
    g.outputs = [g.add_node("cholesky", [a], {"check": "linalg.cholesky"}).output]
    plan = plan_graph(g, InterpreterDevice(fusible=None), [])
    env = jinja2.Environment(loader=jinja2.ChoiceLoader([template_loader(), jinja2.DictLoader({"net": TOY_NETWORK})]),
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    sources = {}
    for dialect in (MacroDialect(), LinalgDialect()):
        renderer = CRenderer(plan, dialect)
        sources[dialect.linalg_errors] = env.get_template("net").render(
            groups=renderer.groups(), consts=renderer.consts(), dialect=dialect)
    assert ('sol_linalg_error(net, info, "linalg.cholesky", "the input is not positive-definite: the leading minor '
            'of order ", " is not positive-definite");') in sources[True]
    assert "sol_index_error" not in sources[True].split("void run_", 1)[1]
    assert "sol_linalg_error" not in sources[False]
    assert 'sol_index_error(net, info, 3, -1, "linalg.cholesky");' in sources[False]
    spd = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]], np.float32)
    [got] = _run_compiled(sources[False], plan, [spd], tmp_path)
    np.testing.assert_allclose(got[:, :3], np.linalg.cholesky(spd), rtol=1e-5)
    assert got[0, 3] == 0  # LAPACK's info: positive definite
