"""Finite-only fusions on x86: fast where values are finite, exact (as PyTorch) where they are not.

oneDNN's clip (relu6, hardtanh, clamp) turns NaN into its lower bound where PyTorch keeps it. sol
fuses it into a convolution anyway where sol.passes.finite proves the operand finite given finite
inputs and parameters, checks that premise when it runs (parameters at load, inputs at every
call) and runs the network's exact variant where it does not hold. These tests compare with
eager PyTorch NaN-aware and check which variant ran (``program.info["finite_guard"]``).
"""

from __future__ import annotations

import copy
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import sol
from sol.api import compile_graph
from sol.debug import run_reference
from sol.ir import Graph, TensorType
from sol.planner.plan import GroupKind
from sol.program import Program

from graphs import randn

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")

nan, inf = math.nan, math.inf


class MobileBlock(torch.nn.Module):
    """MobileNetV2's inverted residual core: 1x1 conv -> BN -> ReLU6 -> depthwise 3x3 -> ReLU6 -> 1x1."""

    def __init__(self) -> None:
        super().__init__()
        self.expand = torch.nn.Conv2d(4, 16, 1, bias=False)
        self.bn = torch.nn.BatchNorm2d(16)
        self.dw = torch.nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.project = torch.nn.Conv2d(16, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.bn(self.expand(x)))
        return self.project(F.relu6(self.dw(y)))


def _block() -> MobileBlock:
    torch.manual_seed(0)
    m = MobileBlock().eval()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.running_var.uniform_(0.5, 2.0)
        m.bn.weight.uniform_(0.5, 1.5)
    return m


def _same(got: torch.Tensor, want: torch.Tensor) -> None:
    """NaN exactly where eager has NaN, infinities equal, the rest within rtol 1e-4."""
    same_nan = torch.equal(got.isnan(), want.isnan())
    assert same_nan, f"NaN at {int(got.isnan().sum())} places, eager has {int(want.isnan().sum())}"
    same_inf = torch.equal(got.isinf(), want.isinf()) and torch.equal(got[got.isinf()], want[want.isinf()])
    assert same_inf, f"infinities at {int(got.isinf().sum())} places, eager has {int(want.isinf().sum())}"
    finite = want.isfinite()
    torch.testing.assert_close(got[finite], want[finite], rtol=1e-4, atol=1e-5)


def _guard(program: Program):  # noqa: ANN202 - sol_x86.runtime.FiniteGuard
    return program.info["finite_guard"]


def _fused_clamps(program: Program) -> int:
    """Clamps run as post-ops of a oneDNN call."""
    return sum(n.op == "clamp" for g in program.info["plan"].groups if g.kind is GroupKind.LIBRARY for n in g.epilogue)


def _with_specials(x: torch.Tensor) -> torch.Tensor:
    x = x.clone()
    x[0, 1, 2, 3] = nan
    x[1, 0, 5, 5] = inf
    x[1, 3, 0, 0] = -inf
    return x


def test_mobilenet_block_fuses_relu6_and_is_exact_for_nan_inputs() -> None:
    m = _block()
    x = torch.randn(2, 4, 8, 8)
    fast = sol.optimize(m, x, device="x86")
    xs = _with_specials(x)
    with torch.no_grad():
        _same(fast(x), m(x))
        want = m(xs)
        assert want.isnan().any()  # the NaN and both infinities spread through the block
        _same(fast(xs), want)
        _same(fast(x), m(x))  # finite again
    program = fast.program
    # Both ReLU6 are oneDNN post-ops of their convolutions (the clip between them no longer
    # makes the tensor leave oneDNN's layout), and the plan says so.
    assert _fused_clamps(program) == 2
    explained = str(sol.explain(m, x, device="x86"))
    assert explained.count("epilogue clamp") == 2 and explained.count("library onednn") == 3
    guard = _guard(program)
    assert guard.fast_usable and guard.checked_params > 0
    assert guard.exact_calls == 1  # the input check found the specials: the exact variant ran once
    with torch.no_grad():
        fast(x)
    assert guard.exact_calls == 1  # finite inputs: the fused network
    # The exact variant runs the clips in generated loops, exact at NaN.
    assert _fused_clamps(guard.exact()) == 0


def test_nan_weight_before_optimize_runs_the_exact_variant() -> None:
    m = _block()
    with torch.no_grad():
        m.dw.weight[3, 0, 1, 1] = nan
    x = torch.randn(2, 4, 8, 8)
    fast = sol.optimize(m, x, device="x86")
    guard = _guard(fast.program)
    assert not guard.fast_usable and guard.nonfinite_params  # found when loading
    with torch.no_grad():
        want = m(x)
        assert want.isnan().any()
        _same(fast(x), want)
    assert guard.exact_calls == 1


def test_nan_weight_written_after_optimize_is_seen() -> None:
    """``w.data[...] = nan`` after optimize: the frontend notices the weights changed and compiles
    again; the new program finds the NaN when loading and runs the exact variant."""
    m = _block()
    x = torch.randn(2, 4, 8, 8)
    fast = sol.optimize(m, x, device="x86")
    first = fast.program
    with torch.no_grad():
        _same(fast(x), m(x))
    m.expand.weight.data[0, 0, 0, 0] = nan
    with torch.no_grad():
        want = m(x)
        assert want.isnan().any()
        _same(fast(x), want)
    assert fast.program is not first and _guard(first).exact_calls == 0
    assert not _guard(fast.program).fast_usable and _guard(fast.program).exact_calls == 1


class Tainted(torch.nn.Module):
    """conv -> relu6 three times: after x / y and after log(x) (which make NaN and inf from
    finite inputs: the clip must stay exact, unfused) and after x alone (fused)."""

    def __init__(self) -> None:
        super().__init__()
        self.a = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.b = torch.nn.Conv2d(2, 4, 3, padding=1)
        self.c = torch.nn.Conv2d(2, 4, 3, padding=1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return F.relu6(self.a(x / y)), F.relu6(self.b(torch.log(x))), F.relu6(self.c(x))


def test_nan_made_inside_the_network_keeps_the_clip_exact() -> None:
    torch.manual_seed(0)
    m = Tainted().eval()
    x, y = torch.rand(1, 2, 6, 6) + 0.5, torch.rand(1, 2, 6, 6) + 0.5
    fast = sol.optimize(m, x, y, device="x86")
    # Finite inputs that make NaN and inf inside: 0 / 0, 1 / 0, log(-1), log(0).
    x2, y2 = x.clone(), y.clone()
    x2[0, 0, 1, 1], y2[0, 0, 1, 1] = 0.0, 0.0
    y2[0, 1, 4, 4] = 0.0
    x2[0, 1, 2, 2], x2[0, 0, 3, 3] = -1.0, 0.0
    with torch.no_grad():
        for args in ((x, y), (x2, y2)):
            for got, want in zip(fast(*args), m(*args)):
                _same(got, want)
        assert all(w.isnan().any() for w in m(x2, y2)[:2])
    program = fast.program
    assert _fused_clamps(program) == 1  # only the clean branch's
    guard = _guard(program)
    assert guard.exact_calls == 0  # the inputs were finite: the fused network was exact
    # y reaches no fused clip: an inf in it is no reason to leave the fused network.
    y3 = y.clone()
    y3[0, 0, 0, 0] = inf
    with torch.no_grad():
        for got, want in zip(fast(x, y3), m(x, y3)):
            _same(got, want)
    assert guard.exact_calls == 0


def test_exact_variant_comes_from_the_compile_cache_the_second_time() -> None:
    m = _block()
    x = torch.randn(2, 4, 8, 8)
    first = _guard(sol.optimize(m, x, device="x86").program).exact()
    again = _guard(sol.optimize(copy.deepcopy(m), x, device="x86").program).exact()
    assert again is not first and again.info["cached"]
    assert again.info["cache_key"] == first.info["cache_key"]


def _every_finite_only_step() -> Graph:
    """One convolution or dense layer per finite-only post-op kind (sol_x86.libraries), each an
    output: clamp with one bound (the other infinite), hardsigmoid, exp, maximum with a scalar,
    minimum with a per-channel operand, leaky_relu of slope 0, gelu (erf, +inf -> +inf), and relu
    (exact anyway, faster as oneDNN's max where the operand is finite)."""
    g = Graph("finite_only_steps")
    x = g.add_input("x", TensorType((2, 3, 5, 5)))
    flat = g.add_input("flat", TensorType((4, 6)))

    def conv(name: str) -> object:
        w = g.add_param(f"{name}.w", randn(4, 3, 3, 3) * 0.5)
        return g.add_node("conv2d", [x, w, g.add_param(f"{name}.b", randn(4))], {"padding": 1}).output

    def dense(name: str) -> object:
        return g.add_node("dense", [flat, g.add_param(f"{name}.w", randn(5, 6))]).output

    outs = [
        g.add_node("clamp", [conv("clamp")], {"min": 0.0}).output,
        g.add_node("hardsigmoid", [conv("hsig")]).output,
        g.add_node("exp", [conv("exp")]).output,
        g.add_node("maximum", [conv("max"), g.add_const(np.float32(0.25))]).output,
        g.add_node("minimum", [conv("min"), g.add_param("min.t", randn(4, 1, 1))]).output,
        g.add_node("leaky_relu", [dense("lrelu")], {"alpha": 0.0}).output,
        g.add_node("gelu", [dense("gelu")], {"approximate": "none", "inf_to_nan": False}).output,
        g.add_node("relu", [conv("relu")]).output,
    ]
    g.outputs = outs
    return g


def _same_array(got: np.ndarray, want: np.ndarray) -> None:
    _same(torch.from_numpy(got), torch.from_numpy(np.asarray(want, np.float32)))


def test_every_finite_only_post_op_is_fused_and_exact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOL_DEBUG_DIR", str(tmp_path))
    g = _every_finite_only_step()
    fast = sol.optimize(g, device="x86")
    program = fast.program
    fused = [n.op for grp in program.info["plan"].groups if grp.kind is GroupKind.LIBRARY for n in grp.epilogue]
    assert {"clamp", "hardsigmoid", "exp", "maximum", "minimum", "leaky_relu", "gelu", "relu"} <= set(fused)
    text = (tmp_path / g.name / "network.cpp").read_text()
    assert "sol::eltwise(dnnl_eltwise_clip, 0.0f, std::numeric_limits<float>::infinity(), true)" in text
    # relu (and leaky_relu of slope 0) as oneDNN's own max, marked finite-only for the runtime library
    assert text.count("sol::eltwise(dnnl_eltwise_relu, 0.0f, 0.0f, true)") == 2
    x = randn(2, 3, 5, 5)
    flat = randn(4, 6)
    specials_x = x.copy()
    specials_x[0, 0, 1, 1], specials_x[1, 2, 3, 3], specials_x[1, 1, 0, 0] = np.nan, np.inf, -np.inf
    specials_flat = flat.copy()
    specials_flat[0, 0], specials_flat[1, 1], specials_flat[2, 2] = np.nan, np.inf, -np.inf
    guard = program.info.get("finite_guard")
    exact_calls = []
    for args in ((x, flat), (specials_x, flat), (x, specials_flat)):
        with np.errstate(all="ignore"):
            want = run_reference(g, list(args))
        for got, w in zip(fast(*args), want):
            _same_array(got, w)
        exact_calls.append(guard and guard.exact_calls)
    assert exact_calls == [0, 1, 2]  # each input is checked
    # The exact variant: the NaN-keeping relu, nothing finite-only, nothing to check.
    exact = guard.exact()
    assert exact.info["source_meta"]["finite_only"] is False and "finite_guard" not in exact.info


def test_gradients_are_inputs_and_guarded_like_any() -> None:
    """A training program's inputs include gradients, which may be anything: a backward-shaped
    graph (dense over the incoming gradient, then a clamp) fuses the clamp and checks that input."""
    g = Graph("backward_like")
    grad = g.add_input("grad_y", TensorType((4, 6)))
    g.outputs = [g.add_node("clamp", [g.add_node("dense", [grad, g.add_param("w", randn(5, 6))]).output],
                            {"min": -1.0, "max": 1.0}).output]
    program = compile_graph(g, "x86", training=True)  # as sol.autodiff compiles a backward graph
    dy = randn(4, 6)
    dy[1, 2] = np.nan
    with np.errstate(all="ignore"):
        want = run_reference(g, [dy])[0]
    _same_array(program(dy)[0], want)
    assert _fused_clamps(program) == 1 and program.info["source_meta"]["finite_inputs"] == [0]
    assert _guard(program).exact_calls == 1
