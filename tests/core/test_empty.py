"""Empty tensors (a dimension of size 0, e.g. batch 0) on every device: what the NumPy reference
computes, without running kernels over nothing (:mod:`sol.passes.empty`)."""

from __future__ import annotations

import copy
import warnings
from typing import Any

import numpy as np
import pytest

from sol.api import compile_graph
from sol.debug import run_reference
from sol.errors import SolError, UnsupportedOpError
from sol.ir import Graph, TensorType
from sol.planner.partition import plan_graph
from sol.plugins import roles

from graphs import randn
from interpreter_device import InterpreterDevice


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "device" in metafunc.fixturenames:
        from devices import device_params

        metafunc.parametrize("device", device_params(metafunc.config))


def _batch0_net() -> Graph:
    """Batch 0 through a CNN head (conv, per-channel affine, ReLU, pooling, flatten, dense,
    softmax) and the reductions and joins that turn nothing into something."""
    g = Graph("batch0")
    x = g.add_input("x", TensorType((0, 3, 8, 8)))
    k = g.add_input("k", TensorType((4, 0)))  # rows without features
    r = g.add_input("r", TensorType((2, 5)))
    w = g.add_param("conv.weight", randn(4, 3, 3, 3))
    b = g.add_param("conv.bias", randn(4))
    mean, var = g.add_param("bn.mean", randn(4)), g.add_param("bn.var", np.abs(randn(4)) + 0.5)
    gamma, beta = g.add_param("bn.weight", randn(4)), g.add_param("bn.bias", randn(4))
    fw, fb = g.add_param("fc.weight", randn(5, 4 * 4 * 4)), g.add_param("fc.bias", randn(5))
    kw, kb = g.add_param("k.weight", randn(5, 0)), g.add_param("k.bias", randn(5))
    h = g.add_node("conv2d", [x, w, b], {"padding": 1}).output
    h = g.add_node("batch_norm", [h, mean, var, gamma, beta], {"eps": 1e-5}).output
    h = g.add_node("relu", [h]).output
    h = g.add_node("max_pool2d", [h], {"kernel": 2}).output
    h = g.add_node("reshape", [h], {"shape": (0, 64)}).output
    y = g.add_node("softmax", [g.add_node("dense", [h, fw, fb]).output], {"axis": -1}).output
    total = g.add_node("sum", [y], {"axes": (0,)}).output  # 0 per class
    average = g.add_node("mean", [y], {"axes": (0,)}).output  # NaN per class
    joined = g.add_node("concat", [y, r], {"axis": 0}).output  # r itself
    bias_only = g.add_node("dense", [k, kw, kb]).output  # no features: the bias per row
    g.outputs = [y, h, total, average, joined, bias_only]
    return g


def _inputs(g: Graph) -> list[np.ndarray]:
    return [randn(*v.shape) for v in g.inputs]


def _reference(g: Graph, xs: list[np.ndarray]) -> list[np.ndarray]:
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # NumPy's mean of nothing
        return run_reference(g, xs)


def test_batch0_gives_the_references_results(device: str) -> None:
    g = _batch0_net()
    xs = _inputs(g)
    want = _reference(copy.deepcopy(g), xs)
    program = compile_graph(g, device)
    got = program(*xs)
    assert [a.shape for a in got] == [(0, 5), (0, 64), (5,), (5,), (2, 5), (4, 5)]
    for o, w in zip(got, want):
        assert o.shape == w.shape and o.dtype == w.dtype
        np.testing.assert_allclose(o, w, rtol=1e-6)  # NaN where the reference has NaN
    assert np.isnan(got[3]).all() and not got[2].any()
    np.testing.assert_array_equal(got[4], xs[2])


def test_a_network_of_nothing_but_empty_values_plans_no_kernel(device: str) -> None:
    g = Graph("nothing")
    x = g.add_input("x", TensorType((0, 6)))
    w = g.add_param("w", randn(3, 6))
    h = g.add_node("relu", [g.add_node("dense", [x, w]).output]).output
    g.outputs = [h, x]
    program = compile_graph(g, device)
    assert program.info["plan"].groups == []
    out = program(np.zeros((0, 6), np.float32))
    assert [(a.shape, a.dtype) for a in out] == [((0, 3), np.float32), ((0, 6), np.float32)]


def test_a_scalar_computed_from_empty_operands_stays_a_scalar(device: str) -> None:
    """sum (and mean) of an empty vector is a 0-d result (torch.linalg.vecdot of two empty
    vectors, ONNX's ReduceSum of nothing). The folded constant came out with shape (1,):
    np.ascontiguousarray makes 0-d arrays 1-d."""
    g = Graph("empty_dot")
    a, b = g.add_input("a", TensorType((0,))), g.add_input("b", TensorType((0,)))
    prod = g.add_node("mul", [a, b]).output
    g.outputs = [g.add_node("sum", [prod], {"axes": (0,), "keepdims": False}).output,
                 g.add_node("mean", [prod], {"axes": (0,), "keepdims": False}).output]
    got = compile_graph(g, device)(np.zeros(0, np.float32), np.zeros(0, np.float32))
    assert [(o.shape, o.dtype) for o in got] == [((), np.float32), ((), np.float32)]
    assert got[0] == 0.0 and np.isnan(got[1])


def test_the_planner_takes_empty_values_without_dividing_by_zero() -> None:
    """The pass removes empty nodes; the planner itself also skips them (a graph planned
    without core's passes, as a device test may do)."""
    g = Graph("raw")
    x = g.add_input("x", TensorType((0, 4, 6)))
    h = g.add_node("exp", [g.add_node("relu", [x]).output]).output
    g.outputs = [g.add_node("softmax", [h], {"axis": -1}).output]
    plan = plan_graph(g, InterpreterDevice(), [])
    assert plan.groups == []


def test_max_over_an_empty_axis_is_an_error() -> None:
    """As in the frameworks: a reduction without identity has no result over nothing."""
    g = Graph("nomax")
    x = g.add_input("x", TensorType((0, 3)))
    with pytest.raises(SolError, match=r"max/min over an empty axis of float32\[0, 3\]"):
        g.add_node("max", [x], {"axes": (0,)})


def test_a_reference_that_fails_on_nothing_is_an_error_naming_the_op(monkeypatch: pytest.MonkeyPatch) -> None:
    from sol.ops.registry import registry

    def refuse(xs: list[np.ndarray], attrs: dict[str, Any]) -> list[np.ndarray]:
        raise ValueError("zero-size array to reduction operation")

    monkeypatch.setattr(registry.get("sum"), "reference", refuse)
    g = Graph("nosum")
    x = g.add_input("x", TensorType((0, 3)))
    g.outputs = [g.add_node("sum", [x], {"axes": (0,)}, source="model.py:7").output]
    with pytest.raises(SolError, match=r"sum \(model.py:7\) has no result for an empty input \(float32\[0, 3\]\): "
                                       r"zero-size array"):
        roles().passes.run(g)


def test_an_empty_operand_beside_runtime_data_is_reported() -> None:
    """``dense`` of no features whose bias arrives at run time (a trained bias): the result is
    the run-time bias, which the pass cannot evaluate; it says so rather than guess."""
    g = Graph("mixed")
    x = g.add_input("x", TensorType((4, 0)))
    w = g.add_input("w", TensorType((5, 0)))
    b = g.add_input("b", TensorType((5,)))
    g.outputs = [g.add_node("dense", [x, w, b]).output]
    with pytest.raises(UnsupportedOpError, match=r"dense reads an empty tensor .* together with run-time data"):
        roles().passes.run(g)


def test_empty_weight_gradients_are_zero(device: str) -> None:
    """Backward graphs over an empty batch: weight gradients sum over nothing (0), as the
    frameworks' autograd gives."""
    from sol.autodiff import differentiate

    g = Graph("train0")
    x = g.add_input("x", TensorType((0, 6)))
    w = g.add_input("w", TensorType((3, 6)))
    b = g.add_input("b", TensorType((3,)))
    g.outputs = [g.add_node("tanh", [g.add_node("dense", [x, w, b]).output]).output]
    diff = differentiate(g, [w, b], [0])
    forward = compile_graph(diff.forward, device, training=True)
    backward = compile_graph(diff.backward, device, training=True)
    args: dict[str, Any] = {"x": np.zeros((0, 6), np.float32), "w": randn(3, 6), "b": randn(3)}
    outs = forward(*(args[v.name] for v in diff.forward.inputs))
    assert outs[0].shape == (0, 3)
    feed = {v.name: np.zeros(v.shape, v.dtype) for v in diff.backward.inputs}
    grads = backward(*(feed[v.name] for v in diff.backward.inputs))
    assert [a.shape for a in grads] == [(3, 6), (3,)]
    assert not any(a.any() for a in grads)
