"""RECURRENT groups on the VE (emulated here): both code variants against the NumPy reference,
and what each variant generates for the per-step product and the cell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sol.api import compile_graph
from sol.debug import run_reference
from sol.ir import Graph

from graphs import recurrent_layer

pytestmark = pytest.mark.filterwarnings("ignore:sol device 've' runs emulated")
rng = np.random.default_rng(7)


def _layer(cell: str, reverse: bool) -> Graph:
    # 6 steps, batch 3, 10 features, hidden 100: 400 / 300 gate columns, two 256-lane strips
    return recurrent_layer(f"ve_{cell}_{int(reverse)}", cell, 6, 3, 10, 100, reverse, rng)


@pytest.mark.parametrize("variant", ["vel", "ncc"])
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_variants_match_the_reference(cell: str, variant: str, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOL_DEBUG_DIR", str(tmp_path))
    for reverse in (False, True):
        g = _layer(cell, reverse)
        xs = [rng.standard_normal(v.shape).astype(np.float32) for v in g.inputs]
        want = run_reference(g, xs)
        got = compile_graph(g, "ve", options={"ve_variant": variant})(*xs)
        for w, o in zip(want, got):
            np.testing.assert_allclose(o, w, rtol=1e-4, atol=1e-5)
    text = (tmp_path / g.name / "network.c").read_text()
    loop = text[text.index("static SOL_NOINLINE void run_G1"):]
    loop = loop[:loop.index("\n}\n")]
    assert "sequential loop (execution-order constrained) over 6 steps" in text
    assert loop.count("for (long s = 0; s < 6; ++s)") == 1
    assert f"step 2: fused {cell} cell" in loop
    if variant == "vel":
        assert "_vel_vfmads_vvsvl(acc, hn[k], _vel_vldu_vssl(4L, net->prep[" in loop
    else:
        assert "_vel_" not in text and "#pragma _NEC vreg(acc)" in loop
