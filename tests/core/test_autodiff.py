"""Core autodiff: every registered op's gradient rule against central finite differences of its
NumPy reference (float64, on the conformance cases), and the save/recompute bookkeeping of
``differentiate``. Devices are not involved here (see tests/core/test_training.py)."""

from __future__ import annotations

import math
import os
import sys

import numpy as np
import pytest

from sol.autodiff import differentiate, params_to_inputs
from sol.debug import run_reference
from sol.errors import SolError
from sol.ir import Graph, TensorType, ValueKind
from sol.ops.registry import registry

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "conformance"))
from cases import CASES, Input, in_domain  # noqa: E402

MAX_CHECKED = 48  # elements per input checked by finite differences


def _is_float(dtype: str) -> bool:
    return dtype.startswith("float")


def _case_data(op: str, shapes: list, rng: np.random.Generator) -> list[np.ndarray]:
    out = []
    for i, spec in enumerate(shapes):
        if isinstance(spec, Input) and not _is_float(spec.dtype):
            if spec.dtype == "bool":
                out.append(rng.random(spec.shape) < 0.5)
            else:
                out.append(rng.integers(spec.low, spec.high, spec.shape).astype(spec.dtype))
            continue
        shape = spec.shape if isinstance(spec, Input) else spec
        # Standard normal float64 (also where the conformance case asks for integer-valued
        # floats: exact ties are kinks, where finite differences are meaningless).
        out.append(in_domain(op, i, rng.standard_normal(shape)))  # positive for logs, (-1, 1) for asin...
    return out


def _single_op_graph(op: str, data: list[np.ndarray], attrs: dict) -> Graph:
    g = Graph(f"grad_{op}")
    ins = [g.add_input(f"x{i}", TensorType(a.shape, str(a.dtype))) for i, a in enumerate(data)]
    g.outputs.extend(g.add_node(op, ins, attrs).outputs)
    return g


def _backward_inputs(diff, feeds: list[np.ndarray], grads: list[np.ndarray]) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    outs = run_reference(diff.forward, feeds)
    saved = [feeds[s.index] if s.kind == "input" else outs[s.index] for s in diff.saved]
    return saved + grads


def check_rule(op: str, data: list[np.ndarray], attrs: dict, seed: int = 0, eps: float = 1e-6,
               rtol: float = 1e-5, atol: float = 1e-7) -> None:
    """Gradients of L = sum_k <out_k, R_k> from the backward graph against central differences."""
    rng = np.random.default_rng(seed)
    g = _single_op_graph(op, data, attrs)
    wrt = [v for v in g.inputs if _is_float(v.dtype)]
    assert wrt, f"{op}: no floating-point input in this case"
    diff = differentiate(g, wrt)
    if not diff.grad_outputs:
        # No differentiable output: the rule must give no gradient (the backward returns zeros).
        got = run_reference(diff.backward, _backward_inputs(diff, data, []))
        for v in got:
            assert not np.any(v)
        return
    weights = [rng.standard_normal(g.outputs[i].shape) for i in diff.grad_outputs]

    def loss(feeds: list[np.ndarray]) -> float:
        outs = run_reference(g, feeds)
        return float(sum(np.sum(outs[i] * w) for i, w in zip(diff.grad_outputs, weights)))

    got = run_reference(diff.backward, _backward_inputs(diff, data, weights))
    positions = [i for i, v in enumerate(g.inputs) if _is_float(v.dtype)]
    for k, i in enumerate(positions):
        assert got[k].shape == data[i].shape and got[k].dtype == data[i].dtype
        # Every element of small inputs; a random sample of large ones (weights of recurrent
        # layers): each element costs two evaluations of the reference.
        indices = list(np.ndindex(data[i].shape))
        if len(indices) > MAX_CHECKED:
            indices = [indices[j] for j in rng.choice(len(indices), MAX_CHECKED, replace=False)]
        numeric = np.array([_central(loss, data, i, idx, eps) for idx in indices])
        analytic = np.array([got[k][idx] for idx in indices])
        np.testing.assert_allclose(analytic, numeric, rtol=rtol, atol=atol * max(1.0, float(np.abs(numeric).max())),
                                   err_msg=f"{op} {attrs}: gradient of input {i} at {indices}")


def _central(loss, data: list[np.ndarray], i: int, idx: tuple[int, ...], eps: float) -> float:  # type: ignore[no-untyped-def]
    plus = [a.copy() for a in data]
    minus = [a.copy() for a in data]
    plus[i][idx] += eps
    minus[i][idx] -= eps
    return (loss(plus) - loss(minus)) / (2 * eps)


def _not_the_derivative(op: str, attrs: dict) -> bool:
    """Rules that give, on purpose, another gradient than the derivative of the reference:
    gradient stops and PyTorch's padding_idx (tested against their own expectation below), and
    the scatter reductions sol refuses to train through (tests/pytorch/test_opinfo_scatter)."""
    from sol.autodiff.rules.special import refused

    return op == "stop_gradient" or (op == "gather" and attrs.get("padding") is not None) or (
        op == "scatter_elements" and attrs.get("reduction") in ("prod", "amax", "amin")) or (  # refused: no rule
        registry.get(op).gradient is refused)  # special functions sol does not train through (sol.ops.special)


def _finite_attrs(attrs: dict) -> bool:
    """A -inf or NaN pad value makes those output elements, and so the probed loss, non-finite:
    finite differences are undefined there (the same op's finite cases check its rule)."""
    return all(not isinstance(v, float) or math.isfinite(v) for v in attrs.values())


def _cases() -> list:
    params = []
    for op in registry.names():
        for ci, (shapes, attrs) in enumerate(CASES.get(op, [])):
            # Cases with no floating-point input have nothing to differentiate.
            floats = any(not isinstance(s, Input) or _is_float(s.dtype) for s in shapes)
            if floats and not _not_the_derivative(op, attrs) and _finite_attrs(attrs):
                params.append(pytest.param(op, ci, id=f"{op}-{ci}"))
    return params


@pytest.mark.parametrize("op,ci", _cases())
def test_rule_matches_finite_differences(op: str, ci: int) -> None:
    shapes, attrs = CASES[op][ci]
    rng = np.random.default_rng(ci)
    data = _case_data(op, shapes, rng)
    if attrs.get("dtype") == "float32":  # a float32 result: finite differences need a larger step
        check_rule(op, data, attrs, seed=ci, eps=1e-2, rtol=1e-4, atol=1e-5)
    else:
        check_rule(op, data, attrs, seed=ci)


def test_every_registered_op_has_a_gradient_rule() -> None:
    missing = [n for n in registry.names() if registry.get(n).gradient is None]
    assert not missing, f"ops without a gradient rule: {missing}"


def test_every_registered_op_has_gradient_cases() -> None:
    assert set(registry.names()) <= set(CASES)


# --- extra cases the conformance set does not stress ----------------------------------------


@pytest.mark.parametrize("attrs", [
    {"kernel": 3, "stride": 2, "padding": 1, "ceil_mode": True},
    {"kernel": (2, 3), "stride": (1, 2), "padding": (1, 1), "count_include_pad": False, "ceil_mode": True},
    {"kernel": 3, "stride": 2, "padding": 1, "divisor": 5},
])
def test_avg_pool_gradient_with_ceil_and_divisor(attrs: dict) -> None:
    rng = np.random.default_rng(3)
    check_rule("avg_pool2d", [rng.standard_normal((1, 2, 7, 8))], attrs)


def test_max_pool_gradient_goes_to_the_first_maximum_on_ties() -> None:
    x = np.zeros((1, 1, 2, 2))
    g = _single_op_graph("max_pool2d", [x], {"kernel": 2})
    diff = differentiate(g, [g.inputs[0]])
    (gx,) = run_reference(diff.backward, _backward_inputs(diff, [x], [np.ones((1, 1, 1, 1))]))
    np.testing.assert_array_equal(gx, [[[[1.0, 0.0], [0.0, 0.0]]]])


def test_conv_gradient_stride_and_asymmetric_padding() -> None:
    rng = np.random.default_rng(4)
    data = [rng.standard_normal((2, 4, 7, 6)), rng.standard_normal((6, 2, 3, 2)), rng.standard_normal(6)]
    check_rule("conv2d", data, {"stride": (2, 1), "padding": ((1, 0), (0, 2)), "dilation": (1, 2), "groups": 2})


def test_conv_backward_ops_are_differentiable() -> None:
    rng = np.random.default_rng(5)
    attrs = {"stride": 2, "padding": 1, "groups": 1}
    check_rule("conv2d_backward_data", [rng.standard_normal((1, 3, 3, 3)), rng.standard_normal((3, 2, 3, 3))],
               {**attrs, "shape": (1, 2, 6, 6)})
    check_rule("conv2d_backward_weight", [rng.standard_normal((1, 2, 6, 6)), rng.standard_normal((1, 3, 3, 3))],
               {**attrs, "shape": (3, 2, 3, 3)})


@pytest.mark.parametrize("attrs", [{"min": -0.3, "max": 0.4}, {"min": None, "max": 0.1}])
def test_clamp_and_pow_at_special_points(attrs: dict) -> None:
    rng = np.random.default_rng(6)
    check_rule("clamp", [rng.standard_normal((3, 4))], attrs)
    # pow with a = 0 and b = 0 takes PyTorch's zeros, not NaN
    g = _single_op_graph("pow", [np.zeros(2), np.array([0.0, 2.0])], {})
    diff = differentiate(g, g.inputs)
    ga, gb = run_reference(diff.backward, _backward_inputs(diff, [np.zeros(2), np.array([0.0, 2.0])],
                                                           [np.ones(2)]))
    np.testing.assert_array_equal(ga, [0.0, 0.0])
    np.testing.assert_array_equal(gb, [0.0, 0.0])


# --- differentiate: what is saved, multi-use values, parameters --------------------------------


def _mlp() -> Graph:
    rng = np.random.default_rng(7)
    g = Graph("mlp")
    x = g.add_input("x", TensorType((4, 6), "float64"))
    w1 = g.add_param("w1", rng.standard_normal((5, 6)))
    b1 = g.add_param("b1", rng.standard_normal(5))
    w2 = g.add_param("w2", rng.standard_normal((3, 5)))
    h = g.add_node("relu", [g.add_node("dense", [x, w1, b1]).output]).output
    y = g.add_node("dense", [h, w2]).output
    # h is used twice: by the second layer and by a residual-like sum
    s = g.add_node("sum", [h], {"axes": (1,), "keepdims": True}).output
    g.outputs = [g.add_node("add", [y, s]).output]
    return g


def test_parameters_in_wrt_become_inputs_and_the_graph_is_untouched() -> None:
    g = _mlp()
    before = str(g)
    diff = differentiate(g, ["w1", "b1", "w2", "x"])
    assert str(g) == before
    names = [v.name for v in diff.forward.inputs]
    assert names == ["x", "w1", "b1", "w2"]
    assert diff.wrt_inputs == [1, 2, 3, 0]
    assert not diff.forward.params
    assert [v.name for v in diff.backward.outputs] and len(diff.backward.outputs) == 4


def test_multi_use_gradients_accumulate_and_match_finite_differences() -> None:
    g = _mlp()
    feeds = [np.random.default_rng(8).standard_normal((4, 6))]
    params = {p.name: p.data for p in g.params}
    diff = differentiate(g, ["x", "w1", "b1", "w2"])
    full = [feeds[0], params["w1"], params["b1"], params["w2"]]
    r = np.random.default_rng(9).standard_normal((4, 3))
    got = run_reference(diff.backward, _backward_inputs(diff, full, [r]))

    def loss(arrays: list[np.ndarray]) -> float:
        return float(np.sum(run_reference(diff.forward, arrays)[0] * r))

    for k, i in enumerate(diff.wrt_inputs):
        numeric = np.zeros_like(full[i])
        for idx in np.ndindex(full[i].shape):
            p, m = [a.copy() for a in full], [a.copy() for a in full]
            p[i][idx] += 1e-6
            m[i][idx] -= 1e-6
            numeric[idx] = (loss(p) - loss(m)) / 2e-6
        np.testing.assert_allclose(got[k], numeric, rtol=1e-5, atol=1e-8)


def test_only_what_rules_need_is_saved_and_elementwise_values_are_recomputed() -> None:
    g = _mlp()
    diff = differentiate(g, ["w1", "b1", "w2"])  # x needs no gradient
    saved_kinds = [(s.kind, diff.forward.outputs[s.index].producer.op if s.kind == "output" else None)
                   for s in diff.saved]
    # x (an input: passed through, not copied) and the first dense layer's pre-activation; the
    # ReLU output the second layer's weight gradient needs is recomputed from it.
    assert ("input", None) in saved_kinds
    assert saved_kinds.count(("output", "add")) + saved_kinds.count(("output", "dense")) == 1
    assert not any(op == "relu" for _, op in saved_kinds)
    assert [n.op for n in diff.forward.nodes if n.outputs[0].name in diff.recomputed] == ["relu"]
    assert diff.backward.nodes[0].op == "relu"  # recomputed first, then fused with its readers


def test_frozen_weights_save_nothing_for_their_gradient() -> None:
    rng = np.random.default_rng(10)
    g = Graph("frozen")
    x = g.add_input("x", TensorType((2, 3), "float64"))
    w = g.add_param("w", rng.standard_normal((4, 3)))
    g.outputs = [g.add_node("dense", [x, w]).output]
    diff = differentiate(g, ["x"])
    assert diff.saved == []  # dx = g W reads only the (frozen) weight, placed as a parameter
    assert [p.name for p in diff.backward.params] == ["w"]


def test_output_without_dependence_gets_zero_gradient_and_errors_are_clear() -> None:
    g = Graph("two")
    x = g.add_input("x", TensorType((3,), "float64"))
    g.add_input("z", TensorType((3,), "float64"))
    g.outputs = [g.add_node("exp", [x]).output]
    diff = differentiate(g, ["x", "z"])
    _, gz = run_reference(diff.backward, _backward_inputs(diff, [np.zeros(3), np.ones(3)], [np.ones(3)]))
    np.testing.assert_array_equal(gz, np.zeros(3))
    with pytest.raises(SolError, match="not an input or parameter"):
        differentiate(g, ["nope"])
    i = Graph("ints")
    k = i.add_input("k", TensorType((3,), "int64"))
    i.outputs = [i.add_node("neg", [k]).output]
    with pytest.raises(SolError, match="not floating point"):
        differentiate(i, ["k"])


def test_params_to_inputs() -> None:
    g = _mlp()
    new = params_to_inputs(g, ["w2", g.params[0]])
    assert [v.name for v in new] == ["w2", "w1"]
    assert all(v.kind is ValueKind.INPUT for v in new)
    assert [v.name for v in g.inputs] == ["x", "w2", "w1"]
    with pytest.raises(SolError, match="not a parameter"):
        params_to_inputs(g, ["x"])


def test_lowering_knows_every_backward_op() -> None:
    """Every backward op has a C-family lowering on its OpDef: an element-wise expression or a loop
    lowering (a device without a library for the convolution gradients fuses them as loops)."""
    from sol.ops import grad_ops
    from sol.ops.registry import registry

    missing = [d.name for d in grad_ops.ops()
               if registry.get(d.name).c_expr is None and registry.get(d.name).c_loops is None]
    assert missing == []


def test_conv_batchnorm_relu_saves_only_the_convolution_result() -> None:
    """Training BatchNorm + ReLU after a convolution: the centred and normalized tensors are
    rebuilt in the backward from the convolution's result, which is the one full-size tensor
    the forward returns for the backward (the input is the caller's, handed over)."""
    g = Graph("conv_bn_relu")
    x = g.add_input("x", TensorType((2, 3, 6, 6), "float32"))
    w = g.add_input("w", TensorType((4, 3, 3, 3), "float32"))
    t = g.add_node("conv2d", [x, w], {"padding": 1}).output
    m = g.add_node("mean", [t], {"axes": (0, 2, 3)}).output
    v = g.add_node("variance", [t, m], {"axes": (0, 2, 3)}).output
    r = g.add_node("rsqrt", [g.add_node("add", [v, g.add_const(1e-5, "float32")]).output]).output
    c = g.add_node("sub", [t, g.add_node("reshape", [m], {"shape": (4, 1, 1)}).output]).output
    y = g.add_node("mul", [c, g.add_node("reshape", [r], {"shape": (4, 1, 1)}).output]).output
    g.outputs = [g.add_node("relu", [y]).output]
    diff = differentiate(g, ["x", "w"])
    extra = diff.forward.outputs[diff.num_outputs:]
    full = [e for e in extra if e.type.numel == t.type.numel]
    assert [e.producer.op for e in full if e.producer is not None] == ["conv2d"], [str(e) for e in extra]


@pytest.mark.parametrize("shape", [(4, 3, 5, 6), (7, 5)])
def test_training_batchnorm_gradient_matches_finite_differences(shape: tuple[int, ...]) -> None:
    """BatchNorm with the batch's own statistics (mean, variance about it, batch_norm: what a
    training-mode BatchNorm imports as) is differentiated as one function of x; its gradients
    for x, the weight and the bias against central differences, with a second reader of x and
    of the mean (their gradients add up)."""
    rng = np.random.default_rng(11)
    c = shape[1]
    axes = tuple(i for i in range(len(shape)) if i != 1)
    g = Graph("bn_train")
    x = g.add_input("x", TensorType(shape, "float64"))
    w = g.add_input("w", TensorType((c,), "float64"))
    b = g.add_input("b", TensorType((c,), "float64"))
    m = g.add_node("mean", [x], {"axes": axes}).output
    v = g.add_node("variance", [x, m], {"axes": axes}).output
    y = g.add_node("batch_norm", [x, m, v, w, b], {"eps": 1e-5, "axis": 1}).output
    z = g.add_node("mul", [y, g.add_node("tanh", [x]).output]).output
    g.outputs = [z, g.add_node("mul", [m, m]).output]
    diff = differentiate(g, ["x", "w", "b"])
    assert not any(n.op == "variance" for n in diff.backward.nodes)  # no path through the statistics
    data = [rng.standard_normal(shape) * 2.0 + 0.5, rng.standard_normal(c), rng.standard_normal(c)]
    weights = [rng.standard_normal(o.shape) for o in g.outputs]

    def loss(feeds: list[np.ndarray]) -> float:
        return float(sum(np.sum(o * r) for o, r in zip(run_reference(g, feeds), weights)))

    got = run_reference(diff.backward, _backward_inputs(diff, data, weights))
    for k, i in enumerate(diff.wrt_inputs):
        numeric = np.zeros_like(data[i])
        for idx in np.ndindex(data[i].shape):
            numeric[idx] = _central(loss, data, i, idx, 1e-6)
        np.testing.assert_allclose(got[k], numeric, rtol=1e-5, atol=1e-7 * max(1.0, float(np.abs(numeric).max())))


# --- gradient stops, padding rows, unreached inputs ----------------------------------------------


def _stopped_graph() -> Graph:
    """``y = h * stop_gradient(h) + stop_gradient(exp(z))`` with ``h = x * w``: PyTorch's
    ``h * h.detach()`` plus a term no gradient may flow through."""
    g = Graph("stopped")
    x = g.add_input("x", TensorType((3, 4), "float64"))
    w = g.add_input("w", TensorType((4,), "float64"))
    z = g.add_input("z", TensorType((3, 4), "float64"))
    h = g.add_node("mul", [x, w]).output
    held = g.add_node("stop_gradient", [h]).output
    cut = g.add_node("stop_gradient", [g.add_node("exp", [z]).output]).output
    g.outputs = [g.add_node("add", [g.add_node("mul", [h, held]).output, cut]).output]
    return g


def test_stop_gradient_passes_the_value_and_no_gradient() -> None:
    rng = np.random.default_rng(12)
    g = _stopped_graph()
    data = [rng.standard_normal((3, 4)), rng.standard_normal(4), rng.standard_normal((3, 4))]
    diff = differentiate(g, ["x", "w", "z"])
    assert diff.reached_by == [(0,), (0,), ()], "z is reached only through a stop"
    assert diff.unreached([True]) == [False, False, True] and diff.unreached([False]) == [True, True, True]
    r = rng.standard_normal((3, 4))
    gx, gw, gz = run_reference(diff.backward, _backward_inputs(diff, data, [r]))
    h = data[0] * data[1]
    np.testing.assert_allclose(gx, r * h * data[1])  # d(h * c)/dx with c = h held constant: once, not twice
    np.testing.assert_allclose(gw, np.sum(r * h * data[0], axis=0))
    np.testing.assert_array_equal(gz, np.zeros((3, 4)))
    # The reference (and so the forward value) is the identity's.
    out = run_reference(g, data)[0]
    np.testing.assert_allclose(out, h * h + np.exp(data[2]))


def test_stop_gradient_is_gone_from_every_compiled_graph() -> None:
    """Removed by canonicalization in inference and training (the forward after autodiff), so
    no device lowers it; a stop between an input and an output leaves a copy (outputs own their
    buffers)."""
    from sol.plugins import roles

    for training in (False, True):
        g = _stopped_graph()
        fwd = differentiate(g, ["x", "w"]).forward if training else g
        roles().passes.run(fwd, training=training)
        assert not any(n.op == "stop_gradient" for n in fwd.nodes), training
    g = Graph("only_stop")
    g.outputs = [g.add_node("stop_gradient", [g.add_input("x", TensorType((2,), "float32"))]).output]
    roles().passes.run(g, training=False)
    assert [n.op for n in g.nodes] == ["identity"]


@pytest.mark.parametrize("case", ["axis0", "axis1_wrap"])
def test_gather_padding_row_gets_no_gradient(case: str) -> None:
    """PyTorch's ``padding_idx``: rows that read the padding row send it nothing (with wrap,
    ``-size + row`` reads it too); every other row's gradient is the derivative's; the lookup is
    unaffected. Against central differences with the padding row's gradient zeroed."""
    rng = np.random.default_rng(13)
    if case == "axis0":
        data = [rng.standard_normal((6, 3)), np.array([[0, 1, 2, 0], [5, 0, 0, 3]], dtype=np.int64)]
        attrs = {"axis": 0, "wrap": False, "padding": 0}
    else:
        data = [rng.standard_normal((2, 5, 3)), np.array([4, -1, 1, 2, 4], dtype=np.int64)]
        attrs = {"axis": 1, "wrap": True, "padding": -1}
    g = _single_op_graph("gather", data, attrs)
    plain = _single_op_graph("gather", data, {k: v for k, v in attrs.items() if k != "padding"})
    np.testing.assert_array_equal(run_reference(g, data)[0], run_reference(plain, data)[0])
    r = rng.standard_normal(g.outputs[0].shape)
    diff = differentiate(g, ["x0"])
    (got,) = run_reference(diff.backward, _backward_inputs(diff, data, [r]))

    def loss(feeds: list[np.ndarray]) -> float:
        return float(np.sum(run_reference(plain, feeds)[0] * r))

    want = np.array([_central(loss, data, 0, idx, 1e-6) for idx in np.ndindex(data[0].shape)]).reshape(data[0].shape)
    row = g.nodes[0].attrs["padding"]
    assert row == (0 if case == "axis0" else 4)  # normalized to a row number
    np.moveaxis(want, attrs["axis"], 0)[row] = 0.0
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-8)
    assert np.any(np.moveaxis(run_reference(differentiate(plain, ["x0"]).backward,
                                            _backward_inputs(differentiate(plain, ["x0"]), data, [r]))[0],
                              attrs["axis"], 0)[row]), "without padding the row takes a gradient"
    with pytest.raises(SolError, match="padding row 6 is out of range"):
        _single_op_graph("gather", data, {"axis": 0, "padding": 6} if case == "axis0" else {"axis": 1, "padding": 6})


def test_reached_by_follows_outputs_rules_and_integer_paths() -> None:
    """Two heads: each weight is reached only by its own head's gradient; a weight behind an
    integer path (argmax) is reached by none. Frameworks report those as no gradient."""
    g = Graph("heads")
    x = g.add_input("x", TensorType((2, 4), "float64"))
    wa = g.add_input("wa", TensorType((3, 4), "float64"))
    wb = g.add_input("wb", TensorType((3, 4), "float64"))
    wc = g.add_input("wc", TensorType((3, 4), "float64"))
    a = g.add_node("dense", [x, wa]).output
    b = g.add_node("dense", [x, wb]).output
    picked = g.add_node("argmax", [g.add_node("dense", [x, wc]).output], {"axis": 1}).output
    g.outputs = [a, b, g.add_node("cast", [picked], {"dtype": "float64"}).output]
    diff = differentiate(g, ["x", "wa", "wb", "wc"])
    assert diff.grad_outputs == [0, 1, 2]
    assert diff.reached_by == [(0, 1), (0,), (1,), ()]
    assert diff.unreached([True, False, True]) == [False, False, True, True]


@pytest.mark.parametrize("op", ["max", "min"])
def test_max_ties_first_gives_the_gradient_to_the_indexed_element(op: str) -> None:
    """PyTorch's ``max(x, dim)``: the element argmax names takes the whole gradient (the first
    of equal ones); amax (ties="split") shares it."""
    x = np.array([[1.0, 3.0, 3.0, 0.0], [2.0, 2.0, 2.0, 2.0], [-1.0, -5.0, -5.0, 4.0]])
    x = -x if op == "min" else x
    g = np.array([1.0, 2.0, 3.0])
    grads = {}
    for ties in ("first", "split"):
        graph = _single_op_graph(op, [x], {"axes": (1,), "ties": ties})
        np.testing.assert_array_equal(run_reference(graph, [x])[0], (np.max if op == "max" else np.min)(x, axis=1))
        diff = differentiate(graph, ["x0"])
        grads[ties] = run_reference(diff.backward, _backward_inputs(diff, [x], [g]))[0]
    np.testing.assert_array_equal(grads["first"], [[0, 1, 0, 0], [2, 0, 0, 0], [0, 0, 0, 3]])
    np.testing.assert_allclose(grads["split"], [[0, 0.5, 0.5, 0], [0.5, 0.5, 0.5, 0.5], [0, 0, 0, 3]])
    with pytest.raises(SolError, match="ties='first' reduce one axis"):
        _single_op_graph(op, [x], {"axes": (0, 1), "ties": "first"})


@pytest.mark.parametrize("op,attrs", [("relu", {}), ("clamp", {"min": -0.5, "max": 0.5}), ("hardsigmoid", {}),
                                      ("hardswish", {})])
def test_piecewise_rules_select_so_a_nan_gradient_stops_where_the_slope_is_zero(op: str, attrs: dict) -> None:
    """PyTorch selects (``where(inside, grad, 0)``) where these ops are flat: a NaN gradient from
    above becomes 0 there, not 0 * NaN."""
    x = np.array([-4.0, -1.0, 0.2, 4.0])
    graph = _single_op_graph(op, [x], attrs)
    diff = differentiate(graph, ["x0"])
    got = run_reference(diff.backward, _backward_inputs(diff, [x], [np.full(4, np.nan)]))[0]
    flat = {"relu": [0, 1], "clamp": [0, 1, 3], "hardsigmoid": [0, 3], "hardswish": [0]}[op]
    np.testing.assert_array_equal(got[flat], 0.0)
    assert np.isnan(np.delete(got, flat)).all()


def test_hardswish_gradient_at_its_joints_is_pytorchs() -> None:
    """PyTorch 2: 0 at -3, x / 3 + 1/2 strictly inside, 1 at 3, and exactly 0 at -1.5."""
    x = np.array([-3.0, -1.5, 0.0, 3.0], dtype=np.float32)
    diff = differentiate(_single_op_graph("hardswish", [x], {}), ["x0"])
    got = run_reference(diff.backward, _backward_inputs(diff, [x], [np.ones(4, np.float32)]))[0]
    np.testing.assert_array_equal(got, np.array([0.0, 0.0, 0.5, 1.0], dtype=np.float32))
