"""sol.optimize_many: many small networks compiled together (on x86 one translation unit for a
batch), each giving what sol.optimize gives; a refused network comes back as its error where
asked; a device without batch compiles compiles them one by one."""

from __future__ import annotations

import numpy as np
import pytest

import sol
from sol.debug import run_reference
from sol.errors import SolError
from sol.ir import Graph, TensorType


def _net(k: int, rng: np.random.Generator, dtype: str = "float32") -> Graph:
    """x (3, 5+k) -> a product with a weight -> sin or tanh. In float64 the product is a matmul,
    which x86 refuses (oneDNN takes no float64; no template generates it)."""
    g = Graph(f"net{k}")
    x = g.add_input("x", TensorType((3, 5 + k), dtype))
    if dtype == "float64":
        h = g.add_node("matmul", [x, g.add_param("w", rng.standard_normal((5 + k, 4)))]).output
    else:
        h = g.add_node("dense", [x, g.add_param("w", rng.standard_normal((4, 5 + k)).astype(dtype))]).output
    g.outputs = [g.add_node("tanh" if k % 2 else "sin", [h]).output]
    return g


@pytest.mark.parametrize("device", ["x86", "interp"])
def test_many_networks_compile_together_and_each_computes_its_own(device: str) -> None:
    from sol.testing import reference_device

    rng = np.random.default_rng(0)
    graphs = [_net(k, rng) for k in range(5)]
    with reference_device():
        fast = sol.optimize_many(graphs, device=device, batch=3)  # two batches: 3 + 2
        for g, f in zip(graphs, fast):
            x = rng.standard_normal(g.inputs[0].shape).astype("float32")
            np.testing.assert_allclose(f(x)[0], run_reference(g, [x])[0], rtol=1e-5, atol=1e-6)
    if device == "x86":
        assert [f.program.info["batch_index"] for f in fast] == [0, 1, 2, 0, 1]
        assert len({f.program.info["artifact"] for f in fast}) == 2  # one library per batch


def test_a_refused_network_comes_back_as_its_error_and_the_others_compile() -> None:
    rng = np.random.default_rng(1)
    graphs = [_net(0, rng), _net(1, rng, "float64"), _net(2, rng)]  # x86 has no float64 matmul
    with pytest.raises(SolError, match="matmul"):
        sol.optimize_many(graphs, device="x86")
    graphs = [_net(0, rng), _net(1, rng, "float64"), _net(2, rng)]
    fast = sol.optimize_many(graphs, device="x86", return_exceptions=True)
    assert isinstance(fast[1], SolError) and "matmul" in str(fast[1])
    x = rng.standard_normal((3, 7)).astype("float32")
    np.testing.assert_allclose(fast[2](x)[0], run_reference(graphs[2], [x])[0], rtol=1e-5, atol=1e-6)
