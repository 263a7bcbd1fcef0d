"""Convolution backward ops reading the same tensor share its copy in oneDNN's layout: a conv's
output gradient is converted once for its backward-data and backward-weights ops, a block's input
once for the backward-weights ops of the convolutions it feeds (ConvBackward::share_input)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sol.api import compile_graph
from sol.debug import run_reference
from sol.ir import Graph, TensorType


def _two_layer_backward() -> Graph:
    """The backward of y1 = conv3x3(x1, w1), z = conv1x1(x1, w3) and y2 = conv3x3(x2, w2) where
    gy2 = 2 * grad_x1-part: gy1 feeds a backward-data and two backward-weights ops (through two
    different convolutions), x1 two backward-weights ops, gy2 (computed in the network, so it
    lives in the workspace) a backward-data and a backward-weights op."""
    g = Graph("conv_backward_sharing")
    x1 = g.add_input("x1", TensorType((2, 16, 12, 12)))
    gy1 = g.add_input("gy1", TensorType((2, 32, 12, 12)))
    w1 = g.add_input("w1", TensorType((32, 16, 3, 3)))
    x2 = g.add_input("x2", TensorType((2, 16, 12, 12)))
    w2 = g.add_input("w2", TensorType((16, 16, 3, 3)))
    gx1 = g.add_node("conv2d_backward_data", [gy1, w1], {"shape": (2, 16, 12, 12), "padding": 1}).output
    gw1 = g.add_node("conv2d_backward_weight", [x1, gy1], {"shape": (32, 16, 3, 3), "padding": 1}).output
    gw3 = g.add_node("conv2d_backward_weight", [x1, gy1], {"shape": (32, 16, 1, 1)}).output
    gy2 = g.add_node("mul", [gx1, g.add_const(np.float32(2.0))]).output
    gx2 = g.add_node("conv2d_backward_data", [gy2, w2], {"shape": (2, 16, 12, 12), "padding": 1}).output
    gw2 = g.add_node("conv2d_backward_weight", [x2, gy2], {"shape": (16, 16, 3, 3), "padding": 1}).output
    g.outputs = [gx2, gw1, gw2, gw3]
    return g


def _inputs(g: Graph, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(v.shape).astype(np.float32) for v in g.inputs]


def _assert_matches(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    for o, w in zip(got, want):
        np.testing.assert_allclose(o, w, rtol=1e-4, atol=1e-4 * float(np.abs(w).max()))


def test_backward_ops_share_converted_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOL_DEBUG_DIR", str(tmp_path))
    g = _two_layer_backward()
    program = compile_graph(g, "x86")
    xs = _inputs(g, 0)
    _assert_matches(program(*xs), run_reference(g, xs))
    text = (tmp_path / g.name / "network.cpp").read_text()
    assert text.count(".share_input(") == 4, text  # gy1 twice, x1 once, gy2 once
    lines = program.info["libraries"].splitlines()
    assert any("backward weights" in ln and "diff_dst shared" in ln for ln in lines), lines


def test_a_shared_copy_is_never_stale() -> None:
    """Every call converts afresh: new values in the same buffers (the caller's arrays changed in
    place, so the addresses match the previous call's) and calls alternating between inputs
    give the reference's results each time; a copy kept by address alone would give the
    previous call's gradients."""
    g = _two_layer_backward()
    program = compile_graph(g, "x86")
    first, second = _inputs(g, 1), _inputs(g, 2)
    want_first, want_second = run_reference(g, first), run_reference(g, second)
    xs = [a.copy() for a in first]
    _assert_matches(program(*xs), want_first)
    for a, b in zip(xs, second):
        a[...] = b  # same buffers, other values
    _assert_matches(program(*xs), want_second)
    for args, want in ((first, want_first), (second, want_second), (first, want_first)):
        _assert_matches(program(*args), want)
