"""RECURRENT groups on x86: both per-step products (generated loop, oneDNN matmul) against the
NumPy reference, and the generated code's shape (one loop over time, one fused cell pass)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sol.api import compile_graph
from sol.debug import run_reference
from sol.errors import SolError
from sol.ir import Graph
from sol_x86.recurrent import ONEDNN_MIN_BATCH, choose_gemm

from graphs import recurrent_layer

rng = np.random.default_rng(5)


def _layer(cell: str, steps: int, batch: int, size: int, hidden: int, reverse: bool) -> Graph:
    return recurrent_layer(f"x86_{cell}_{batch}_{int(reverse)}", cell, steps, batch, size, hidden, reverse, rng)


@pytest.mark.parametrize("gemm", ["loop", "onednn"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_both_products_match_the_reference(cell: str, gemm: str, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOL_DEBUG_DIR", str(tmp_path))
    for reverse in (False, True):
        g = _layer(cell, 9, 5, 12, 40, reverse)
        xs = [rng.standard_normal(v.shape).astype(np.float32) for v in g.inputs]
        want = run_reference(g, xs)
        got = compile_graph(g, "x86", options={"x86_rnn_gemm": gemm})(*xs)
        for w, o in zip(want, got):
            np.testing.assert_allclose(o, w, rtol=1e-4, atol=1e-5)
    text = (tmp_path / g.name / "network.cpp").read_text()
    body = text[text.index("static void run_G1"):text.index("}  // namespace")]
    assert body.count("for (long s = 0; s < 9; ++s)") == 1  # one sequential loop over time
    assert body.count("cell_G1(t, n, gh, hp") == 1  # ... around one fused cell pass per row
    cell_fn = text[text.index("static void cell_G1"):text.index("#pragma GCC pop_options")]
    assert cell_fn.count("#pragma omp simd\n") == 1 and "sol_rnn_sigmoid(" in cell_fn
    assert ("net.op1.run(hp, gh" in body) == (gemm == "onednn")
    assert (body.count("#pragma omp parallel if(") == 1) == (gemm == "loop")  # one region for all steps


def test_choice_of_the_per_step_product() -> None:
    assert choose_gemm(1, {}, True) == "loop"
    assert choose_gemm(ONEDNN_MIN_BATCH, {}, True) == "onednn"
    assert choose_gemm(ONEDNN_MIN_BATCH, {}, False) == "loop"
    assert choose_gemm(1, {"x86_rnn_gemm": "onednn"}, True) == "onednn"
    with pytest.raises(SolError, match="x86_rnn_gemm must be one of loop, onednn"):
        choose_gemm(1, {"x86_rnn_gemm": "mkl"}, True)
