"""The VE device as a user and a vendor see it: availability and honesty about emulation, the
offload protocol (parameters once, one call per forward, explicit copies), generated source,
compiler errors, and the performance model behind `sol inspect`."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

import sol
from sol import device_select
from sol.api import compile_graph, plan
from sol.debug import run_reference
from sol.errors import CompileError, SolError
from sol.planner.plan import GroupKind
from sol_sxaurora import compiler, offload, perfmodel
from sol_sxaurora.device import EMULATED, VeDevice

from graphs import randn, seed_net
from ve_networks import HAVE_TORCH, conv_block

ROOT = Path(__file__).resolve().parents[2]
quiet = pytest.mark.filterwarnings("ignore:sol device 've' runs emulated")


def _sol(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "benchmarks")}
    return subprocess.run([sys.executable, "-m", "sol.cli", *args], capture_output=True, text=True, env=env)


# --- availability and honesty -------------------------------------------------------------------

def test_sol_plugins_says_ve_is_emulated_here() -> None:
    out = _sol("plugins")
    assert out.returncode == 0, out.stderr
    line = next(row for row in out.stdout.splitlines() if row.startswith("ve "))
    assert "sol-device-sxaurora" in line and "device:ve" in line
    assert "ve: available (emulated on host (no Vector Engine found))" in line


@pytest.fixture
def fresh_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Forget which emulated devices already warned, and restore the default device after."""
    monkeypatch.setattr(device_select, "_warned_emulated", set())
    monkeypatch.setattr(device_select.config, "_set", dict(device_select.config._set))
    monkeypatch.setattr(device_select, "_index", 0)


def test_device_set_warns_once(fresh_warnings: None) -> None:
    with pytest.warns(UserWarning, match=r"'ve' runs emulated: emulated on host \(no Vector Engine found\)"):
        sol.device.set("ve", 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sol.device.set("ve", 0)
    assert sol.device.get() == "ve"


def test_compiling_for_ve_warns_once(fresh_warnings: None) -> None:
    with pytest.warns(UserWarning, match="runs emulated"):
        compile_graph(seed_net(1), "ve")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compile_graph(seed_net(1), "ve")


@pytest.mark.skipif(not HAVE_TORCH, reason="the PyTorch frontend is not installed")
def test_optimize_warns_once(fresh_warnings: None) -> None:
    import torch

    from zoo import mlp

    model, x = mlp().eval(), torch.rand(4, 64)
    with pytest.warns(UserWarning, match="runs emulated"):
        sol.optimize(model, x, device="ve")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sol.optimize(model, x, device="ve")


def _fake_host(monkeypatch: pytest.MonkeyPatch, ve: set[int], veo: bool, ncc: str | None, cc: str | None) -> list[int]:
    asked: list[int] = []

    def present(node: int) -> bool:
        asked.append(node)
        return node in ve

    monkeypatch.setattr(offload, "ve_present", present)
    monkeypatch.setattr(offload, "veo_installed", lambda: veo)
    monkeypatch.setattr(compiler, "ncc", lambda: ncc)
    monkeypatch.setattr(compiler, "host_cc", lambda: cc)
    monkeypatch.delenv("VE_NODE_NUMBER", raising=False)
    return asked


def test_real_vector_engine_is_reported_as_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_host(monkeypatch, {0}, veo=True, ncc="/opt/nec/ve/bin/ncc", cc="/usr/bin/gcc")
    a = VeDevice().availability()
    assert a.available and not a.emulated and a.detail == "VE 0 (real hardware, ncc, AVEO)"


def test_vector_engine_without_aveo_runs_emulated_and_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_host(monkeypatch, {0}, veo=False, ncc="/opt/nec/ve/bin/ncc", cc="/usr/bin/gcc")
    a = VeDevice().availability()
    assert a.available and a.emulated and "py-veo" in a.detail and "Vector Engine 0 found" in a.detail


def test_no_vector_engine_and_no_host_compiler_is_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_host(monkeypatch, set(), veo=False, ncc=None, cc=None)
    a = VeDevice().availability()
    assert not a.available and "no host C compiler" in a.detail
    _fake_host(monkeypatch, set(), veo=False, ncc=None, cc="/usr/bin/gcc")
    assert VeDevice().availability() == sol.roles.Availability(True, EMULATED, emulated=True)


def test_node_from_environment_or_device_index(monkeypatch: pytest.MonkeyPatch) -> None:
    asked = _fake_host(monkeypatch, {1, 3}, veo=True, ncc="/opt/nec/ve/bin/ncc", cc="/usr/bin/gcc")
    monkeypatch.setattr(device_select, "_index", 3)
    assert VeDevice().availability().detail.startswith("VE 3 (real hardware")
    monkeypatch.setenv("VE_NODE_NUMBER", "1")
    assert VeDevice().availability().detail.startswith("VE 1 (real hardware")
    assert asked == [3, 1]
    monkeypatch.setenv("VE_NODE_NUMBER", "one")
    assert "VE_NODE_NUMBER" in VeDevice().availability().detail


# --- the offload protocol ------------------------------------------------------------------------

@quiet
def test_parameters_once_then_one_offloaded_call_per_forward() -> None:
    g = conv_block(True)
    program = compile_graph(g, "ve")
    proc = program.info["offload"]
    assert isinstance(proc, offload.EmulatedProcess) and program.info["runs_on"] == "emulated on host"
    c = proc.counters
    assert c.by_function == {"sol_abi_version": 1, "sol_workspace_bytes": 1, "sol_create": 1}
    assert c.writes == len(g.params) + 3 and c.reads == 0  # parameters + three address tables
    writes, calls = c.writes, c.calls
    xs = [randn(*v.shape) for v in g.inputs]
    want = run_reference(g, xs)
    for _ in range(3):
        np.testing.assert_allclose(program(*xs)[0], want[0], rtol=1e-4, atol=1e-4)
    assert c.calls - calls == 3 and c.by_function["sol_forward"] == 3
    assert c.writes - writes == 3 * len(g.inputs) and c.reads == 3 * len(g.outputs)


@quiet
def test_a_missing_copy_is_a_wrong_result(monkeypatch: pytest.MonkeyPatch) -> None:
    g = seed_net(1)
    program = compile_graph(g, "ve")
    proc = program.info["offload"]
    x, x2 = randn(1, 512, 13, 13), randn(1, 512, 13, 13)
    with monkeypatch.context() as m:  # the input never reaches the device: it computes on NaN
        m.setattr(proc, "write", lambda buf, data: None)
        assert np.isnan(program(x)[0]).all()
    np.testing.assert_allclose(program(x)[0], run_reference(g, [x])[0], rtol=1e-4, atol=1e-4)
    with monkeypatch.context() as m:  # a stale input on the device: the previous call's answer
        m.setattr(proc, "write", lambda buf, data: None)
        assert not np.allclose(program(x2)[0], run_reference(g, [x2])[0], rtol=1e-2, atol=1e-2)
    with monkeypatch.context() as m:  # the result never comes back
        m.setattr(proc, "read", lambda buf, out: None)
        assert np.isnan(program(x)[0]).all()


@quiet
def test_networks_sharing_one_device_process_keep_their_own_library() -> None:
    """On a VE, every network lives in the same AVEO process, and every one exports sol_forward."""
    from sol_sxaurora.runtime import NetworkOnDevice

    graphs = [seed_net(1), conv_block(False)]
    programs = [compile_graph(g, "ve") for g in graphs]
    proc = offload.EmulatedProcess()
    nets = [NetworkOnDevice(proc, Path(p.info["artifact"]), p.info["plan"]) for p in programs]
    for g, net in zip(graphs, nets):
        xs = [randn(*v.shape) for v in g.inputs]
        np.testing.assert_allclose(net(xs)[0], run_reference(g, xs)[0], rtol=1e-4, atol=1e-4)
    assert proc.counters.by_function["sol_forward"] == 2


@quiet
def test_device_memory_is_not_host_memory() -> None:
    proc = offload.EmulatedProcess()
    buf = proc.alloc(64)
    fresh = np.zeros(16, np.float32)
    proc.read(buf, fresh)
    assert np.isnan(fresh).all()  # never-written device memory reads as NaN
    proc.write(buf, np.arange(16, dtype=np.float32))
    back = np.empty(16, np.float32)
    proc.read(buf, back)
    assert (back == np.arange(16)).all()
    with pytest.raises(SolError, match="do not fit"):
        proc.write(buf, np.zeros(17, np.float32))
    proc.free(buf)
    with pytest.raises(SolError, match="freed"):
        proc.read(buf, back)
    with pytest.raises(SolError, match="another VE process"):
        offload.EmulatedProcess().write(proc.alloc(4), np.zeros(1, np.float32))


@quiet
def test_c_abi_on_the_device() -> None:
    g = seed_net(1)
    program = compile_graph(g, "ve")
    proc, lib = program.info["offload"], program.info["library"]
    with proc.lock:
        assert proc.call(lib, "sol_abi_version") == 1
        assert proc.call(lib, "sol_num_params") == len(g.params)
        assert proc.call(lib, "sol_workspace_bytes") >= program.info["plan"].memory.arena_bytes


@quiet
def test_a_fault_in_emulated_vector_code_is_reported(monkeypatch: pytest.MonkeyPatch) -> None:
    """A vector length outside 0..256 would be undefined on the VE: the emulation reports it."""
    from sol_sxaurora.render import NetworkRenderer

    render = NetworkRenderer.render

    def broken(self: NetworkRenderer) -> sol.roles.Source:
        src = render(self)
        text = src.files["network.c"].replace("  run_G0(net, in, out);", "  run_G0(net, in, out);\n"
                                              "  (void)_vel_vbrds_vsl(0.0f, 300);")
        return sol.roles.Source({"network.c": text}, src.entry, src.meta)

    monkeypatch.setattr(NetworkRenderer, "render", broken)
    monkeypatch.setenv("SOL_VE_CROSS_COMPILE", "0")
    program = compile_graph(seed_net(1), "ve")
    with pytest.raises(SolError, match="emulated VE fault: invalid vector length in _vel_vbrds_vsl"):
        program(randn(1, 512, 13, 13))


@quiet
def test_concurrent_calls_on_one_network_are_safe() -> None:
    g = conv_block(False)
    program = compile_graph(g, "ve")
    inputs = [[randn(*v.shape) for v in g.inputs] for _ in range(3)]
    want = [run_reference(g, xs)[0] for xs in inputs]
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            for _ in range(3):
                np.testing.assert_allclose(program(*inputs[i])[0], want[i], rtol=1e-4, atol=1e-4)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


# --- generated code, compilers -------------------------------------------------------------------

def _source(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, variant: str) -> str:
    monkeypatch.setenv("SOL_DEBUG_DIR", str(tmp_path))
    g = seed_net(1)
    compile_graph(g, "ve", options={"ve_variant": variant})
    return (tmp_path / g.name / "network.c").read_text()


@quiet
def test_vel_source_seed_network_bias_relu_pool_share_one_loop_nest(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    text = _source(tmp_path, monkeypatch, "vel")
    assert "#include <velintrin.h>" in text and "generated conv2d kernel" in text
    conv = text[text.index("static SOL_NOINLINE void run_G0"):]
    assert "_vel_vfmads_vvsvl" in conv[:conv.index("\n}\n")] and "// #1 conv2d" in conv
    fused = text[text.index("static SOL_NOINLINE void run_G1"):]
    fused = fused[:fused.index("\n}\n")]
    assert "for (long o = 0; o < 1000; ++o)" in fused
    for marker in ("// #1 add", "// #2 relu", "// #3 avg_pool2d"):
        assert marker in fused
    assert "float L" in fused  # ReLU's 13x13 plane stays in per-iteration scratch
    assert "_vel_vfmaxs_vsvl(0.0f" in fused and "_vel_vldu_vssl" in fused and "_vel_vstu_vssl" in fused


@quiet
def test_ncc_source_uses_nec_pragmas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    text = _source(tmp_path, monkeypatch, "ncc")
    for pragma in ("#pragma _NEC ivdep", "#pragma _NEC vreg(acc)", "#pragma _NEC outerloop_unroll(4)",
                   "#pragma omp parallel for"):
        assert pragma in text
    assert "_vel_" not in text and "velintrin" not in text


@quiet
def test_compiler_failure_reports_the_compiler_output(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SOL_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(compiler, "CLANG_FLAGS", (*compiler.CLANG_FLAGS, "-include", "/nonexistent/sol_missing.h"))
    if compiler.toolchain(True).ve is None or compiler.toolchain(True).ve_is_ncc:
        pytest.skip("needs clang's VE target as the VE compiler")
    with pytest.raises(CompileError, match=r"sol_missing.h(.|\n)*command: .*clang"):
        compile_graph(seed_net(1), "ve")


@quiet
def test_cache_hit_keeps_the_ve_object(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SOL_CACHE_DIR", str(tmp_path))
    first = compile_graph(seed_net(1), "ve")
    again = compile_graph(seed_net(1), "ve")
    assert not first.info["cached"] and again.info["cached"]
    entry = Path(again.info["artifact"]).parent
    assert {"network.c", "network.host.so", "velintrin_emu.h"} <= {p.name for p in entry.iterdir()}
    if compiler.ve_clang() is not None:
        assert Path(again.info["ve_object"]) == entry / "network.ve.o"


# --- the performance model ------------------------------------------------------------------------

@quiet
def test_roofline_of_the_seed_network() -> None:
    p = plan(seed_net(2), "ve")
    conv = next(g for g in p.groups if g.kind is GroupKind.LIBRARY)
    est = perfmodel.estimate(conv, p)
    assert est is not None
    assert est.flops == 2 * 2 * 1000 * 13 * 13 * 512  # 2 * N * O * OH * OW * C * kh * kw
    assert est.bytes == 4 * (2 * 512 * 169 + 1000 * 512 + 2 * 1000 * 169)  # x, weights, result
    assert est.bound == "compute" and est.seconds == pytest.approx(est.flops / 4.9e12 + 1e-6)
    pool = next(g for g in p.groups if g.kind is GroupKind.FUSED)
    est = perfmodel.estimate(pool, p)
    assert est is not None and est.bound == "memory" and "VE Type 20B" in est.basis
    t = perfmodel.transfer(p)
    assert t.bytes == 4 * (2 * 512 * 169 + 2 * 1000) and t.seconds == pytest.approx(t.bytes / 12e9)


@pytest.mark.skipif(not HAVE_TORCH, reason="the PyTorch frontend is not installed")
def test_sol_inspect_prints_labelled_estimates() -> None:
    out = _sol("inspect", "zoo:SeedNet", "--input", "2,512,13,13", "--device", "ve")
    assert out.returncode == 0, out.stderr
    assert "library ve-generated" in out.stdout and "depth-first over 2x1000" in out.stdout
    assert "; estimate " in out.stdout and "roofline on VE Type 20B" in out.stdout
    assert "an estimate" in out.stdout and "not a measurement" in out.stdout
    assert "host<->device transfer" in out.stdout


@pytest.mark.parametrize("variant", ["vel", "ncc"])
def test_group_feeding_the_next_only_through_the_arena_is_not_dropped(
        variant: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Regression: GCC 12's interprocedural analysis removed the call of a transpose group whose
    only effect was its store into the arena, read by the convolution after it (all-NaN output
    in the emulation). Group functions are now opaque to IPA (noipa)."""
    from sol.ir import Graph, TensorType

    monkeypatch.setenv("SOL_VE_VARIANT", variant)
    g = Graph("arena_chain")
    x = g.add_input("x", TensorType((2, 5, 4, 4)))
    r = g.add_node("relu", [x]).output
    c = g.add_node("concat", [x, r], {"axis": 2}).output
    t = g.add_node("transpose", [c], {"perm": (0, 3, 1, 2)}).output
    w = g.add_param("w", randn(3, 4, 3, 3))
    g.outputs = [g.add_node("conv2d", [t, w], {"padding": 1}).output]
    xs = [randn(2, 5, 4, 4)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = compile_graph(g, "ve")(*xs)[0]
    np.testing.assert_allclose(got, run_reference(g, xs)[0], rtol=1e-4, atol=1e-4)
