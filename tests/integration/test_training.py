"""Compiled training (sol.autodiff.compile_training) on every installed device: a small CNN and
an MLP built in sol's IR, gradients against PyTorch autograd with the same weights, and the
backward plan checked for what the planner should make of it (fused element-wise chains,
library groups for the convolution and dense gradients where the device has a library)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sol.autodiff import compile_training
from sol.ir import Graph, TensorType
from sol.ops.registry import LayerClass, registry
from sol.planner.plan import GroupKind

RTOL, ATOL = 1e-3, 1e-4


def _cnn() -> tuple[Graph, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    p = {
        "w1": rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3,
        "b1": rng.standard_normal(8).astype(np.float32) * 0.1,
        "mean": rng.standard_normal(8).astype(np.float32) * 0.1,
        "var": (rng.random(8) + 0.5).astype(np.float32),
        "gamma": (rng.random(8) + 0.5).astype(np.float32),
        "beta": rng.standard_normal(8).astype(np.float32) * 0.1,
        "w2": rng.standard_normal((8, 4, 3, 3)).astype(np.float32) * 0.2,
        "w3": rng.standard_normal((10, 32)).astype(np.float32) * 0.2,
        "b3": rng.standard_normal(10).astype(np.float32) * 0.1,
    }
    g = Graph("train_cnn")
    x = g.add_input("x", TensorType((2, 3, 10, 10)))
    v = {k: g.add_param(k, a) for k, a in p.items()}
    h = g.add_node("conv2d", [x, v["w1"], v["b1"]], {"padding": 1}).output
    h = g.add_node("batch_norm", [h, v["mean"], v["var"], v["gamma"], v["beta"]], {"eps": 1e-5}).output
    h = g.add_node("relu", [h]).output
    h = g.add_node("max_pool2d", [h], {"kernel": 2}).output  # (2, 8, 5, 5)
    h = g.add_node("conv2d", [h, v["w2"]], {"padding": ((1, 0), (1, 0)), "groups": 2}).output
    h = g.add_node("relu", [h]).output  # (2, 8, 4, 4)
    h = g.add_node("avg_pool2d", [h], {"kernel": 3, "stride": 2, "padding": 1}).output  # (2, 8, 2, 2)
    h = g.add_node("reshape", [h], {"shape": (2, 32)}).output
    h = g.add_node("dense", [h, v["w3"], v["b3"]]).output
    g.outputs = [g.add_node("log_softmax", [h], {"axis": 1}).output]
    return g, p


def _cnn_torch(x: torch.Tensor, t: dict[str, torch.Tensor]) -> torch.Tensor:
    h = F.conv2d(x, t["w1"], t["b1"], padding=1)
    h = (h - t["mean"].view(1, -1, 1, 1)) / torch.sqrt(t["var"].view(1, -1, 1, 1) + 1e-5) \
        * t["gamma"].view(1, -1, 1, 1) + t["beta"].view(1, -1, 1, 1)
    h = F.max_pool2d(F.relu(h), 2)
    h = F.relu(F.conv2d(F.pad(h, (1, 0, 1, 0)), t["w2"], groups=2))
    h = F.avg_pool2d(h, 3, stride=2, padding=1).reshape(2, 32)
    return F.log_softmax(F.linear(h, t["w3"], t["b3"]), dim=1)


def _mlp() -> tuple[Graph, dict[str, np.ndarray]]:
    rng = np.random.default_rng(1)
    p = {"w1": rng.standard_normal((32, 16)).astype(np.float32) * 0.3,
         "b1": rng.standard_normal(32).astype(np.float32) * 0.1,
         "w2": rng.standard_normal((5, 32)).astype(np.float32) * 0.3}
    g = Graph("train_mlp")
    x = g.add_input("x", TensorType((3, 4, 16)))
    v = {k: g.add_param(k, a) for k, a in p.items()}
    h = g.add_node("dense", [x, v["w1"], v["b1"]]).output
    h = g.add_node("gelu", [h], {"approximate": "tanh"}).output
    h = g.add_node("dense", [h, v["w2"]]).output
    g.outputs = [g.add_node("softmax", [h], {"axis": 2}).output]
    return g, p


def _mlp_torch(x: torch.Tensor, t: dict[str, torch.Tensor]) -> torch.Tensor:
    h = F.gelu(F.linear(x, t["w1"], t["b1"]), approximate="tanh")
    return torch.softmax(F.linear(h, t["w2"]), dim=2)


def _check(device: str, graph: Graph, params: dict[str, np.ndarray], torch_fn, x: np.ndarray):  # type: ignore[no-untyped-def]
    names = list(params)
    prog = compile_training(graph, ["x", *names], device=device)
    assert [v.name for v in prog.diff.forward.inputs] == ["x", *names]
    outs, saved = prog.forward(x, *params.values())
    rng = np.random.default_rng(2)
    gy = rng.standard_normal(outs[0].shape).astype(np.float32)
    grads = prog.backward(saved, [gy])

    tx = torch.tensor(x, requires_grad=True)
    tp = {k: torch.tensor(a, requires_grad=True) for k, a in params.items()}
    ty = torch_fn(tx, tp)
    ty.backward(torch.tensor(gy))
    np.testing.assert_allclose(outs[0], ty.detach().numpy(), rtol=RTOL, atol=ATOL)
    want = [tx.grad] + [tp[k].grad for k in names]
    for name, got, w in zip(["x", *names], grads, want):
        assert w is not None
        np.testing.assert_allclose(got, w.numpy(), rtol=RTOL, atol=ATOL, err_msg=f"gradient of {name} on {device}")
    # A second step with new weights: trained parameters are inputs, read at every call.
    params2 = {k: (a * 0.5).astype(np.float32) for k, a in params.items()}
    outs2, _ = prog.forward(x, *params2.values())
    ty2 = torch_fn(torch.tensor(x), {k: torch.tensor(a) for k, a in params2.items()})
    np.testing.assert_allclose(outs2[0], ty2.numpy(), rtol=RTOL, atol=ATOL)
    return prog


def test_cnn_gradients_match_pytorch(device: str) -> None:
    graph, params = _cnn()
    before = str(graph)
    x = np.random.default_rng(3).standard_normal((2, 3, 10, 10)).astype(np.float32)
    prog = _check(device, graph, params, _cnn_torch, x)
    assert str(graph) == before  # compile_training leaves the caller's graph alone

    plan = prog.backward_program.info["plan"]
    anchors = {g.nodes[0].op: g for g in plan.groups if g.kind is GroupKind.LIBRARY}
    fused_elementwise = [g for g in plan.groups if g.kind is GroupKind.FUSED
                         and sum(registry.layer_class(n) is LayerClass.ELEMENTWISE for n in g.nodes) >= 2]
    # The ReLU backward chains (recomputed activation, mask, multiply) are fused loops.
    assert fused_elementwise, plan
    ops = {n.op for g in plan.groups for n in g.nodes}
    assert {"conv2d_backward_data", "conv2d_backward_weight", "max_pool2d_backward", "matmul"} <= ops
    if device == "x86":  # oneDNN's backward primitives and matmul
        for op in ("conv2d_backward_data", "conv2d_backward_weight", "matmul"):
            assert op in anchors and anchors[op].backend == "onednn", f"{op} is not a library group"
    # The forward saves what the backward needs and no full-size ReLU output (recomputed
    # instead). A saved ReLU may only be the pooled result: the forward program moves ReLU past
    # the max-pool (passes/commute.py), so the pool's saved output is then a ReLU's.
    saved_ops = [prog.diff.forward.outputs[s.index].producer for s in prog.diff.saved if s.kind == "output"]
    saved_relus = [n for n in saved_ops if n is not None and n.op == "relu"]
    assert all(n.inputs[0].producer is not None and n.inputs[0].producer.op == "max_pool2d" for n in saved_relus), \
        [str(n) for n in saved_relus]


def test_mlp_gradients_match_pytorch(device: str) -> None:
    graph, params = _mlp()
    x = np.random.default_rng(4).standard_normal((3, 4, 16)).astype(np.float32)
    prog = _check(device, graph, params, _mlp_torch, x)
    plan = prog.backward_program.info["plan"]
    libs = [g for g in plan.groups if g.kind is GroupKind.LIBRARY]
    assert {g.nodes[0].op for g in libs} == {"matmul"}  # dense gradients are library matmuls
    assert any(g.kind is GroupKind.FUSED and sum(n.op in ("mul", "add", "tanh") for n in g.nodes) >= 3
               for g in plan.groups)  # the GELU derivative is one fused loop


def test_frozen_parameters_and_none_gradients(device: str) -> None:
    rng = np.random.default_rng(5)
    g = Graph("train_frozen")
    x = g.add_input("x", TensorType((4, 6)))
    w = g.add_param("w", rng.standard_normal((4, 6)).astype(np.float32))
    b = g.add_param("b", rng.standard_normal(6).astype(np.float32))
    g.outputs = [g.add_node("add", [g.add_node("tanh", [g.add_node("mul", [x, w]).output]).output, b]).output]
    prog = compile_training(g, ["b"], device=device)  # w stays a parameter placed once
    assert [v.name for v in prog.diff.forward.inputs] == ["x", "b"]
    assert prog.diff.saved == []  # db = sum of the output gradient's rows: nothing to keep
    xs = rng.standard_normal((4, 6)).astype(np.float32)
    outs, saved = prog.forward(xs, g.params[1].data)
    np.testing.assert_allclose(outs[0], np.tanh(xs * g.params[0].data) + g.params[1].data, rtol=1e-5, atol=1e-6)
    gy = rng.standard_normal((4, 6)).astype(np.float32)
    (gb,) = prog.backward(saved, [gy])
    np.testing.assert_allclose(gb, gy.sum(axis=0), rtol=1e-5, atol=1e-5)
    (gb,) = prog.backward(saved, [None])  # None: a zero output gradient
    np.testing.assert_array_equal(gb, np.zeros(6, np.float32))
    with pytest.raises(TypeError, match="output gradient"):
        prog.backward(saved, [])


def test_lstm_backpropagation_through_time_matches_pytorch(device: str) -> None:
    rng = np.random.default_rng(6)
    steps, n, i, h = 2, 2, 5, 6
    p = {"w_ih": rng.standard_normal((4 * h, i)).astype(np.float32) * 0.3,
         "w_hh": rng.standard_normal((4 * h, h)).astype(np.float32) * 0.3,
         "b_ih": rng.standard_normal(4 * h).astype(np.float32) * 0.1,
         "b_hh": rng.standard_normal(4 * h).astype(np.float32) * 0.1}
    g = Graph("train_lstm")
    x = g.add_input("x", TensorType((steps, n, i)))
    h0, c0 = g.add_input("h0", TensorType((n, h))), g.add_input("c0", TensorType((n, h)))
    node = g.add_node("lstm", [x, h0, c0, *(g.add_param(k, a) for k, a in p.items())])
    g.outputs = [node.outputs[0], node.outputs[2]]  # y and the final cell state
    prog = compile_training(g, ["x", "h0", "c0", *p], device=device)
    feeds = [rng.standard_normal(s).astype(np.float32) for s in ((steps, n, i), (n, h), (n, h))]
    outs, saved = prog.forward(*feeds, *p.values())
    assert len(saved) == len(prog.diff.saved) and all(s.kind == "input" for s in prog.diff.saved)
    gy, gc = rng.standard_normal((steps, n, h)).astype(np.float32), rng.standard_normal((n, h)).astype(np.float32)
    grads = prog.backward(saved, [gy, gc])

    lstm = torch.nn.LSTM(i, h)
    with torch.no_grad():
        for name, a in p.items():
            getattr(lstm, f"{name.replace('w_', 'weight_').replace('b_', 'bias_')}_l0").copy_(torch.tensor(a))
    tx, th, tc = (torch.tensor(a, requires_grad=True) for a in feeds)
    y, (_, cn) = lstm(tx, (th[None], tc[None]))
    torch.autograd.backward([y, cn[0]], [torch.tensor(gy), torch.tensor(gc)])
    np.testing.assert_allclose(outs[0], y.detach().numpy(), rtol=RTOL, atol=ATOL)
    want = [tx.grad, th.grad, tc.grad, lstm.weight_ih_l0.grad, lstm.weight_hh_l0.grad, lstm.bias_ih_l0.grad,
            lstm.bias_hh_l0.grad]
    for name, got, w in zip(["x", "h0", "c0", *p], grads, want):
        assert w is not None
        np.testing.assert_allclose(got, w.numpy(), rtol=RTOL, atol=ATOL, err_msg=f"gradient of {name} on {device}")


def test_embedding_gradients_scatter_add_and_amax(device: str) -> None:
    rng = np.random.default_rng(7)
    table = rng.standard_normal((10, 6)).astype(np.float32)
    g = Graph("train_embedding")
    ids = g.add_input("ids", TensorType((3, 4), "int64"))
    emb = g.add_node("gather", [g.add_param("table", table), ids], {"axis": 0}).output  # (3, 4, 6)
    g.outputs = [g.add_node("max", [g.add_node("tanh", [emb]).output], {"axes": (1,)}).output]
    prog = compile_training(g, ["table"], device=device)
    plan_ops = {n.op for grp in prog.backward_program.info["plan"].groups for n in grp.nodes}
    assert "gather_backward" in plan_ops
    idx = np.array([[1, 3, 3, 9], [0, 1, 1, 1], [-1, 2, 5, 3]])  # repeats, and a negative index
    outs, saved = prog.forward(idx, table)
    gy = rng.standard_normal((3, 6)).astype(np.float32)
    (gt,) = prog.backward(saved, [gy])
    tt = torch.tensor(table, requires_grad=True)
    ty = torch.tanh(tt[torch.tensor(idx) % 10]).amax(dim=1)
    ty.backward(torch.tensor(gy))
    np.testing.assert_allclose(outs[0], ty.detach().numpy(), rtol=RTOL, atol=ATOL)
    assert tt.grad is not None
    np.testing.assert_allclose(gt, tt.grad.numpy(), rtol=RTOL, atol=ATOL)
