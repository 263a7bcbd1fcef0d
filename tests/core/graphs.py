"""Small IR graphs built directly in sol's IR (no framework), shared by the core tests."""

from __future__ import annotations

import numpy as np

from sol.ir import Graph, TensorType

rng = np.random.default_rng(0)


def randn(*shape: int) -> np.ndarray:
    return rng.standard_normal(shape).astype(np.float32)


def seed_net(n: int = 2) -> Graph:
    """Conv2d(512, 1000, 1) + bias -> ReLU -> AvgPool2d(13) on (n, 512, 13, 13)."""
    g = Graph("seed")
    x = g.add_input("x", TensorType((n, 512, 13, 13)))
    w = g.add_param("conv.weight", randn(1000, 512, 1, 1) * 0.05)
    b = g.add_param("conv.bias", randn(1000))
    y = g.add_node("conv2d", [x, w, b], source="conv").output
    y = g.add_node("relu", [y], source="relu").output
    y = g.add_node("avg_pool2d", [y], {"kernel": (13, 13)}, source="pool").output
    g.outputs = [y]
    return g


def conv_bn_relu_pool(c_in: int = 3, c: int = 8, hw: int = 10) -> Graph:
    g = Graph("cbr")
    x = g.add_input("x", TensorType((2, c_in, hw, hw)))
    w = g.add_param("conv.weight", randn(c, c_in, 3, 3) * 0.3)
    mean, var = g.add_param("bn.mean", randn(c)), g.add_param("bn.var", np.abs(randn(c)) + 0.5)
    gamma, beta = g.add_param("bn.weight", randn(c)), g.add_param("bn.bias", randn(c))
    y = g.add_node("conv2d", [x, w], {"padding": 1}).output
    y = g.add_node("batch_norm", [y, mean, var, gamma, beta], {"eps": 1e-5}).output
    y = g.add_node("relu", [y]).output
    y = g.add_node("max_pool2d", [y], {"kernel": 2}).output
    y = g.add_node("dropout", [y], {"p": 0.5}).output
    y = g.add_node("reshape", [y], {"shape": (2, -1)}).output
    g.outputs = [y]
    return g


def branchy() -> Graph:
    """Residual branches, a value read by several groups, a reused dead intermediate: the
    memory plan must keep live tensors apart while reusing dead ones."""
    g = Graph("branchy")
    x = g.add_input("x", TensorType((2, 4, 8, 8)))
    a = g.add_node("relu", [x]).output
    b = g.add_node("max_pool2d", [a], {"kernel": 2}).output
    c = g.add_node("sigmoid", [b]).output
    d = g.add_node("avg_pool2d", [a], {"kernel": 2}).output
    e = g.add_node("add", [c, d]).output
    f = g.add_node("softmax", [e], {"axis": 1}).output
    h = g.add_node("concat", [f, e, b], {"axis": 1}).output
    i = g.add_node("tanh", [h]).output
    j = g.add_node("mean", [i], {"axes": (2, 3)}).output
    g.outputs = [j, e]
    return g


def conv_block(residual: bool) -> Graph:
    """Convolution with bias, optional residual add, ReLU, per-channel scale and clamp: every
    element-wise op becomes the generated kernel's epilogue."""
    g = Graph("conv_block_res" if residual else "conv_block")
    x = g.add_input("x", TensorType((2, 8, 10, 10)))
    r = g.add_input("r", TensorType((2, 16, 10, 10)))
    y = g.add_node("conv2d", [x, g.add_param("w", randn(16, 8, 3, 3) * 0.2), g.add_param("b", randn(16))],
                   {"padding": 1}).output
    if residual:
        y = g.add_node("add", [y, r]).output
    y = g.add_node("relu", [y]).output
    y = g.add_node("mul", [y, g.add_param("s", randn(16, 1, 1))]).output
    g.outputs = [g.add_node("clamp", [y], {"min": -1.0, "max": 1.5}).output]
    return g


def dense_mm(shape: tuple[int, ...]) -> Graph:
    """Dense + GELU (an epilogue with no VE instruction), matmul, softmax."""
    g = Graph(f"dense_mm_{len(shape)}d")
    x = g.add_input("x", TensorType(shape))
    y = g.add_node("dense", [x, g.add_param("w", randn(24, 32)), g.add_param("b", randn(24))]).output
    y = g.add_node("gelu", [y], {"approximate": "tanh"}).output
    z = g.add_node("matmul", [y, g.add_param("m", randn(24, 5))]).output
    g.outputs = [g.add_node("softmax", [z], {"axis": -1}).output]
    return g


def recurrent_layer(name: str, cell: str, steps: int, batch: int, size: int, hidden: int, reverse: bool,
                    rng: np.random.Generator) -> Graph:
    """One ``cell`` ("lstm" or "gru") layer over x (steps, batch, size) from h0 (and c0), with
    PyTorch's parameter layout and initialisation range drawn from ``rng``; every output returned."""
    gates = 4 if cell == "lstm" else 3
    g = Graph(name)
    ins = [g.add_input("x", TensorType((steps, batch, size))), g.add_input("h0", TensorType((batch, hidden)))]
    if cell == "lstm":
        ins.append(g.add_input("c0", TensorType((batch, hidden))))
    scale = 1.0 / np.sqrt(hidden)
    for param, shape in (("w_ih", (gates * hidden, size)), ("w_hh", (gates * hidden, hidden)),
                         ("b_ih", (gates * hidden,)), ("b_hh", (gates * hidden,))):
        ins.append(g.add_param(param, rng.uniform(-scale, scale, shape).astype(np.float32)))
    g.outputs.extend(g.add_node(cell, ins, {"reverse": reverse}).outputs)
    return g
