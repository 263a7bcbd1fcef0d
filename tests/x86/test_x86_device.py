"""The x86 device through core's public path (graph -> plan -> C++ -> g++ -> ctypes)."""

from __future__ import annotations

import ctypes
import threading
from pathlib import Path

import numpy as np
import pytest

from sol.api import compile_graph
from sol.debug import run_reference
from sol.errors import CompileError
from sol.ir import Graph, TensorType

from graphs import conv_block, dense_mm, randn, seed_net


def _check(g: Graph, rtol: float = 1e-4) -> object:
    xs = [randn(*v.shape) for v in g.inputs]
    want = run_reference(g, xs)
    program = compile_graph(g, "x86")
    for w, o in zip(want, program(*xs)):
        np.testing.assert_allclose(o, w, rtol=rtol, atol=rtol * float(np.abs(w).max()))
    return program


def _source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, g: Graph) -> str:
    monkeypatch.setenv("SOL_DEBUG_DIR", str(tmp_path))
    _check(g)
    return (tmp_path / g.name / "network.cpp").read_text()


def test_seed_network_bias_relu_pool_share_one_loop_nest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOL_X86_LAYOUT", "nchw")  # the seed's NCHW plan (channels-last: test_channels_last.py)
    text = _source(tmp_path, monkeypatch, seed_net())
    # The convolution is a oneDNN call; bias, ReLU and the 13x13 pooling are one generated
    # function whose parallel loop runs over (batch, channel), as in the seed's FusedNetwork.
    assert "library onednn (compute bound): #1 conv2d" in text
    fused = text[text.index("void run_G1(Net& net, const void* const* in, void* const* out) {"):]
    fused = fused[:fused.index("\n}\n")]
    assert "for (long o = 0; o < 2000; ++o)" in fused
    for marker in ("// #1 add", "// #2 relu", "// #3 avg_pool2d"):
        assert marker in fused
    assert "alignas(64) float L" in fused  # ReLU's 13x13 plane stays in per-iteration scratch


@pytest.mark.parametrize("residual", [False, True], ids=["bias-relu-scale-clamp", "with-residual"])
def test_conv_epilogues_become_post_ops(residual: bool, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _source(tmp_path, monkeypatch, conv_block(residual))
    # bias, ReLU, scale, clamp (and the residual sum): one call, no generated loop
    assert text.count("sol::Conv op") == 1 and "void run_G" not in text
    assert "eltwise_relu" in text and "binary_mul" in text and "eltwise_clip" in text
    assert ("sol::sum()" in text) == residual
    # oneDNN's clip turns NaN into its lower bound (PyTorch keeps NaN): fused because the clamp's
    # operand is finite wherever the inputs are, which sol_forward checks first (the exact
    # variant runs where they are not: tests/x86/test_nan_guard.py). The residual is an input too.
    guards = [line for line in text.splitlines() if "if (!sol_all_finite(in[" in line]
    assert len(guards) == (2 if residual else 1)


@pytest.mark.parametrize("shape", [(4, 32), (2, 3, 32)])
def test_dense_with_gelu_and_matmul_broadcast(shape: tuple[int, ...]) -> None:
    g = dense_mm(shape)
    _check(g)


def test_compiler_failure_reports_the_compiler_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOL_CXXFLAGS", "-include /nonexistent/sol_missing.h")
    from sol_x86 import compiler

    monkeypatch.setattr(compiler.GxxCompiler, "__init__", lambda self: setattr(
        self, "flags", list(compiler.DEFAULT_FLAGS) + ["-include", "/nonexistent/sol_missing.h"]))
    from sol.plugins import roles

    dev = roles().devices.get("x86")
    monkeypatch.setattr(dev, "_compiler", compiler.GxxCompiler())
    with pytest.raises(CompileError, match=r"sol_missing.h.*\n(.|\n)*command: .*g\+\+"):
        compile_graph(seed_net(1), "x86")


def test_damaged_artifact_is_rebuilt(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SOL_CACHE_DIR", str(tmp_path))
    g1 = seed_net(1)
    first = compile_graph(g1, "x86")
    assert first.info["cached"] is False
    assert compile_graph(seed_net(1), "x86").info["cached"] is True
    # Damage it the way a crash or a full disk would: a new, truncated file at that path (never
    # overwrite the loaded library in place: it is mapped into this process).
    artifact = Path(first.info["artifact"])
    artifact.unlink()
    artifact.write_bytes(b"\x7fELF truncated")
    g2 = seed_net(1)
    again = compile_graph(g2, "x86")
    assert again.info["cached"] is False
    x = randn(1, 512, 13, 13)
    np.testing.assert_allclose(again(x)[0], run_reference(g2, [x])[0], rtol=1e-4, atol=1e-4)


def test_c_abi_and_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    program = _check(seed_net(1))
    lib = ctypes.CDLL(program.info["artifact"])
    lib.sol_workspace_bytes.restype = ctypes.c_long
    assert lib.sol_abi_version() == 1
    assert lib.sol_workspace_bytes() == program.info["plan"].memory.arena_bytes
    plan = program.info["plan"]
    assert lib.sol_num_params() == len(plan.graph.params) + len(plan.graph.consts)


def test_concurrent_calls_on_one_network_are_safe() -> None:
    g = seed_net(1)
    program = compile_graph(g, "x86")
    xs = [randn(1, 512, 13, 13) for _ in range(4)]
    want = [run_reference(g, [x])[0] for x in xs]
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for _ in range(5):
                np.testing.assert_allclose(program(xs[i])[0], want[i], rtol=1e-4, atol=1e-4)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_conv_to_conv_keeps_the_library_layout_in_between(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The NCHW path (AVX2 machines; SOL_X86_LAYOUT=nchw): channels-last regions
    # (tests/x86/test_channels_last.py) make these links on AVX-512 otherwise.
    monkeypatch.setenv("SOL_X86_LAYOUT", "nchw")
    g = Graph("conv_chain")
    # 25 tiles of 2x2: too few for Winograd (sol_x86.winograd.MIN_TILES; its links: test_winograd.py)
    x = g.add_input("x", TensorType((1, 16, 10, 10)))
    y = g.add_node("conv2d", [x, g.add_param("w1", randn(16, 16, 3, 3) * 0.2)], {"padding": 1}).output
    y = g.add_node("relu", [y]).output
    y = g.add_node("conv2d", [y, g.add_param("w2", randn(32, 16, 3, 3) * 0.2)], {"padding": 1, "stride": 2}).output
    g.outputs = [g.add_node("sigmoid", [y]).output]
    text = _source(tmp_path, monkeypatch, g)
    assert "net->op0.keep_native({{sol::LibraryOp::Reader::SRC, &net->op1}}" in text
    lines = compile_graph(g, "x86").info["libraries"].splitlines()
    assert lines[0].startswith("G0: ") and "output kept" in lines[0] and "input kept" in lines[1], lines


def _residual_block(also_plain_reader: bool) -> Graph:
    """a = relu(conv(x)); out = relu(conv(conv(a)) + a): ``a`` is one convolution's input and
    another's residual-sum operand (a ResNet basic block); optionally also a fused group's input."""
    g = Graph("residual_block_plain" if also_plain_reader else "residual_block")
    x = g.add_input("x", TensorType((2, 16, 12, 12)))
    a = g.add_node("conv2d", [x, g.add_param("w1", randn(16, 16, 3, 3) * 0.2)], {"padding": 1}).output
    a = g.add_node("relu", [a]).output
    b = g.add_node("conv2d", [a, g.add_param("w2", randn(16, 16, 3, 3) * 0.2)], {"padding": 1}).output
    b = g.add_node("relu", [b]).output
    c = g.add_node("conv2d", [b, g.add_param("w3", randn(16, 16, 3, 3) * 0.2)], {"padding": 1}).output
    c = g.add_node("relu", [g.add_node("add", [c, a]).output]).output
    g.outputs = [c]
    if also_plain_reader:  # a generated loop nest reads ``a`` too: it must be in the plain layout
        g.outputs.append(g.add_node("sigmoid", [a]).output)
    return g


@pytest.mark.parametrize("also_plain_reader", [False, True], ids=["convolutions-only", "and-a-fused-reader"])
def test_a_tensor_read_as_input_and_residual_stays_in_the_library_layout(also_plain_reader: bool,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOL_X86_LAYOUT", "nchw")  # the NCHW path, as above
    # Every reader of ``a`` a convolution wanting its layout: kept, including as the residual the
    # third convolution's sum post-op adds to; any other reader: converted to plain as before.
    lines = _check(_residual_block(also_plain_reader)).info["libraries"].splitlines()  # type: ignore[attr-defined]
    first, second, third = lines[:3]
    assert ("output kept" in first) != also_plain_reader, lines
    assert ("input kept" in second) != also_plain_reader, lines
    assert ("residual kept" in third) != also_plain_reader, lines
    assert "input kept" in third, lines


def test_large_constants_are_passed_at_load_time_not_inlined(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    g = Graph("big_const")
    x = g.add_input("x", TensorType((4, 1000)))
    table = randn(1000)
    y = g.add_node("add", [x, g.add_const(table)]).output
    g.outputs = [g.add_node("mul", [y, g.add_const(np.float32(0.5))]).output]
    text = _source(tmp_path, monkeypatch, g)
    assert "0.5f" in text and len(text) < 20000  # the scalar is a literal, the table is not


def test_library_ops_run_on_a_thread_other_than_the_creating_one() -> None:
    """oneDNN's default scratchpad is tied to the thread that created the primitive; a network
    called from another thread (TensorFlow's numpy_function workers, serving threads) crashed in
    a convolution with run-time weights. Primitives now use the network's own scratchpad."""
    g = Graph("threads")
    x = g.add_input("x", TensorType((4, 16, 12, 12)))
    w_rt = g.add_input("w", TensorType((16, 16, 3, 3)))  # run-time weights: gemm-based conv
    w = g.add_param("w2", randn(32, 16, 3, 3) * 0.2)  # fixed weights: blocked layout + reorders
    y = g.add_node("conv2d", [x, w_rt], {"padding": 1}).output
    y = g.add_node("relu", [y]).output
    y = g.add_node("conv2d", [y, w], {"padding": 1, "stride": 2}).output
    gw = g.add_node("conv2d_backward_weight", [x, y],
                    {"shape": (32, 16, 3, 3), "padding": 1, "stride": 2}).output
    g.outputs = [y, gw]
    program = compile_graph(g, "x86")
    xs = [randn(4, 16, 12, 12), randn(16, 16, 3, 3) * 0.2]
    want = run_reference(g, xs)
    got: list[list[np.ndarray]] = []
    t = threading.Thread(target=lambda: got.append(program(*xs)))
    t.start()
    t.join()
    assert got, "the call on the worker thread raised"
    for a, b in zip(got[0], want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


def test_large_outputs_are_reused_only_once_nothing_holds_them() -> None:
    """Outputs of 1 MiB and more come from a pool (fresh memory costs a page fault per 4 KiB in
    the group that writes it); an array the caller still holds, directly or through a view, is
    never handed out again."""
    g = Graph("pooled")
    x = g.add_input("x", TensorType((512, 1024), "float32"))
    g.outputs = [g.add_node("relu", [x]).output]
    program = compile_graph(g, "x86")
    a = randn(512, 1024)
    want = np.maximum(a, 0)
    first = program(a)[0]
    second = program(a)[0]
    assert not np.shares_memory(first, second)  # both held: two arrays
    address = first.ctypes.data
    del first
    third = program(a)[0]  # the first array is free again
    assert third.ctypes.data == address
    view = third[::2]
    del third
    fourth = program(a)[0]
    assert not np.shares_memory(fourth, view) and not np.shares_memory(fourth, second)
    for y in (second, fourth):
        np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(view, want[::2])
