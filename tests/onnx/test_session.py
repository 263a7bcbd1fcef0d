"""The ONNX frontend through its public faces: ``sol.optimize(path or ModelProto)`` /
``sol.onnx.optimize`` returning an InferenceSession-like object, checked against ONNX Runtime on
the same model and inputs; import errors, opsets, external data, fallback to ONNX Runtime."""

from __future__ import annotations

import sys
import warnings

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper
from onnx_helpers import init, mlp_with, model, run_ort, tensor

import sol
import sol.onnx
from sol.errors import SolError, SolFallbackWarning, UnsupportedOpError

RNG = np.random.default_rng(0)


def _x(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.fixture(scope="module")
def mlp_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("m") / "mlp.onnx"
    onnx.save(mlp_with("Sigmoid"), str(path))
    return str(path)


def test_path_gives_an_inference_session_like_onnxruntimes(mlp_path: str) -> None:
    import onnxruntime as ort

    s = sol.optimize(mlp_path)  # core's entry point takes the path
    ref = ort.InferenceSession(mlp_path, providers=["CPUExecutionProvider"])
    for got, want in [(s.get_inputs(), ref.get_inputs()), (s.get_outputs(), ref.get_outputs())]:
        assert [(a.name, a.shape, a.type) for a in got] == [(a.name, a.shape, a.type) for a in want]
    x = _x(1, 4)
    expected = ref.run(None, {"x": x})
    np.testing.assert_allclose(s.run(None, {"x": x})[0], expected[0], rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(s.run(["y"], {"x": x})[0], expected[0], rtol=1e-4, atol=1e-6)
    (y,) = s(x)  # callable on arrays: the list of outputs
    np.testing.assert_allclose(y, expected[0], rtol=1e-4, atol=1e-6)
    assert s.get_providers() == ["sol:x86"]


def test_a_symbolic_batch_compiles_once_per_shape(mlp_path: str) -> None:
    s = sol.onnx.optimize(onnx.load(mlp_path))
    assert len(s.variants) == 1  # the declared shape, N taken as 1
    for n in (3, 3, 5):
        x = _x(n, 4)
        np.testing.assert_allclose(s.run(None, {"x": x})[0], run_ort(onnx.load(mlp_path), {"x": x})[0],
                                   rtol=1e-4, atol=1e-6)
    assert sorted(k[0][0][0] for k in s.variants) == [1, 3, 5]
    fixed = sol.onnx.optimize(mlp_path, (2, 4), dynamic=False)
    with pytest.raises(ValueError, match=r"dynamic=False.*float32\[7, 4\]"):
        fixed.run(None, {"x": _x(7, 4)})


def test_bad_feeds_name_the_input_and_both_values(mlp_path: str) -> None:
    s = sol.onnx.optimize(mlp_path)
    with pytest.raises(ValueError, match="no input 'z'"):
        s.run(None, {"x": _x(1, 4), "z": _x(1)})
    with pytest.raises(ValueError, match="no value given for input.*'x'"):
        s.run(None, {})
    with pytest.raises(TypeError, match="input 'x' of .* is float32, got float64"):
        s.run(None, {"x": np.zeros((1, 4))})
    with pytest.raises(ValueError, match=r"input 'x' .* has shape \[N, 4\], got \[1, 5\]"):
        s.run(None, {"x": _x(1, 5)})
    with pytest.raises(ValueError, match="no output 'nope'"):
        s.run(["nope"], {"x": _x(1, 4)})


def test_unsupported_nodes_run_in_onnxruntime_with_one_warning() -> None:
    proto = mlp_with("CumSum")
    with pytest.warns(SolFallbackWarning, match=r"CumSum \(node 'my_cumsum'\)") as record:
        s = sol.onnx.optimize(proto, (2, 4))
    assert len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # another shape: compiled again, warned about once only
        for n in (2, 3):
            x = _x(n, 4)
            np.testing.assert_allclose(s.run(None, {"x": x})[0], run_ort(proto, {"x": x})[0], rtol=1e-4, atol=1e-6)
    variant = next(iter(s.variants.values()))
    assert variant.fallback == ["CumSum"] and len(variant.programs) == 2  # sol compiled before and after


def test_fallback_false_names_the_node_its_type_and_name() -> None:
    with pytest.raises(UnsupportedOpError, match=r"CumSum \(node 'my_cumsum'\)") as info:
        sol.onnx.optimize(mlp_with("CumSum"), fallback=False)
    assert (info.value.op, info.value.source) == ("CumSum", "my_cumsum")


def test_an_unknown_domain_is_reported() -> None:
    nodes = [helper.make_node("Frobnicate", ["x"], ["y"], name="frob", domain="com.example")]
    proto = model(nodes, [tensor("x", [2])], [tensor("y", [2])], domains={"com.example": 1})
    with pytest.raises(UnsupportedOpError, match=r"Frobnicate \(node 'frob'\): operator domain 'com.example'"):
        sol.onnx.optimize(proto, fallback=False)


def test_onnxruntime_is_needed_only_for_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    x = _x(2, 4)
    y = sol.onnx.optimize(mlp_with("Sigmoid"), x)(x)[0]
    h = np.maximum(x @ onnx.numpy_helper.to_array(mlp_with("Sigmoid").graph.initializer[0]), 0)
    np.testing.assert_allclose(y, np.tanh(1 / (1 + np.exp(-h))), rtol=1e-5)
    with pytest.raises(SolError, match=r"onnxruntime is not installed.*sol-frontend-onnx\[fallback\]"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", SolFallbackWarning)
            sol.onnx.optimize(mlp_with("CumSum"), x)


def test_checker_failures_name_the_file(tmp_path) -> None:
    bad = model([helper.make_node("Relu", ["nowhere"], ["y"])], [tensor("x", [2])], [tensor("y", [2])])
    path = tmp_path / "broken.onnx"
    path.write_bytes(bad.SerializeToString())
    with pytest.raises(ValueError, match=f"ONNX model file {path} fails onnx.checker"):
        sol.onnx.optimize(str(path))


def test_an_old_opset_is_converted_with_its_semantics() -> None:
    """Softmax before opset 13 flattens to 2-D from ``axis`` on: the converted model must too."""
    proto = model([helper.make_node("Softmax", ["x"], ["y"], axis=1)], [tensor("x", [2, 3, 4])],
                  [tensor("y", [2, 3, 4])], opset=11)
    x = _x(2, 3, 4)
    np.testing.assert_allclose(sol.onnx.optimize(proto)(x)[0], run_ort(proto, {"x": x})[0], rtol=1e-5, atol=1e-7)


def test_external_data_is_read_next_to_the_model_and_nowhere_else(tmp_path) -> None:
    proto = mlp_with("Sigmoid")
    path = tmp_path / "ext.onnx"
    onnx.save_model(mlp_with("Sigmoid"), str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                    location="w.bin", size_threshold=0)
    x = _x(1, 4)
    np.testing.assert_allclose(sol.onnx.optimize(str(path))(x)[0], run_ort(proto, {"x": x})[0], rtol=1e-5)
    evil = onnx.load(str(path), load_external_data=False)
    for entry in evil.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = "../outside.bin"
    (tmp_path / "sub").mkdir()
    onnx.save_model(evil, str(tmp_path / "sub" / "evil.onnx"))
    (tmp_path / "outside.bin").write_bytes((tmp_path / "w.bin").read_bytes())
    with pytest.raises((ValueError, onnx.checker.ValidationError), match="outside|inside|escape|traversal"):
        sol.onnx.optimize(str(tmp_path / "sub" / "evil.onnx"))


def test_the_users_model_is_not_changed(mlp_path: str) -> None:
    proto = model([helper.make_node("Softmax", ["x"], ["y"], axis=1)], [tensor("x", [2, 3, 4])],
                  [tensor("y", [2, 3, 4])], opset=11)  # converted to a newer opset: a copy is
    before = proto.SerializeToString()
    sol.onnx.optimize(proto)
    assert proto.SerializeToString() == before


def test_hostile_names_compile_and_compute_right() -> None:
    evil = '*/ abort(); /* "\n#include <x>\\'
    nodes = [helper.make_node("Gemm", [evil, "W" + evil, "b"], ["h" + evil], name=evil, transB=1),
             helper.make_node("Relu", ["h" + evil], ["../y"], name="../../etc")]
    proto = model(nodes, [tensor(evil, [2, 3])], [tensor("../y", [2, 5])],
                  [init("W" + evil, _x(5, 3)), init("b", _x(5))], name=evil)
    x = _x(2, 3)
    np.testing.assert_allclose(sol.onnx.optimize(proto)(x)[0], run_ort(proto, {evil: x})[0], rtol=1e-5, atol=1e-6)


def test_the_onnx_backend_api() -> None:
    from sol_onnx import backend

    assert backend.supports_device("CPU")
    x = _x(3, 4)
    (y,) = backend.run_node(helper.make_node("Relu", ["x"], ["y"]), [x])
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    rep = backend.prepare(mlp_with("Sigmoid", batch=3))
    np.testing.assert_allclose(rep.run([x])[0], run_ort(mlp_with("Sigmoid", batch=3), {"x": x})[0], rtol=1e-5)
    assert helper.printable_type(tensor("x", [1], TensorProto.FLOAT).type)  # the helper API we rely on exists


def test_fallback_steps_carry_subgraphs_and_run_time_shapes() -> None:
    """An ``If`` whose branches read the outer graph's tensors, and a ``NonZero`` whose result's
    shape only exists at run time (so the nodes reading it run in ONNX Runtime too): the steps
    ONNX Runtime runs get everything they read; sol compiles the rest, results as ONNX Runtime's."""
    then_g = helper.make_graph([helper.make_node("Add", ["x", "one"], ["t"])], "then", [], [tensor("t", [2, 3])])
    else_g = helper.make_graph([helper.make_node("Sub", ["x", "one"], ["e"])], "else", [], [tensor("e", [2, 3])])
    nodes = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0, name="rs"),
             helper.make_node("Greater", ["s", "zero"], ["c"], name="gt"),
             helper.make_node("If", ["c"], ["y0"], then_branch=then_g, else_branch=else_g, name="branch"),
             helper.make_node("Relu", ["y0"], ["y1"], name="relu"),
             helper.make_node("NonZero", ["y1"], ["nz"], name="nonzero"),
             helper.make_node("Cast", ["nz"], ["nzf"], to=TensorProto.FLOAT, name="castnz"),
             helper.make_node("ReduceSum", ["nzf"], ["cnt"], keepdims=0, name="count"),
             helper.make_node("Mul", ["y1", "cnt"], ["y"], name="scale")]
    proto = model(nodes, [tensor("x", [2, 3])], [tensor("y", [2, 3])],
                  [init("one", np.float32(1)), init("zero", np.float32(0))])
    with pytest.warns(SolFallbackWarning, match=r"(?s)If \(node 'branch'\).*Cast \(node 'castnz'\): reads 'nz'"):
        s = sol.onnx.optimize(proto)
    for sign in (1, -1):  # both branches
        x = sign * np.abs(_x(2, 3))
        np.testing.assert_allclose(s(x)[0], run_ort(proto, {"x": x})[0], rtol=1e-6)


def test_a_dtype_the_code_generators_lack_runs_in_onnxruntime() -> None:
    """float16: sol converts the node but its C code generators have no type for it; ONNX Runtime
    runs it (one warning) rather than the compile failing, and fallback=False names it."""
    nodes = [helper.make_node("Cast", ["x"], ["h"], to=TensorProto.FLOAT16, name="to_half"),
             helper.make_node("Relu", ["h"], ["r"], name="half_relu"),
             helper.make_node("Cast", ["r"], ["f"], to=TensorProto.FLOAT, name="to_float"),
             helper.make_node("Sigmoid", ["f"], ["y"], name="sig")]
    proto = model(nodes, [tensor("x", [2, 3])], [tensor("y", [2, 3])])
    with pytest.warns(SolFallbackWarning, match=r"Relu \(node 'half_relu'\): sol's code generators have no float16"):
        s = sol.onnx.optimize(proto)
    x = _x(2, 3)  # float16's precision: ONNX Runtime may drop a Cast pair of the whole model, not of a step
    np.testing.assert_allclose(s(x)[0], run_ort(proto, {"x": x})[0], rtol=2e-3)
    with pytest.raises(UnsupportedOpError, match="no float16"):
        sol.onnx.optimize(proto, fallback=False)


def test_training_is_refused_clearly(mlp_path: str) -> None:
    with pytest.raises(SolError, match="compiles for inference"):
        sol.optimize(mlp_path, training=True)


def test_an_op_the_device_cannot_compile_runs_in_onnxruntime() -> None:
    """float64 ``dense`` on x86 (oneDNN takes float32 only, no template generates it): converted,
    but ONNX Runtime runs it rather than the planner refusing the whole model."""
    proto = model([helper.make_node("MatMul", ["x", "W"], ["h"], name="mm64"),
                   helper.make_node("Relu", ["h"], ["y"], name="relu64")],
                  [tensor("x", [2, 3], TensorProto.DOUBLE)], [tensor("y", [2, 4], TensorProto.DOUBLE)],
                  [init("W", RNG.standard_normal((3, 4)))])
    why = r"MatMul \(node 'mm64'\): device 'x86' cannot compile dense in float64"
    with pytest.warns(SolFallbackWarning, match=why):
        s = sol.onnx.optimize(proto, device="x86")
    x = RNG.standard_normal((2, 3))
    np.testing.assert_allclose(s(x)[0], run_ort(proto, {"x": x})[0], rtol=1e-12)
    assert next(iter(s.variants.values())).fallback == ["MatMul"]  # the Relu is sol's
    from sol.testing import reference_device

    with reference_device() as interp, warnings.catch_warnings():
        warnings.simplefilter("ignore", SolFallbackWarning)  # the import asked the default device (x86) first
        whole = sol.onnx.optimize(proto, device=interp)  # a device that has float64 dense: compiled whole
        assert next(iter(whole.variants.values())).fallback == []
        np.testing.assert_allclose(whole(x)[0], run_ort(proto, {"x": x})[0], rtol=1e-12)


def test_fallback_sessions_do_not_spin_between_sol_parts() -> None:
    # ONNX Runtime's pool threads spin after each run by default; between the parts they took the
    # cores from sol's OpenMP threads (GoogLeNet with its MaxPools in ONNX Runtime: 390 ms a call
    # instead of 22 ms). The fallback sessions are made with spinning off.
    with pytest.warns(SolFallbackWarning):
        s = sol.onnx.optimize(mlp_with("CumSum"), (2, 4))
    x = _x(2, 4)
    np.testing.assert_allclose(s.run(None, {"x": x})[0], run_ort(mlp_with("CumSum"), {"x": x})[0], rtol=1e-4, atol=1e-6)
    variant = next(iter(s.variants.values()))
    sessions = [step.session for step in variant.runner.steps.values()]
    assert sessions
    for session in sessions:
        entry = session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
        assert entry == "0"
