"""Device conformance: every op and fusion pattern on every installed, available device against
the NumPy reference. A third-party device vendor runs this file against its own plugin:
`pytest tests/conformance --sol-device NAME` (default: every available device).

``test_special_values`` runs every op's cases again with NaN, +inf, -inf and -0.0 mixed into the
float inputs (cases.SPECIAL_EXCLUDED lists what is left out, and why) and compares NaN-aware:
NaN exactly where the reference has NaN, infinities with their sign, the rest within tolerance."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from sol.api import compile_graph
from sol.debug import run_reference
from sol.ir import Graph, TensorType, ValueKind
from sol.ops.registry import registry

from cases import CASES, PATTERNS, POSITIVE_UNARY, SPECIAL_EXCLUDED, Input

SPECIALS = np.array([np.nan, np.inf, -np.inf, -0.0])
STATIC_INPUTS = {"conv2d": (1, 2), "conv_transpose2d": (1, 2), "dense": (1, 2), "batch_norm": (1, 2, 3, 4)}


def _data(op: str, idx: int, shape: tuple[int, ...] | Input, rng: np.random.Generator) -> np.ndarray:
    if isinstance(shape, Input):
        return _typed_data(shape, rng)
    a = rng.standard_normal(shape).astype(np.float32)
    if op in POSITIVE_UNARY or (op == "batch_norm" and idx == 2) or (op == "pow" and idx == 0):
        a = np.abs(a) + 0.5
    return a


def _typed_data(spec: Input, rng: np.random.Generator) -> np.ndarray:
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
            line = [min(1, d - 1) for d in out.shape]
            line[ax] = slice(None)
            out[tuple(line)] = -np.inf
    return out


def _graph(op: str, special: bool = False) -> tuple[Graph, list[np.ndarray]]:
    """All of ``op``'s cases side by side in one graph (one compile per op: the special-value
    run builds the same graph, so it finds the program in the compile cache)."""
    g = Graph(f"conformance_{op}")
    # Data of its own per op: the same whichever tests run before (and with or without specials).
    rng = np.random.default_rng(zlib.crc32(op.encode()))
    gen = np.random.default_rng(7)
    feeds = []
    for ci, (shapes, attrs) in enumerate(CASES[op]):
        ins = []
        for i, shape in enumerate(shapes):
            data = _data(op, i, shape, rng)
            if special and ci not in SPECIAL_EXCLUDED.get(op, {}):
                data = with_specials(data, gen)
            if i in STATIC_INPUTS.get(op, ()) or (isinstance(shape, Input) and shape.static):
                ins.append(g.add_param(f"c{ci}.p{i}", data))
            else:
                ins.append(g.add_input(f"c{ci}.x{i}", TensorType(data.shape, str(data.dtype))))
                feeds.append(data)
        # A leading op so that no case is a bare pass-through of a graph input.
        ins = [g.add_node("mul", [v, g.add_const(np.ones((), v.dtype))]).output if v.kind is ValueKind.INPUT else v
               for v in ins]
        g.outputs.extend(g.add_node(op, ins, attrs, source=f"case {ci}").outputs)  # all of a multi-output op
    return g, feeds


def test_every_registered_op_has_cases() -> None:
    assert set(registry.names()) <= set(CASES), f"ops without conformance cases: {set(registry.names()) - set(CASES)}"


@pytest.mark.parametrize("op", sorted(CASES))
def test_op(device: str, op: str) -> None:
    g, feeds = _graph(op)
    want = run_reference(g, feeds)
    program = compile_graph(g, device)
    got = program(*feeds)
    for i, (o, w) in enumerate(zip(got, want)):
        assert o.dtype == w.dtype, f"{op} case {i} on {device}: dtype {o.dtype}, expected {w.dtype}"
        np.testing.assert_allclose(o, w, rtol=1e-4, atol=1e-5, err_msg=f"{op} case {i} on {device}")


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
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-4, atol=1e-5, err_msg=what)


@pytest.mark.parametrize("op", sorted(CASES))
def test_special_values(device: str, op: str) -> None:
    """Every op on every device treats NaN, +inf, -inf and -0.0 as the NumPy reference does
    (the reference being each framework's semantics: tests/pytorch/test_special_values.py)."""
    g, feeds = _graph(op, special=True)
    with np.errstate(all="ignore"):  # NaN parameters meet NumPy in the reference and in folding passes
        want = run_reference(g, feeds)
        got = compile_graph(g, device)(*feeds)
    for i, (o, w) in enumerate(zip(got, want)):
        assert_special_equal(o, w, f"{op} case {i} on {device} with NaN/inf inputs")


def _pattern_graph(name: str) -> tuple[Graph, list[np.ndarray]]:
    """A fusion pattern: ops applied in turn, each to the previous result (or to the values
    its ``args`` name: 0 is the input, k the k-th step's result)."""
    shape, steps = PATTERNS[name]
    g = Graph(f"pattern_{name}")
    x = np.random.default_rng(zlib.crc32(name.encode())).standard_normal(shape).astype(np.float32)
    values = [g.add_node("mul", [g.add_input("x", TensorType(shape)), g.add_const(np.ones((), np.float32))]).output]
    for op, attrs, args in steps:
        ins = [values[a] for a in args] if args else [values[-1]]
        values.append(g.add_node(op, ins, attrs).output)
    g.outputs = [values[-1]]
    return g, [x]


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_pattern(device: str, name: str) -> None:
    """Fusion patterns (several ops in one fused loop nest) against the NumPy reference."""
    g, feeds = _pattern_graph(name)
    want = run_reference(g, feeds)
    got = compile_graph(g, device)(*feeds)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-4, atol=1e-5, err_msg=f"pattern {name} on {device}")
