"""Device conformance: every op and fusion pattern on every installed, available device against
the NumPy reference. A third-party device vendor runs this file against its own plugin:
`pytest tests/conformance --sol-device NAME` (default: every available device)."""

from __future__ import annotations

import numpy as np
import pytest

from sol.api import compile_graph
from sol.debug import run_reference
from sol.ir import Graph, TensorType, ValueKind
from sol.ops.registry import registry

from cases import CASES, POSITIVE_UNARY, Input

rng = np.random.default_rng(1)
STATIC_INPUTS = {"conv2d": (1, 2), "conv_transpose2d": (1, 2), "dense": (1, 2), "batch_norm": (1, 2, 3, 4)}


def _data(op: str, idx: int, shape: tuple[int, ...] | Input) -> np.ndarray:
    if isinstance(shape, Input):
        return _typed_data(shape)
    a = rng.standard_normal(shape).astype(np.float32)
    if op in POSITIVE_UNARY or (op == "batch_norm" and idx == 2) or (op == "pow" and idx == 0):
        a = np.abs(a) + 0.5
    return a


def _typed_data(spec: Input) -> np.ndarray:
    """Integer/bool data, or integer-valued floats (ties), in the ranges the case asks for."""
    if spec.dtype == "bool":
        return rng.random(spec.shape) < 0.5
    if spec.low is None or spec.high is None:
        return rng.standard_normal(spec.shape).astype(spec.dtype)
    return rng.integers(spec.low, spec.high, spec.shape).astype(spec.dtype)


def _graph(op: str) -> tuple[Graph, list[np.ndarray]]:
    """All of ``op``'s cases side by side in one graph (one compile per op)."""
    g = Graph(f"conformance_{op}")
    feeds = []
    for ci, (shapes, attrs) in enumerate(CASES[op]):
        ins = []
        for i, shape in enumerate(shapes):
            data = _data(op, i, shape)
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
