"""The graphs the conformance kit compiles, with their input data, and how results are compared.

Everything here is deterministic: an op's data depends only on the op's name (not on which
tests ran before), so a failure reproduces with ``-k`` alone, and the special-value run of an op
builds the same graph as the plain run (one compile per op: the second finds it in the cache).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sol.ir import Graph, TensorType, Value, ValueKind
from sol.testing.cases import CASES, PATTERNS, SPECIAL_EXCLUDED, Input, in_domain

SPECIALS = np.array([np.nan, np.inf, -np.inf, -0.0])
# Inputs that are weights or statistics in a model: parameters, placed on the device once.
STATIC_INPUTS = {"conv2d": (1, 2), "conv_transpose2d": (1, 2), "dense": (1, 2), "batch_norm": (1, 2, 3, 4)}
RTOL, ATOL = 1e-4, 1e-5  # float32 against a reference computed in float64 where it matters


def seeded(name: str) -> np.random.Generator:
    """A generator of its own per name: the same data whichever tests run before."""
    return np.random.default_rng(zlib.crc32(name.encode()))


def case_data(op: str, idx: int, spec: tuple[int, ...] | Input, rng: np.random.Generator) -> np.ndarray:
    """Input ``idx`` of one of ``op``'s cases: standard-normal float32 for a shape (positive
    where the op needs it), else what the :class:`Input` asks for."""
    if isinstance(spec, Input):
        return typed_data(spec, rng)
    a: np.ndarray = in_domain(op, idx, rng.standard_normal(spec)).astype(np.float32)
    return a


def typed_data(spec: Input, rng: np.random.Generator) -> np.ndarray:
    """Integer/bool data, or integer-valued floats (ties), in the ranges the case asks for."""
    if spec.dtype == "bool":
        return rng.random(spec.shape) < 0.5
    if spec.low is None or spec.high is None:
        return rng.standard_normal(spec.shape).astype(spec.dtype)
    return rng.integers(spec.low, spec.high, spec.shape).astype(spec.dtype)


def with_specials(a: np.ndarray, gen: np.random.Generator) -> np.ndarray:
    """``a`` with about one element in eight NaN, +inf, -inf or -0.0, and one line along each
    axis all -inf (a fully masked softmax row, a pooling window with no number)."""
    if a.dtype.kind != "f" or a.size == 0:
        return a
    out = a.copy()
    flat = out.reshape(-1)
    k = max(1, flat.size // 8)
    flat[gen.choice(flat.size, k, replace=False)] = gen.choice(SPECIALS, k).astype(a.dtype)
    for ax in range(out.ndim):
        if out.shape[ax] > 1:
            line: list[int | slice] = [min(1, d - 1) for d in out.shape]
            line[ax] = slice(None)
            out[tuple(line)] = -np.inf
    return out


def _lead(g: Graph, v: Value) -> Value:
    """``v * 1`` for a graph input: no case is a bare pass-through of an input to an output."""
    if v.kind is not ValueKind.INPUT:
        return v
    return g.add_node("mul", [v, g.add_const(np.ones((), v.dtype))]).output


def op_graph(op: str, special: bool = False) -> tuple[Graph, list[np.ndarray]]:
    """All of ``op``'s cases side by side in one graph (one compile per op), and its inputs.
    ``special``: NaN, +inf, -inf and -0.0 mixed into the float inputs and parameters (except
    the cases :data:`~sol.testing.cases.SPECIAL_EXCLUDED` leaves out)."""
    g = Graph(f"conformance_{op}")
    rng = seeded(op)
    gen = np.random.default_rng(7)
    feeds = []
    for ci, (shapes, attrs) in enumerate(CASES[op]):
        ins = []
        for i, shape in enumerate(shapes):
            data = case_data(op, i, shape, rng)
            if special and ci not in SPECIAL_EXCLUDED.get(op, {}):
                data = with_specials(data, gen)
            if i in STATIC_INPUTS.get(op, ()) or (isinstance(shape, Input) and shape.static):
                ins.append(g.add_param(f"c{ci}.p{i}", data))
            else:
                ins.append(g.add_input(f"c{ci}.x{i}", TensorType(data.shape, str(data.dtype))))
                feeds.append(data)
        ins = [_lead(g, v) for v in ins]
        g.outputs.extend(g.add_node(op, ins, attrs, source=f"case {ci}").outputs)  # all of a multi-output op
    return g, feeds


def pattern_graph(name: str) -> tuple[Graph, list[np.ndarray]]:
    """A fusion pattern of :data:`~sol.testing.cases.PATTERNS`: its ops applied in turn."""
    shape, steps = PATTERNS[name]
    g = Graph(f"pattern_{name}")
    rng = seeded(name)
    x = rng.standard_normal(shape).astype(np.float32)
    values = [_lead(g, g.add_input("x", TensorType(shape)))]
    for si, (op, attrs, args) in enumerate(steps):
        ins = []
        for ai, arg in enumerate(args or (-1,)):
            if isinstance(arg, Input):
                ins.append(g.add_param(f"s{si}.p{ai}", typed_data(arg, rng)))
            else:
                ins.append(values[arg])
        values.append(g.add_node(op, ins, attrs, source=f"step {si}").output)
    g.outputs = [values[-1]]
    return g, [x]


@dataclass
class Network:
    """A small convolutional classifier: the kit's training and threading graph."""

    graph: Graph
    inputs: list[np.ndarray]
    trained: list[str]  # the parameters gradients are taken of (besides the input)


def network(batch: int = 2, seed: int = 0) -> Network:
    """conv(3->8)+bias, ReLU, max-pool, batch-norm (inference statistics), average pool, a dense
    layer, GELU, log-softmax: a library anchor with an epilogue, fused I/O-bound groups, a
    reshape and a parameter-bound layer. The weights are the same for every ``seed`` (they are
    the network); ``seed`` picks the input."""
    rng = seeded("network")
    g = Graph("conformance_network")
    x = g.add_input("x", TensorType((batch, 3, 10, 10)))
    w1 = g.add_param("conv.weight", (rng.standard_normal((8, 3, 3, 3)) * 0.3).astype(np.float32))
    b1 = g.add_param("conv.bias", (rng.standard_normal(8) * 0.1).astype(np.float32))
    stats = [rng.standard_normal(8).astype(np.float32), rng.uniform(0.5, 2.0, 8).astype(np.float32),
             rng.uniform(0.5, 1.5, 8).astype(np.float32), rng.standard_normal(8).astype(np.float32)]
    bn = [g.add_param(f"bn.{n}", a) for n, a in zip(("mean", "var", "weight", "bias"), stats)]
    w2 = g.add_param("fc.weight", (rng.standard_normal((5, 8 * 2 * 2)) * 0.2).astype(np.float32))
    b2 = g.add_param("fc.bias", (rng.standard_normal(5) * 0.1).astype(np.float32))
    h = g.add_node("conv2d", [x, w1, b1], {"padding": 1}).output
    h = g.add_node("relu", [h]).output
    h = g.add_node("max_pool2d", [h], {"kernel": 2, "stride": 2}).output
    h = g.add_node("batch_norm", [h, *bn]).output
    h = g.add_node("avg_pool2d", [h], {"kernel": 2}).output
    h = g.add_node("reshape", [h], {"shape": (batch, -1)}).output
    h = g.add_node("dense", [h, w2, b2]).output
    h = g.add_node("gelu", [h]).output
    g.outputs = [g.add_node("log_softmax", [h], {"axis": 1}).output]
    data = np.random.default_rng(seed).standard_normal((batch, 3, 10, 10)).astype(np.float32)
    return Network(g, [data], ["conv.weight", "conv.bias", "bn.weight", "fc.weight", "fc.bias"])


def graph_ops(graph: Graph) -> set[str]:
    return {n.op for n in graph.nodes}


def assert_close(got: Sequence[np.ndarray], want: Sequence[np.ndarray], what: str, rtol: float = RTOL,
                 atol: float = ATOL) -> None:
    """Same count, dtypes and shapes; values within the kit's tolerance."""
    assert len(got) == len(want), f"{what}: {len(got)} output(s), expected {len(want)}"
    for i, (o, w) in enumerate(zip(got, want)):
        o = np.asarray(o)
        assert o.dtype == w.dtype, f"{what}, output {i}: dtype {o.dtype}, expected {w.dtype}"
        assert o.shape == w.shape, f"{what}, output {i}: shape {o.shape}, expected {w.shape}"
        np.testing.assert_allclose(o, w, rtol=rtol, atol=atol, err_msg=f"{what}, output {i}")


def assert_special_equal(got: np.ndarray, want: np.ndarray, what: str) -> None:
    """NaN exactly where ``want`` has NaN, each infinity with its sign, the rest within tolerance."""
    assert got.shape == want.shape and got.dtype == want.dtype, f"{what}: {got.dtype}{got.shape}, " \
                                                                f"expected {want.dtype}{want.shape}"
    if want.dtype.kind != "f":
        np.testing.assert_array_equal(got, want, err_msg=what)
        return
    nan_g, nan_w = np.isnan(got), np.isnan(want)
    where = np.argwhere(nan_g != nan_w)
    assert where.size == 0, f"{what}: NaN differs at {len(where)} element(s), first {tuple(where[0])}: " \
                            f"got {got[tuple(where[0])]}, expected {want[tuple(where[0])]}"
    inf = np.isinf(got) | np.isinf(want)
    where = np.argwhere(inf & (got != want))
    assert where.size == 0, f"{what}: infinity differs at {len(where)} element(s), first {tuple(where[0])}: " \
                            f"got {got[tuple(where[0])]}, expected {want[tuple(where[0])]}"
    finite = ~(nan_w | inf)
    np.testing.assert_allclose(got[finite], want[finite], rtol=RTOL, atol=ATOL, err_msg=what)
