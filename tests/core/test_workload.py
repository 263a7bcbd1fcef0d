"""Core's work counts (sol.workload) against hand-computed values, the roofline arithmetic and
the ceilings cache (sol.roofline). No framework, no device."""

from __future__ import annotations

import json
import types
from pathlib import Path

import numpy as np
import pluggy
import pytest

from sol import roofline
from sol.ir import Graph, TensorType
from sol.ops.registry import LayerClass
from sol.planner.plan import Group, GroupKind
from sol.workload import Work, group_work, node_flops, node_work

F4 = 4  # bytes per float32


def _conv_graph(bias: bool = True, groups: int = 1) -> tuple[Graph, object]:
    g = Graph("conv")
    x = g.add_input("x", TensorType((2, 8, 10, 12)))
    w = g.add_param("w", np.zeros((6, 8 // groups, 3, 3), np.float32))
    ins = [x, w] + ([g.add_param("b", np.zeros(6, np.float32))] if bias else [])
    node = g.add_node("conv2d", ins, {"stride": 2, "padding": 1, "groups": groups})
    g.outputs = [node.output]
    return g, node


def test_conv2d_flops_and_bytes() -> None:
    _, node = _conv_graph()
    # Output (2, 6, 5, 6): each of its 360 elements takes 8*3*3 = 72 multiply-adds, plus a bias add.
    assert node.output.shape == (2, 6, 5, 6)
    assert node_flops(node) == 2 * 360 * 72 + 360
    work = node_work(node)
    assert work.bytes_read == (2 * 8 * 10 * 12 + 6 * 8 * 3 * 3 + 6) * F4
    assert work.bytes_written == 360 * F4


def test_grouped_conv_without_bias() -> None:
    _, node = _conv_graph(bias=False, groups=2)
    # Each output channel sees 8 / 2 = 4 input channels.
    assert node_flops(node) == 2 * 360 * 4 * 9


def test_dense_matmul_and_window_ops() -> None:
    g = Graph("misc")
    x = g.add_input("x", TensorType((4, 16)))
    w = g.add_param("w", np.zeros((10, 16), np.float32))
    b = g.add_param("b", np.zeros(10, np.float32))
    dense = g.add_node("dense", [x, w, b])
    assert node_flops(dense) == 2 * 40 * 16 + 40

    a = g.add_input("a", TensorType((3, 5, 7)))
    c = g.add_input("c", TensorType((3, 7, 2)))
    mm = g.add_node("matmul", [a, c])  # (3, 5, 2), K = 7
    assert node_flops(mm) == 2 * 30 * 7

    img = g.add_input("img", TensorType((1, 2, 8, 8)))
    mp = g.add_node("max_pool2d", [img], {"kernel": 2})  # (1, 2, 4, 4), 4 compares each
    assert node_flops(mp) == 32 * 4
    ap = g.add_node("adaptive_avg_pool2d", [img], {"output_size": 1})
    assert node_flops(ap) == 128  # one add per input element
    sm = g.add_node("softmax", [x], {"axis": 1})
    assert node_flops(sm) == 5 * 64
    assert node_flops(g.add_node("relu", [x])) == 64
    assert node_flops(g.add_node("add", [x, x])) == 64
    assert node_flops(g.add_node("reshape", [x], {"shape": (64,)})) == 0
    assert node_flops(g.add_node("transpose", [x], {"perm": (1, 0)})) == 0
    # A value read twice is one read: the add reads x once.
    assert node_work(g.add_node("add", [x, x])).bytes_read == 64 * F4


def test_conv_transpose_and_recurrent_layers() -> None:
    g = Graph("more")
    x = g.add_input("x", TensorType((2, 4, 5, 5)))
    w = g.add_param("w", np.zeros((4, 3, 2, 2), np.float32))  # (C, O/groups, KH, KW)
    up = g.add_node("conv_transpose2d", [x, w], {"stride": 2})
    assert up.output.shape == (2, 3, 10, 10)
    # 200 input elements, each multiply-added into a 2x2 window of 3 output channels.
    assert node_flops(up) == 2 * 200 * 3 * 4

    t, n, h = 6, 2, 5
    gx = g.add_input("gx", TensorType((t, n, 4 * h)))
    h0, c0 = g.add_input("h0", TensorType((n, h))), g.add_input("c0", TensorType((n, h)))
    w_hh = g.add_param("w_hh", np.zeros((4 * h, h), np.float32))
    b_hh = g.add_param("b_hh", np.zeros(4 * h, np.float32))
    lstm = g.add_node("lstm_recurrence", [gx, h0, c0, w_hh, b_hh])
    # Per step and row: h @ W_hh^T (2*20*5 = 200), gx and b_hh added to 20 gates (40), 9 * 5 = 45.
    assert node_flops(lstm) == t * n * (200 + 40 + 45)
    gru = g.add_node("gru_recurrence", [g.add_input("gx3", TensorType((t, n, 3 * h))), h0,
                                        g.add_param("w3", np.zeros((3 * h, h), np.float32))])
    assert node_flops(gru) == t * n * (2 * 15 * 5 + 15 + 45)  # no b_hh: one add per gate


def test_an_ops_own_count_overrides_the_layer_class_default(monkeypatch: pytest.MonkeyPatch) -> None:
    """The count is the OpDef's (``flops``); without one, an element-wise op counts 1 per output."""
    from sol.ops.registry import registry

    g = Graph("r")
    x = g.add_input("x", TensorType((4, 4)))
    node = g.add_node("tanh", [x])
    assert node_flops(node) == 16
    monkeypatch.setattr(registry.get("tanh"), "flops", lambda n: 7.0 * n.outputs[0].type.numel)
    assert node_flops(node) == 112


def test_group_work_counts_boundary_traffic_only() -> None:
    """conv -> relu -> max_pool in one group: FLOPs of all three, bytes of x, w and the pooled
    output only; the intermediates stay inside the group."""
    g = Graph("fused")
    x = g.add_input("x", TensorType((1, 3, 8, 8)))
    w = g.add_param("w", np.zeros((4, 3, 1, 1), np.float32))
    conv = g.add_node("conv2d", [x, w])  # (1, 4, 8, 8): 256 outputs x 3 MACs
    relu = g.add_node("relu", [conv.output])
    pool = g.add_node("max_pool2d", [relu.output], {"kernel": 2})  # (1, 4, 4, 4)
    group = Group(0, GroupKind.FUSED, [conv, relu, pool], LayerClass.COMPUTE_BOUND,
                  inputs=[x, w, x], outputs=[pool.output])
    work = group_work(group)
    assert work.flops == 2 * 256 * 3 + 256 + 64 * 4
    assert work.bytes_read == (192 + 12) * F4
    assert work.bytes_written == 64 * F4
    assert work.bytes == (192 + 12 + 64) * F4
    assert work.intensity == pytest.approx(work.flops / work.bytes)
    alias = Group(1, GroupKind.ALIAS, [g.add_node("reshape", [pool.output], {"shape": (64,)})],
                  LayerClass.SHAPE, inputs=[pool.output], outputs=[])
    assert group_work(alias) == Work()


def test_roofline_arithmetic() -> None:
    c = roofline.Ceilings(flops_per_s=100e9, bytes_per_s=10e9, threads=2, basis="test")
    assert c.ridge == 10.0
    # Intensity 1 FLOP/B: memory bound, roof at 10 GFLOP/s.
    assert c.bound(1e6, 1e6) == "memory"
    assert c.attainable(1e6, 1e6) == pytest.approx(10e9)
    assert c.fraction(1e6, 1e6, 1e-3) == pytest.approx(1e9 / 10e9)
    # Intensity 100: compute bound, roof at the SGEMM rate.
    assert c.bound(1e8, 1e6) == "compute"
    assert c.fraction(1e8, 1e6, 2e-3) == pytest.approx(50e9 / 100e9)
    # No FLOPs (a copy): judged by bandwidth alone.
    assert c.bound(0, 1e6) == "memory"
    assert c.fraction(0, 1e6, 1e-4) == pytest.approx(1e10 / 10e9)


def test_ceilings_cache_per_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOL_CACHE_DIR", str(tmp_path))
    assert roofline.load("x86") is None
    c = roofline.Ceilings(123e9, 45e9, 2, "hand-made", "2026-01-01")
    path = roofline.save("x86", c)
    assert path == tmp_path / roofline.FILE
    assert roofline.load("x86") == c
    assert roofline.load("other") is None
    data = json.loads(path.read_text())
    assert list(data) == [roofline.machine_key("x86")]
    path.write_text("{not json")  # a damaged file is no ceilings, not a crash
    assert roofline.load("x86") is None


def test_obtain_asks_plugins_once_then_uses_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       fresh_plugins) -> None:
    monkeypatch.setenv("SOL_CACHE_DIR", str(tmp_path))
    calls: list[str] = []

    @pluggy.HookimplMarker("sol")
    def sol_measure_ceilings(device: str) -> roofline.Ceilings | None:
        calls.append(device)
        return roofline.Ceilings(1e9, 1e9, 1, "fake") if device == "mydev" else None

    plugin = types.ModuleType("meter")
    plugin.SOL_PLUGIN_API = ">=1.0,<2"  # type: ignore[attr-defined]
    plugin.sol_measure_ceilings = sol_measure_ceilings  # type: ignore[attr-defined]
    fresh_plugins.register(plugin, "meter")
    assert roofline.obtain("other") is None
    assert roofline.obtain("mydev", measure=False) is None
    first = roofline.obtain("mydev")
    assert first is not None and first.basis == "fake"
    assert roofline.obtain("mydev") == first
    assert calls == ["other", "mydev"]  # the second "mydev" came from the cache
