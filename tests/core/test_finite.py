"""sol.passes.finite: which values may be NaN or infinite when every graph input and parameter is
finite (what a backend asks before fusing an epilogue that is exact only for finite operands)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sol.debug import run_reference
from sol.ir import Graph, Node, TensorType, Value, ValueKind
from sol.ops.registry import REQUIRED, LayerClass, OpDef, registry
from sol.passes.finite import creates_nonfinite, may_be_nonfinite, nonfinite_values, premise_of

from graphs import randn


def _conv_relu6(g: Graph, x: Value, name: str) -> Value:
    y = g.add_node("conv2d", [x, g.add_param(f"{name}.w", randn(4, x.shape[1], 3, 3)),
                              g.add_param(f"{name}.b", randn(4))], {"padding": 1}).output
    return g.add_node("clamp", [y], {"min": 0.0, "max": 6.0}).output


def _branches() -> tuple[Graph, dict[str, Value]]:
    """Three branches into conv -> relu6: from x alone (finite), from x / y and from log(x)
    (both can make NaN or inf of finite inputs), and a comparison of the tainted branch (bool:
    finite) selecting between finite values."""
    g = Graph("branches")
    x = g.add_input("x", TensorType((1, 2, 6, 6)))
    y = g.add_input("y", TensorType((1, 2, 6, 6)))
    v = {"x": x, "y": y}
    v["clean"] = _conv_relu6(g, x, "c1")
    v["div"] = g.add_node("div", [x, y]).output
    v["div_relu6"] = _conv_relu6(g, v["div"], "c2")
    v["log"] = g.add_node("log", [x]).output
    v["log_relu6"] = _conv_relu6(g, v["log"], "c3")
    v["mask"] = g.add_node("gt", [v["div"], g.add_const(np.float32(0))]).output
    v["picked"] = g.add_node("where", [v["mask"], x, g.add_param("alt", randn(1, 2, 6, 6))]).output
    v["as_int"] = g.add_node("cast", [v["log"]], {"dtype": "int64"}).output
    g.outputs = [v["clean"], v["div_relu6"], v["log_relu6"], v["picked"], v["as_int"]]
    return g, v


def test_dataflow_marks_what_division_and_log_can_make_non_finite() -> None:
    g, v = _branches()
    maybe = nonfinite_values(g)
    assert not may_be_nonfinite([v["clean"]]) and v["clean"] not in maybe
    for name in ("div", "div_relu6", "log", "log_relu6"):
        assert may_be_nonfinite([v[name]]) and v[name] in maybe, name
    # Booleans and integers are always finite; a selection between finite values is finite
    # whatever selects it.
    for name in ("mask", "as_int", "picked"):
        assert not may_be_nonfinite([v[name]]) and v[name] not in maybe, name
    # The backwards query and the forward pass agree on every value.
    assert {u for u in g.values() if may_be_nonfinite([u])} == maybe


def test_finite_inputs_that_make_nan_are_caught() -> None:
    """What the analysis claims is what the references compute: the tainted branches do give NaN
    or inf for finite inputs, the clean branch never can."""
    g, v = _branches()
    x = np.full((1, 2, 6, 6), -1.0, np.float32)
    y = np.zeros((1, 2, 6, 6), np.float32)
    with np.errstate(all="ignore"):
        clean, div_relu6, log_relu6, _, _ = run_reference(g, [x, y])
    assert np.isfinite(clean).all()
    assert not np.isfinite(div_relu6).all() and not np.isfinite(log_relu6).all()


def test_premise_is_the_float_inputs_and_parameters_a_value_depends_on() -> None:
    g, v = _branches()
    names = lambda vals: sorted(u.name for u in vals)  # noqa: E731
    assert names(premise_of([v["clean"]])) == ["c1.b", "c1.w", "x"]
    assert names(premise_of([v["div_relu6"]])) == ["c2.b", "c2.w", "x", "y"]
    # Integer inputs (token ids, indices) cannot be non-finite: no premise about them.
    h = Graph("gather")
    table = h.add_param("table", randn(10, 4))
    ids = h.add_input("ids", TensorType((3,), "int64"))
    out = h.add_node("gather", [table, ids]).output
    assert premise_of([out]) == [table]


def test_constants_are_checked_by_value() -> None:
    g = Graph("consts")
    x = g.add_input("x", TensorType((4,)))
    ok = g.add_node("add", [x, g.add_const(np.array([1, 2, 3, 4], np.float32))]).output
    bad = g.add_node("add", [x, g.add_const(np.array([1, np.nan, 3, 4], np.float32))]).output
    inf = g.add_node("mul", [x, g.add_const(np.float32(np.inf))]).output
    assert not may_be_nonfinite([ok])
    assert may_be_nonfinite([bad]) and may_be_nonfinite([inf])
    # A constant is no premise (the program holds it): only x and parameters are.
    assert premise_of([bad]) == [x]


@pytest.mark.parametrize(("op", "attrs", "shape", "creates"), [
    ("clamp", {"min": 0.0, "max": 6.0}, (4,), False),
    ("clamp", {"min": -math.inf, "max": math.inf}, (4,), False),
    ("clamp", {"min": math.inf}, (4,), True),  # every element becomes +inf
    ("clamp", {"max": -math.inf}, (4,), True),
    ("mean", {"axes": (1,)}, (2, 3), False),
    ("mean", {"axes": (1,)}, (2, 0), True),  # 0 / 0
    ("pad", {"pads": ((1, 1),), "value": 0.0}, (4,), False),
    ("pad", {"pads": ((1, 1),), "value": math.nan}, (4,), True),
    ("cast", {"dtype": "float64"}, (4,), False),
    ("cast", {"dtype": "float16"}, (4,), True),  # 1e5 overflows float16: not "overflow aside"
    ("avg_pool2d", {"kernel": 2}, (1, 1, 4, 4), False),
    ("avg_pool2d", {"kernel": 2, "divisor": 0}, (1, 1, 4, 4), True),
])
def test_attribute_dependent_ops(op: str, attrs: dict, shape: tuple[int, ...], creates: bool) -> None:
    g = Graph("one")
    node = g.add_node(op, [g.add_input("x", TensorType(shape))], attrs)
    assert creates_nonfinite(node) is creates
    assert may_be_nonfinite(node.outputs) is creates


def test_batch_norm_needs_a_positive_variance() -> None:
    g = Graph("bn")
    x = g.add_input("x", TensorType((2, 3)))
    stats = [g.add_param(n, np.ones(3, np.float32)) for n in ("mean", "var", "w", "b")]
    ok = g.add_node("batch_norm", [x, *stats], {"eps": 1e-5, "axis": 1})
    assert not creates_nonfinite(ok)
    negative = g.add_param("neg_var", np.array([1.0, -2.0, 1.0], np.float32))
    bad = g.add_node("batch_norm", [x, stats[0], negative, *stats[2:]], {"eps": 1e-5, "axis": 1})
    assert creates_nonfinite(bad)
    run_time = g.add_input("var", TensorType((3,)))  # training: statistics are inputs, any sign
    assert creates_nonfinite(g.add_node("batch_norm", [x, stats[0], run_time, *stats[2:]], {"axis": 1}))


def test_unknown_ops_and_the_default_flag_are_conservative() -> None:
    opdef = OpDef("plugin_op", LayerClass.ELEMENTWISE, lambda t, a: [t[0]], lambda xs, a: [xs[0]])
    assert opdef.preserves_finite is False
    node = Node("not_an_op", [Value("x", TensorType((2,)), ValueKind.INPUT)])
    node.outputs = [Value("y", TensorType((2,)), ValueKind.NODE, producer=node)]
    assert creates_nonfinite(node) and may_be_nonfinite(node.outputs)


_MAKES_NON_FINITE = {"exp": [100.0], "log": [0.0], "sqrt": [-1.0], "rsqrt": [0.0], "div": [1.0, 0.0],
                     "pow": [0.0, -1.0], "asin": [2.0], "acos": [-2.0], "acosh": [0.5], "atanh": [1.0],
                     "sinh": [100.0], "cosh": [-100.0], "log1p": [-1.0], "expm1": [100.0], "exp2": [200.0],
                     "log2": [0.0], "log10": [-1.0], "fmod": [1.0, 0.0],
                     # special functions (sol.ops.special): poles, domain ends, overflow
                     "lgamma": [0.0], "digamma": [0.0], "erfinv": [1.0], "ndtri": [0.0], "erfcx": [-30.0],
                     "log_ndtr": [-1e20], "bessel_y0": [0.0], "bessel_y1": [-1.0], "i0": [100.0], "i1": [100.0],
                     "modified_bessel_k0": [0.0], "modified_bessel_k1": [0.0], "scaled_modified_bessel_k0": [0.0],
                     "scaled_modified_bessel_k1": [0.0], "zeta": [1.0, 1.0], "igamma": [-1.0, 1.0],
                     "igammac": [-1.0, 1.0],
                     **{p: [1e30, 30.0] for p in ("chebyshev_polynomial_t", "chebyshev_polynomial_u",
                                                  "chebyshev_polynomial_v", "chebyshev_polynomial_w",
                                                  "shifted_chebyshev_polynomial_t", "shifted_chebyshev_polynomial_u",
                                                  "shifted_chebyshev_polynomial_v", "shifted_chebyshev_polynomial_w",
                                                  "hermite_polynomial_h", "hermite_polynomial_he",
                                                  "laguerre_polynomial_l", "legendre_polynomial_p")}}


def _simple_elementwise() -> list[OpDef]:
    """Element-wise ops of one or two float inputs that need no attribute."""
    out = []
    for name in registry.names():
        opdef = registry.get(name)
        if opdef.layer_class is LayerClass.ELEMENTWISE and opdef.arity in ((1, 1), (2, 2)) and \
                REQUIRED not in opdef.attrs.values() and name not in ("stop_gradient", "mask_gt", "mask_ge"):
            out.append(opdef)
    return out


def test_flags_agree_with_the_references() -> None:
    """Every simple element-wise op that claims to keep values finite does so on its NumPy
    reference for finite inputs (overflow aside: moderate values); the ones that do not claim it
    are known to make NaN or infinity from finite inputs."""
    values = np.array([-30.0, -3.0, -1.0, -0.5, -0.0, 0.0, 1e-3, 0.5, 1.0, 3.0, 30.0], np.float32)
    a, b = np.meshgrid(values, values)
    checked = set()
    for opdef in _simple_elementwise():
        g = Graph(opdef.name)
        ins = [g.add_input(f"x{i}", TensorType(a.shape)) for i in range(opdef.arity[0])]
        node = g.add_node(opdef.name, ins)
        with np.errstate(all="ignore"):
            out = registry.run_reference(node, [a, b][:len(ins)])[0]
        if not creates_nonfinite(node):
            assert np.isfinite(out).all(), opdef.name
            checked.add(opdef.name)
        else:
            assert opdef.name in _MAKES_NON_FINITE, f"{opdef.name}: why may it make NaN or inf?"
            witness = [np.array(w, np.float32) for w in _MAKES_NON_FINITE[opdef.name]]
            h = Graph(opdef.name)
            m = h.add_node(opdef.name, [h.add_input(f"x{i}", TensorType(())) for i in range(len(witness))])
            with np.errstate(all="ignore"):
                assert not np.isfinite(registry.run_reference(m, witness)[0]).all(), opdef.name
    assert {"relu", "add", "mul", "sigmoid", "tanh", "maximum", "hardsigmoid"} <= checked
    for name in ("conv2d", "dense", "matmul", "softmax", "max_pool2d", "concat", "transpose", "sum"):
        assert registry.get(name).preserves_finite is True, name


def test_answers_given_the_graph_follow_its_changes() -> None:
    """With the graph given, answers come from one forward pass kept per graph structure: they
    agree with the walk, and a rewired, renamed or added node is seen at once."""
    g, v = _branches()
    for u in g.values():
        assert may_be_nonfinite([u], g) == may_be_nonfinite([u]), u
    conv = v["log_relu6"].producer.inputs[0].producer  # conv2d(log(x), c3.w, c3.b)
    assert may_be_nonfinite([v["log_relu6"]], g)
    conv.inputs = [v["x"], *conv.inputs[1:]]  # rewired to read x
    assert not may_be_nonfinite([v["log_relu6"]], g)
    conv.inputs[0] = v["log"]  # and back, in place
    assert may_be_nonfinite([v["log_relu6"]], g)
    v["log"].producer.op = "abs"  # renamed in place, as passes do (lstm -> lstm_recurrence)
    assert not may_be_nonfinite([v["log_relu6"]], g)
    h, w = _branches()  # another graph: its own answers, then the first one's again
    assert may_be_nonfinite([w["log_relu6"]], h) and not may_be_nonfinite([v["log_relu6"]], g)
