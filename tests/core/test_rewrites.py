"""sol.passes.commute: element-wise ops and 1x1 convolutions moved past poolings.

Every case builds a small graph, runs core's passes and checks the order of the ops afterwards
(the move happened, or, where it would change a number or cost work, it did not) and that the
NumPy references of the graph before and after agree on finite inputs and on inputs full of NaN,
+-inf and -0.0. No compiles: the references and the interpreter device only."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest

from sol.autodiff import differentiate
from sol.debug import run_reference
from sol.errors import SolError
from sol.ir import Graph, Node, TensorType, Value
from sol.ops.registry import LayerClass, OpDef, registry
from sol.planner.partition import plan_graph
from sol.planner.plan import GroupKind
from sol.plugins import roles

from graphs import randn
from interpreter_device import InterpreterDevice, run_plan

Body = Callable[[Graph, list[Value]], Value]


def _op(g: Graph, name: str, *inputs: Value, **attrs: object) -> Value:
    return g.add_node(name, list(inputs), dict(attrs)).output


def _k(g: Graph, data: object) -> Value:
    return g.add_const(np.asarray(data, dtype=np.float32))


def _channels(values: list[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32).reshape(-1, 1, 1)


_weights = np.random.default_rng(1)


def _w(*shape: int) -> np.ndarray:
    """Weights and constants: the same ones each time a case builds its graph (``_net``)."""
    return _weights.standard_normal(shape).astype(np.float32)


def _net(shapes: list[tuple[int, ...]], body: Body) -> Graph:
    global _weights
    _weights = np.random.default_rng(1)
    g = Graph("rewrite")
    xs = [g.add_input(f"x{i}", TensorType(s)) for i, s in enumerate(shapes)]
    g.outputs = [body(g, xs)]
    return g


def _special(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Normal values with NaN, +inf, -inf, -0.0 and 0.0 at a tenth of the positions."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape).astype(np.float32)
    flat = x.reshape(-1)
    where = rng.choice(flat.size, size=max(5, flat.size // 10), replace=False)
    flat[where] = np.array([np.nan, np.inf, -np.inf, -0.0, 0.0], np.float32)[np.arange(where.size) % 5]
    return x


def _inputs(g: Graph) -> list[list[np.ndarray]]:
    finite = [randn(*v.shape) for v in g.inputs]
    return [finite, [_special(v.shape, i) for i, v in enumerate(g.inputs)]]


def _check(build: Callable[[], Graph], expected: list[str], training: bool = False, exact: bool = True) -> list[str]:
    """Run the passes on a fresh graph; its ops must be ``expected`` afterwards and compute what
    the graph computed before, input for input. Returns the passes that changed something."""
    before = build()
    after = build()
    applied = roles().passes.run(after, training=training)
    assert [n.op for n in after.nodes] == expected
    for xs in _inputs(before):
        with np.errstate(all="ignore"):  # inf - inf and the like, in both graphs alike
            wants, gots = run_reference(before, xs), run_reference(after, xs)
        for want, got in zip(wants, gots):
            if exact:
                np.testing.assert_array_equal(got, want)
            else:
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, equal_nan=True)
    return applied


# --- the op table's claim ----------------------------------------------------------------------

GRID = np.array([-np.inf, -3e38, -1e5, -7.5, -3.0, -2.5, -1.0, -0.5, -1e-30, -0.0, 0.0, 1e-30, 0.5, 1.0, 2.5,
                 3.0, 7.5, 1e5, 3e38, np.inf], np.float32)


def _monotone_ops() -> list[str]:
    return [name for name in registry.names() if registry.get(name).monotone is not False]


@pytest.mark.parametrize("name", _monotone_ops())
def test_ops_marked_monotone_never_decrease_and_keep_nan(name: str) -> None:
    """What the pass relies on, checked on each marked op's reference: non-decreasing over a
    sorted grid from -inf to +inf, NaN for NaN and for nothing else."""
    attrs = registry.get(name).normalize_attrs({}, [TensorType(GRID.shape)])
    node = Node(name, [], attrs)
    monotone = registry.get(name).monotone
    assert monotone(node) if callable(monotone) else monotone
    with np.errstate(over="ignore"):  # exp and sinh overflow to inf, as they should
        y = registry.run_reference(node, [GRID])[0]
    assert not np.isnan(y).any(), (name, y)
    assert np.all(y[1:] >= y[:-1]), (name, y)
    assert np.isnan(registry.run_reference(node, [np.array([np.nan], np.float32)])[0]).all()


def test_monotone_depends_on_attributes_where_they_decide() -> None:
    leaky, sign = registry.get("leaky_relu").monotone, registry.get("sign").monotone
    assert callable(leaky) and callable(sign)
    assert leaky(Node("leaky_relu", [], {"alpha": 0.2}))
    for alpha in (0.0, -0.1, math.inf, math.nan):  # 0 * -inf is NaN; a negative slope reverses
        assert not leaky(Node("leaky_relu", [], {"alpha": alpha}))
    assert sign(Node("sign", [], {"nan": "keep"})) and not sign(Node("sign", [], {"nan": "zero"}))
    for name in ("gelu", "silu", "abs", "neg", "log", "sqrt", "cos"):
        assert registry.get(name).monotone is False


def test_only_unary_elementwise_ops_can_be_declared_monotone() -> None:
    def ref(xs: list[np.ndarray], a: dict) -> list[np.ndarray]:
        return xs

    for layer_class, arity in ((LayerClass.IO_BOUND, (1, 1)), (LayerClass.ELEMENTWISE, (2, 2))):
        with pytest.raises(SolError, match="only a unary element-wise op can be monotone"):
            OpDef("mono", layer_class, lambda types, a: types[:1], ref, arity, monotone=True).check()


# --- monotone ops past max pooling -------------------------------------------------------------

MONOTONE_CASES: dict[str, tuple[Body, list[str]]] = {
    "relu 2x2": (lambda g, x: _op(g, "max_pool2d", _op(g, "relu", x[0]), kernel=2), ["max_pool2d", "relu"]),
    "leaky_relu 3x3/2 padded ceil_mode": (
        lambda g, x: _op(g, "max_pool2d", _op(g, "leaky_relu", x[0], alpha=0.1), kernel=3, stride=2, padding=1,
                         ceil_mode=True), ["max_pool2d", "leaky_relu"]),
    "relu6 dilated, every window on the input": (
        lambda g, x: _op(g, "max_pool2d", _op(g, "clamp", x[0], min=0.0, max=6.0), kernel=2, stride=2, padding=1,
                         dilation=2), ["max_pool2d", "clamp"]),
    # A folded BatchNorm (positive scale, any shift) and a ReLU: the whole chain moves.
    "scale, shift, relu": (
        lambda g, x: _op(g, "max_pool2d", _op(g, "relu", _op(g, "add", _op(
            g, "mul", x[0], _k(g, _channels([0.5, 2.0, 1e-3]))), _k(g, [[[-1.0]], [[0.0]], [[3.0]]]))),
            kernel=2), ["max_pool2d", "mul", "add", "relu"]),
    "x - k, x / k, k * x": (
        lambda g, x: _op(g, "max_pool2d", _op(g, "mul", _k(g, 3.0), _op(g, "div", _op(
            g, "sub", x[0], _k(g, _channels([1.0, -2.0, 0.0]))), _k(g, _channels([4.0, 0.25, 1.0])))), kernel=2),
        ["max_pool2d", "sub", "div", "mul"]),
}


@pytest.mark.parametrize("case", list(MONOTONE_CASES))
def test_monotone_ops_move_past_max_pooling(case: str) -> None:
    body, expected = MONOTONE_CASES[case]
    applied = _check(lambda: _net([(2, 3, 7, 7)], body), expected)
    assert "monotone_past_max_pool" in applied


@pytest.mark.parametrize("name", _monotone_ops())
def test_every_monotone_op_moves_and_keeps_its_values(name: str) -> None:
    """sigmoid, tanh, exp, erf, floor, ...: the NumPy references of both orders agree exactly."""
    _check(lambda: _net([(1, 2, 6, 6)], lambda g, x: _op(g, "max_pool2d", _op(g, name, x[0]), kernel=2)),
           ["max_pool2d", name])


MONOTONE_STAYS: dict[str, Body] = {
    "leaky_relu alpha < 0": lambda g, x: _op(g, "max_pool2d", _op(g, "leaky_relu", x[0], alpha=-0.1), kernel=2),
    "leaky_relu alpha = 0": lambda g, x: _op(g, "max_pool2d", _op(g, "leaky_relu", x[0], alpha=0.0), kernel=2),
    "gelu (dips below 0)": lambda g, x: _op(g, "max_pool2d", _op(g, "gelu", x[0]), kernel=2),
    "sign with NaN as 0": lambda g, x: _op(g, "max_pool2d", _op(g, "sign", x[0], nan="zero"), kernel=2),
    "TensorFlow's NaN rule": lambda g, x: _op(g, "max_pool2d", _op(g, "relu", x[0]), kernel=2, nan="ignore"),
    "3x3 stride 1: no fewer elements": lambda g, x: _op(g, "max_pool2d", _op(g, "relu", x[0]), kernel=3, stride=1,
                                                        padding=1),
    "negative scale": lambda g, x: _op(g, "max_pool2d", _op(g, "mul", x[0], _k(g, _channels([1.0, -1.0, 2.0]))),
                                       kernel=2),
    "scale 0": lambda g, x: _op(g, "max_pool2d", _op(g, "mul", x[0], _k(g, 0.0)), kernel=2),
    "k - x": lambda g, x: _op(g, "max_pool2d", _op(g, "sub", _k(g, 1.0), x[0]), kernel=2),
    "x / k, k < 0": lambda g, x: _op(g, "max_pool2d", _op(g, "div", x[0], _k(g, -2.0)), kernel=2),
    "infinite shift": lambda g, x: _op(g, "max_pool2d", _op(g, "add", x[0], _k(g, np.inf)), kernel=2),
    "shift varying over the image": lambda g, x: _op(g, "max_pool2d", _op(g, "add", x[0], _k(g, _w(1, 7, 7))),
                                                     kernel=2),
    "dynamic shift": lambda g, x: _op(g, "max_pool2d", _op(g, "add", x[0], x[1]), kernel=2),
}


@pytest.mark.parametrize("case", list(MONOTONE_STAYS))
def test_max_pooling_keeps_what_does_not_commute_or_pay(case: str) -> None:
    body = MONOTONE_STAYS[case]
    shapes = [(2, 3, 7, 7), (2, 3, 7, 7)] if case == "dynamic shift" else [(2, 3, 7, 7)]
    g = _net(shapes, body)
    expected = [n.op for n in g.nodes]
    applied = _check(lambda: _net(shapes, body), expected)
    assert "monotone_past_max_pool" not in applied


def test_a_value_read_twice_or_returned_stays_before_the_pooling() -> None:
    def twice(g: Graph, x: list[Value]) -> Value:
        r = _op(g, "relu", x[0])
        return _op(g, "add", _op(g, "max_pool2d", r, kernel=2), _op(g, "avg_pool2d", r, kernel=2))

    _check(lambda: _net([(1, 3, 6, 6)], twice), ["relu", "max_pool2d", "avg_pool2d", "add"])

    def returned() -> Graph:
        g = Graph("returned")
        r = _op(g, "relu", g.add_input("x", TensorType((1, 3, 6, 6))))
        g.outputs = [_op(g, "max_pool2d", r, kernel=2), r]
        return g

    _check(returned, ["relu", "max_pool2d"])


def _dilated_pool(g: Graph, x: Value) -> Value:
    # 2x2 input, padding 1, kernel 2 with dilation 3: the one window reads the two paddings only.
    return _op(g, "max_pool2d", x, kernel=2, stride=1, padding=1, dilation=3)


def test_a_window_of_only_padding_keeps_the_op_before_the_pooling() -> None:
    """Max pooling gives -inf for such a window; relu after it would give 0."""
    build = lambda: _net([(1, 2, 2, 2)], lambda g, x: _dilated_pool(g, _op(g, "relu", x[0])))  # noqa: E731
    _check(build, ["relu", "max_pool2d"])
    swapped = _net([(1, 2, 2, 2)], lambda g, x: _op(g, "relu", _dilated_pool(g, x[0])))
    x = randn(1, 2, 2, 2)
    assert np.all(run_reference(build(), [x])[0] == -np.inf)
    assert np.all(run_reference(swapped, [x])[0] == 0)  # what the move would have computed


def test_training_moves_the_forward_and_keeps_the_gradient_routing_of_the_imported_graph() -> None:
    """clamp(max=0.5) ties two window elements at 0.5: max pooling's gradient goes to the first,
    whose input is 0.5 (torch.clamp passes the gradient at the bound), not to the input's
    maximum 0.7, which the clamp cut. The backward graph is differentiated before the passes run,
    so moving the clamp in the forward graph leaves that routing alone."""
    g = _net([(1, 1, 2, 2)], lambda g, x: _op(g, "max_pool2d", _op(g, "clamp", x[0], max=0.5), kernel=2))
    diff = differentiate(g, [g.inputs[0]])
    assert "monotone_past_max_pool" in roles().passes.run(diff.forward, training=True)
    assert [n.op for n in diff.forward.nodes] == ["max_pool2d", "clamp"]
    roles().passes.run(diff.backward, training=True)
    x = np.array([[[[0.5, 0.7], [0.1, -1.0]]]], np.float32)
    outs = run_reference(diff.forward, [x])
    np.testing.assert_array_equal(outs[0], [[[[0.5]]]])
    saved = [x if s.kind == "input" else outs[s.index] for s in diff.saved]
    (gx,) = run_reference(diff.backward, saved + [np.full((1, 1, 1, 1), 3.0, np.float32)])
    np.testing.assert_array_equal(gx, [[[[3.0, 0.0], [0.0, 0.0]]]])


# --- linear ops past average pooling -----------------------------------------------------------

def _conv(g: Graph, x: Value, out: int, k: int = 1, bias: bool = False, weight: np.ndarray | None = None,
          **attrs: object) -> Value:
    c = x.shape[1] // int(attrs.get("groups", 1))  # type: ignore[call-overload]
    w = g.add_param(g.fresh_name("w"), _w(out, c, k, k) if weight is None else weight)
    inputs = [x, w] + ([g.add_param(g.fresh_name("b"), _w(out))] if bias else [])
    return g.add_node("conv2d", inputs, dict(attrs)).output


LINEAR_CASES: dict[str, tuple[Body, list[str]]] = {
    # DenseNet's transition: BN (an affine here), ReLU, 1x1 convolution, 2x2 average pooling.
    "densenet transition": (
        lambda g, x: _op(g, "avg_pool2d", _conv(g, _op(g, "relu", _op(g, "add", _op(
            g, "mul", x[0], _k(g, _channels([0.5, 2.0, 1.0, 3.0]))), _k(g, _channels([1.0, -1.0, 0.0, 0.5])))), 2),
            kernel=2), ["mul", "add", "relu", "avg_pool2d", "conv2d"]),
    "1x1 conv, groups 2": (lambda g, x: _op(g, "avg_pool2d", _conv(g, x[0], 6, groups=2), kernel=2),
                           ["avg_pool2d", "conv2d"]),
    # Without a bias the padding of the average is a 0 of the convolution too: any divisor.
    "1x1 conv, counted padding": (
        lambda g, x: _op(g, "avg_pool2d", _conv(g, x[0], 3), kernel=3, stride=2, padding=1, count_include_pad=True),
        ["avg_pool2d", "conv2d"]),
    "1x1 conv + bias, uncounted padding, ceil_mode": (
        lambda g, x: _op(g, "avg_pool2d", _conv(g, x[0], 3, bias=True), kernel=3, stride=2, padding=1,
                         count_include_pad=False, ceil_mode=True), ["avg_pool2d", "conv2d", "add"]),
    "1x1 conv + bias, global average": (
        lambda g, x: _op(g, "adaptive_avg_pool2d", _conv(g, x[0], 5, bias=True), output_size=1),
        ["adaptive_avg_pool2d", "conv2d", "add"]),
    "scale, divisor": (lambda g, x: _op(g, "avg_pool2d", _op(g, "mul", x[0], _k(g, _channels([1, -2, 0, 3]))),
                                        kernel=2, divisor=3), ["avg_pool2d", "mul"]),
    "shift, divisor = window size": (lambda g, x: _op(g, "avg_pool2d", _op(g, "add", x[0], _k(g, 2.0)), kernel=2,
                                                      divisor=4), ["avg_pool2d", "add"]),
    "k - x, x / k, -x": (
        lambda g, x: _op(g, "avg_pool2d", _op(g, "neg", _op(g, "div", _op(g, "sub", _k(g, _channels([1, 2, 3, 4])),
                                                                          x[0]), _k(g, -4.0))), kernel=2),
        ["avg_pool2d", "sub", "div", "neg"]),
}


@pytest.mark.parametrize("case", list(LINEAR_CASES))
def test_linear_ops_move_past_average_pooling(case: str) -> None:
    body, expected = LINEAR_CASES[case]
    applied = _check(lambda: _net([(2, 4, 8, 8)], body), expected, exact=False)
    assert "linear_past_avg_pool" in applied


def _inf_weight() -> np.ndarray:
    w = _w(3, 4, 1, 1)
    w[1, 2] = np.inf
    return w


LINEAR_STAYS: dict[str, Body] = {
    "shift, counted padding": lambda g, x: _op(g, "avg_pool2d", _op(g, "add", x[0], _k(g, 1.0)), kernel=3, stride=2,
                                               padding=1),
    "shift, divisor 3": lambda g, x: _op(g, "avg_pool2d", _op(g, "add", x[0], _k(g, 1.0)), kernel=2, divisor=3),
    "conv + bias, counted padding": lambda g, x: _op(g, "avg_pool2d", _conv(g, x[0], 3, bias=True), kernel=3,
                                                     stride=2, padding=1),
    "strided 1x1 conv": lambda g, x: _op(g, "avg_pool2d", _conv(g, x[0], 3, stride=2), kernel=2),
    "3x3 conv": lambda g, x: _op(g, "avg_pool2d", _conv(g, x[0], 3, k=3, padding=1), kernel=2),
    "padded 1x1 conv": lambda g, x: _op(g, "avg_pool2d", _conv(g, x[0], 3, padding=1), kernel=2),
    "infinite weight": lambda g, x: _op(g, "avg_pool2d", _conv(g, x[0], 3, weight=_inf_weight()), kernel=2),
    # Same-size pooling of 4 channels instead of 2: more work, not less.
    "3x3 stride 1 onto fewer channels": lambda g, x: _op(g, "avg_pool2d", _conv(g, x[0], 2), kernel=3, stride=1,
                                                         padding=1, count_include_pad=False),
    "x / 0": lambda g, x: _op(g, "avg_pool2d", _op(g, "div", x[0], _k(g, _channels([1, 0, 2, 3]))), kernel=2),
    "infinite scale": lambda g, x: _op(g, "avg_pool2d", _op(g, "mul", x[0], _k(g, np.inf)), kernel=2),
    "relu (not linear)": lambda g, x: _op(g, "avg_pool2d", _op(g, "relu", x[0]), kernel=2),
}


@pytest.mark.parametrize("case", list(LINEAR_STAYS))
def test_average_pooling_keeps_what_does_not_commute_or_pay(case: str) -> None:
    body = LINEAR_STAYS[case]
    expected = [n.op for n in _net([(2, 4, 8, 8)], body).nodes]
    if "bias" in case:
        expected = ["conv2d", "add", "avg_pool2d"]  # split_bias made the bias an add
    applied = _check(lambda: _net([(2, 4, 8, 8)], body), expected, exact=False)
    assert "linear_past_avg_pool" not in applied


def test_counted_padding_with_a_shift_would_change_the_border() -> None:
    """Why the shift stays: avg(x + 1) at a corner window of 4 inputs and 5 padded zeros is
    avg(x) + 4/9, not avg(x) + 1."""
    pool = dict(kernel=3, stride=2, padding=1)
    kept = _net([(1, 1, 4, 4)], lambda g, x: _op(g, "avg_pool2d", _op(g, "add", x[0], _k(g, 1.0)), **pool))
    moved = _net([(1, 1, 4, 4)], lambda g, x: _op(g, "add", _op(g, "avg_pool2d", x[0], **pool), _k(g, 1.0)))
    x = np.zeros((1, 1, 4, 4), np.float32)
    assert run_reference(kept, [x])[0][0, 0, 0, 0] == pytest.approx(4 / 9)
    assert run_reference(moved, [x])[0][0, 0, 0, 0] == 1.0


def test_linear_moves_run_for_training_too() -> None:
    """Linear maps commute in the backward pass as well (their transposes, in either order)."""
    body = LINEAR_CASES["scale, divisor"][0]
    applied = _check(lambda: _net([(2, 4, 8, 8)], body), ["avg_pool2d", "mul"], training=True, exact=False)
    assert "linear_past_avg_pool" in applied


# --- through a concat --------------------------------------------------------------------------

def _fire(op: str, pool: str, **attrs: object) -> Body:
    """SqueezeNet's Fire: two branches, each ending in ``op``, concatenated, then a pooling."""
    def body(g: Graph, x: list[Value]) -> Value:
        a, b = _op(g, op, x[0]), _op(g, op, x[1])
        return _op(g, pool, _op(g, "concat", a, b, axis=1), **attrs)
    return body


def _scaled_parts(g: Graph, x: list[Value]) -> Value:
    a = _op(g, "mul", x[0], _k(g, _channels([0.5, -2.0, 3.0])))
    b = _op(g, "mul", _k(g, 4.0), x[1])  # a scalar: broadcast over b's 5 channels
    return _op(g, "avg_pool2d", _op(g, "concat", a, b, axis=1), kernel=2)


def test_an_op_on_every_part_of_a_concat_moves_past_concat_and_pooling() -> None:
    shapes = [(2, 3, 7, 7), (2, 5, 7, 7)]
    _check(lambda: _net(shapes, _fire("relu", "max_pool2d", kernel=3, stride=2, ceil_mode=True)),
           ["concat", "max_pool2d", "relu"])
    _check(lambda: _net(shapes, _scaled_parts), ["concat", "avg_pool2d", "mul"], exact=False)
    g = _net(shapes, _scaled_parts)
    roles().passes.run(g)
    k = g.nodes[-1].inputs[1]
    np.testing.assert_array_equal(k.data.reshape(-1), [0.5, -2.0, 3.0, 4, 4, 4, 4, 4])


def test_a_concat_of_different_ops_or_of_parts_read_elsewhere_stays() -> None:
    shapes = [(2, 3, 6, 6), (2, 5, 6, 6)]

    def mixed(g: Graph, x: list[Value]) -> Value:
        return _op(g, "max_pool2d", _op(g, "concat", _op(g, "relu", x[0]), _op(g, "tanh", x[1]), axis=1), kernel=2)

    _check(lambda: _net(shapes, mixed), ["relu", "tanh", "concat", "max_pool2d"])

    def read_elsewhere(g: Graph, x: list[Value]) -> Value:
        a, b = _op(g, "relu", x[0]), _op(g, "relu", x[1])
        pooled = _op(g, "max_pool2d", _op(g, "concat", a, b, axis=1), kernel=2)
        return _op(g, "concat", pooled, _op(g, "max_pool2d", a, kernel=2), axis=1)

    _check(lambda: _net(shapes, read_elsewhere), ["relu", "relu", "concat", "max_pool2d", "max_pool2d", "concat"])


# --- the plan ----------------------------------------------------------------------------------

def test_planned_conv_writes_its_raw_result_and_the_pooling_loop_applies_bias_and_relu() -> None:
    """Before the move the planner keeps bias and ReLU out of the convolution's library call
    anyway (they lead into the pooling, whose loop nest computes them per input element); after
    it the same loop nest computes them per output element: nothing a library absorbed is lost."""
    def body(g: Graph, x: list[Value]) -> Value:
        return _op(g, "max_pool2d", _op(g, "relu", _conv(g, x[0], 6, k=3, bias=True, padding=1)), kernel=2)

    g = _net([(2, 4, 8, 8)], body)
    x = randn(2, 4, 8, 8)
    want = run_reference(g, [x])[0]
    roles().passes.run(g)
    from test_planner import ToyLibrary

    plan = plan_graph(g, InterpreterDevice(1 << 20), [ToyLibrary()])
    assert [(grp.kind, [n.op for n in grp.nodes]) for grp in plan.groups] == [
        (GroupKind.LIBRARY, ["conv2d"]), (GroupKind.FUSED, ["max_pool2d", "add", "relu"])]
    np.testing.assert_allclose(run_plan(plan, [x])[0], want, rtol=1e-5, atol=1e-6)
