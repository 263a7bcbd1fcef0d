"""Networks built in sol's IR through the public API: ``sol.optimize(graph, *examples, device=...)``
with core's own "ir" frontend (NumPy arrays in, a list of arrays out), on every installed device
(x86 and the emulated VE here) and on the NumPy interpreter device a vendor would write."""

from __future__ import annotations

import types
from typing import Any

import numpy as np
import pytest

import sol
from sol.debug import run_reference
from sol.errors import SolError
from sol.ir import Graph, TensorType
from sol.ir_frontend import CompiledGraph

from graphs import randn

pytestmark = pytest.mark.filterwarnings("ignore:sol device 've' runs emulated")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "device" in metafunc.fixturenames:
        from devices import device_params

        metafunc.parametrize("device", device_params(metafunc.config))


def _net() -> Graph:
    """Two inputs, two outputs: conv + bias -> tanh -> avg pool -> flatten -> dense + m -> tanh,
    and the per-channel mean of the conv's tanh. Only ops through which a NaN reaches exactly
    the elements that read it (no max, no softmax), so where NaNs must appear is known."""
    g = Graph("irnet")
    x = g.add_input("x", TensorType((2, 3, 8, 8)))
    m = g.add_input("m", TensorType((2, 16)))
    h = g.add_node("conv2d", [x, g.add_param("conv.weight", randn(4, 3, 3, 3) * 0.3),
                              g.add_param("conv.bias", randn(4))], {"padding": 1}).output
    t = g.add_node("tanh", [h]).output
    p = g.add_node("avg_pool2d", [t], {"kernel": 2}).output
    f = g.add_node("reshape", [p], {"shape": (2, 64)}).output
    fc_w, fc_b = g.add_param("fc.weight", randn(16, 64) * 0.2), g.add_param("fc.bias", randn(16))
    d = g.add_node("dense", [f, fc_w, fc_b]).output
    y = g.add_node("tanh", [g.add_node("add", [d, m]).output]).output
    g.outputs = [y, g.add_node("mean", [t], {"axes": (2, 3)}).output]
    return g


GRAPH = _net()
X, M = randn(2, 3, 8, 8), randn(2, 16)
_compiled: dict[str, CompiledGraph] = {}


def _optimized(device: str) -> CompiledGraph:
    """One compile per device for the whole module (g++ and the VE emulation dominate)."""
    if device not in _compiled:
        _compiled[device] = sol.optimize(GRAPH, X, M, device=device)
    return _compiled[device]


def _snapshot(g: Graph) -> tuple[str, list[Any], list[np.ndarray]]:
    return str(g), [(v, v.kind, v.type) for v in g.values()], [p.data.copy() for p in g.params]  # type: ignore[union-attr]


def _same(g: Graph, before: tuple[str, list[Any], list[np.ndarray]]) -> bool:
    text, values, arrays = before
    return str(g) == text and [(v, v.kind, v.type) for v in g.values()] == values and all(
        np.array_equal(np.asarray(p.data), a) for p, a in zip(g.params, arrays))


def test_optimize_runs_an_ir_graph_like_its_reference(device: str) -> None:
    before = _snapshot(GRAPH)
    compiled = _optimized(device)
    assert isinstance(compiled, CompiledGraph) and compiled.device == device
    assert compiled.input_types == [TensorType((2, 3, 8, 8)), TensorType((2, 16))]
    out = compiled(X, M)
    want = run_reference(GRAPH, [X, M])
    assert isinstance(out, list) and len(out) == 2  # one array per graph output, in graph.outputs order
    for got, ref in zip(out, want):
        assert got.shape == ref.shape and got.dtype == np.float32
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-5)
    assert _same(GRAPH, before)  # passes ran on a copy


def test_nan_inputs_reach_exactly_the_elements_that_read_them(device: str) -> None:
    x, m = X.copy(), M.copy()
    x[0, 1, 3, 5] = np.nan  # sample 0: every dense output and every channel mean reads it
    m[1, 3] = np.nan  # sample 1: only output element [1, 3]
    y, mean = _optimized(device)(x, m)
    want_y, want_mean = run_reference(GRAPH, [x, m])
    assert np.isnan(y[0]).all() and np.isnan(mean[0]).all()
    assert np.isnan(y[1]).tolist() == [j == 3 for j in range(16)] and np.isfinite(mean[1]).all()
    np.testing.assert_allclose(y, want_y, rtol=1e-4, atol=1e-5, equal_nan=True)
    np.testing.assert_allclose(mean, want_mean, rtol=1e-4, atol=1e-5, equal_nan=True)


def test_the_compiled_graph_keeps_its_own_parameters(device: str) -> None:
    """A snapshot at optimize: later changes to the user's arrays reach neither side."""
    compiled = _optimized(device)
    first = compiled(X, M)
    weight = GRAPH.params[0].data
    assert weight is not None
    saved = weight.copy()
    try:
        weight[...] = 0
        again = compiled(X, M)
    finally:
        weight[...] = saved
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


# --- on the interpreter device: no compiler, every check that does not need one ---------------


@pytest.fixture
def interp(fresh_plugins: types.ModuleType) -> str:
    """Only core and the test suite's NumPy interpreter device: no framework, no compiler."""
    import interpreter_device

    fresh_plugins.register(interpreter_device)
    return "interp"


def test_examples_are_optional_and_may_be_shapes_or_arrays(interp: str) -> None:
    want = run_reference(GRAPH, [X, M])
    nan_x = np.full(X.shape, np.nan, np.float32)  # an example's values are never read
    shape_of_numpy_ints = tuple(np.int64(d) for d in X.shape)
    for examples in ((), ((2, 3, 8, 8), [2, 16]), (X, M), (nan_x, M), (shape_of_numpy_ints, M.shape)):
        out = sol.optimize(GRAPH, *examples, device=interp)(X, M)
        for got, ref in zip(out, want):
            np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(("examples", "error", "message"), [
    pytest.param((X,), TypeError, r"graph 'irnet' has 2 input\(s\) \(x: float32\[2, 3, 8, 8\], m: float32\[2, 16\]\); "
                 r"got 1 example", id="count"),
    pytest.param((X, M.astype(np.float64)), TypeError,
                 r"input 1 \(m: float32\[2, 16\]\): the example has dtype float64", id="dtype"),
    pytest.param((X[:1], M), ValueError, r"input 0 \(x: float32\[2, 3, 8, 8\]\): the example has shape "
                 r"\(1, 3, 8, 8\); a graph's shapes are fixed", id="array-shape"),
    pytest.param(((2, 3, 8, 9), M), ValueError, r"the example has shape \(2, 3, 8, 9\)", id="shape"),
    pytest.param(("x", M), TypeError, r"an example input is an array or a shape \(a tuple of ints\), got str",
                 id="not-a-shape"),
    pytest.param(((2.0, 3, 8, 8), M), TypeError, r"got tuple", id="float-dimension"),
])
def test_example_inputs_that_do_not_fit_the_graph(interp: str, examples: tuple[Any, ...], error: type,
                                                  message: str) -> None:
    with pytest.raises(error, match=message):
        sol.optimize(GRAPH, *examples, device=interp)


def test_calls_are_checked_like_every_program(interp: str) -> None:
    compiled = sol.optimize(GRAPH, device=interp)
    with pytest.raises(TypeError, match=r"input 1 \(m\): expected dtype float32, got float64"):
        compiled(X, M.astype(np.float64))
    with pytest.raises(ValueError, match=r"input 0 \(x\): expected shape \(2, 3, 8, 8\), got \(2, 3, 8, 7\)"):
        compiled(X[..., :7], M)
    with pytest.raises(TypeError, match="expects 2 input"):
        compiled(X)
    assert "CompiledGraph irnet on interp: (x: float32[2, 3, 8, 8], m: float32[2, 16])" in repr(compiled)


def test_a_single_output_is_still_a_list(interp: str) -> None:
    g = Graph("one")
    x = g.add_input("x", TensorType((3,)))
    g.outputs = [g.add_node("exp", [x]).output]
    out = sol.optimize(g, device=interp)(np.zeros(3, np.float32))
    assert isinstance(out, list) and len(out) == 1
    np.testing.assert_array_equal(out[0], np.ones(3, np.float32))


def test_training_is_refused_with_what_to_use_instead(interp: str) -> None:
    with pytest.raises(SolError, match=r"sol\.autodiff\.compile_training\(graph, wrt, device=\.\.\.\)"):
        sol.optimize(GRAPH, training=True, device=interp)


def test_graphs_that_cannot_run_are_refused_before_anything_changes(interp: str) -> None:
    empty = Graph("empty")
    empty.add_input("x", TensorType((2,)))
    with pytest.raises(SolError, match="graph 'empty' has no outputs"):
        sol.optimize(empty, device=interp)
    other = Graph("other")
    stray = other.add_input("y", TensorType((2,)))
    broken = Graph("broken")
    broken.add_input("x", TensorType((2,)))
    broken.outputs = [broken.add_node("relu", [stray]).output]  # reads a value of another graph
    before = str(broken)
    with pytest.raises(SolError, match=r"reads %y:float32\[2\] before it is defined \(or it is not in the graph\)"):
        sol.optimize(broken, device=interp)
    assert str(broken) == before


def test_explain_and_the_plugin_table_show_the_ir_frontend(interp: str) -> None:
    before = _snapshot(GRAPH)
    report = str(sol.explain(GRAPH, device=interp))
    assert report.startswith("sol plan for irnet on interp") and "conv2d" in report
    assert _same(GRAPH, before)
    core = next(r for r in sol.plugins.records() if r.name == "core")
    assert "frontend:ir" in core.roles


def test_sol_inspect_takes_a_function_building_an_ir_graph(interp: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from sol import cli

    (tmp_path / "sol_test_irmodels.py").write_text(
        "from sol.ir import Graph, TensorType\n"
        "def build():\n"
        "    g = Graph('built')\n"
        "    x = g.add_input('x', TensorType((2, 16)))\n"
        "    g.outputs = [g.add_node('softmax', [g.add_node('exp', [x]).output], {'axis': 1}).output]\n"
        "    return g\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert cli.main(["inspect", "sol_test_irmodels:build", "--input", "2,16", "--device", interp]) == 0
    out = capsys.readouterr().out
    assert out.startswith("sol plan for built on interp") and "exp" in out and "softmax" in out
    with pytest.raises(ValueError, match=r"the example has shape \(2, 8\)"):
        cli.main(["inspect", "sol_test_irmodels:build", "--input", "2,8", "--device", interp])
