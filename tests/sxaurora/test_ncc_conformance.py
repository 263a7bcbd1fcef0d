"""The conformance suite's cases (tests/conformance) in the VE's "ncc" variant, run in the host
emulation: ``tests/conformance`` runs the VE in its default variant ("vel" where no ncc is
installed), so the plain-C-with-pragmas form would otherwise meet NaN and inf only in a few
networks. Each op's cases compile once and run twice: with ordinary data and with NaN, +inf,
-inf and -0.0 mixed into the float inputs (cases.SPECIAL_EXCLUDED says what is left out)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from sol.api import compile_graph
from sol.debug import run_reference

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "conformance"))

from test_conformance import _graph, assert_special_equal  # noqa: E402

from cases import CASES  # noqa: E402


def _ve_available() -> str:
    from sol.plugins import roles

    if "ve" not in roles().devices:
        return "the ve device is not installed"
    avail = roles().devices.get("ve").availability()
    return "" if avail.available else f"ve unavailable: {avail.detail}"


@pytest.mark.parametrize("op", sorted(CASES))
def test_ncc_variant(op: str) -> None:
    why = _ve_available()
    if why:
        pytest.skip(why)
    from sol.plugins import roles

    declared = roles().devices.get("ve").capabilities.unsupported_ops
    if op in declared:
        pytest.skip(f"ve declares {op!r} unsupported: {declared[op]}")
    g, feeds = _graph(op)
    program = compile_graph(g, "ve", options={"ve_variant": "ncc"})
    assert program.info["variant"] == "ncc"  # type: ignore[attr-defined]
    for i, (o, w) in enumerate(zip(program(*feeds), run_reference(g, feeds))):
        assert o.dtype == w.dtype
        np.testing.assert_allclose(o, w, rtol=1e-4, atol=1e-5, err_msg=f"{op} case {i} (ncc)")
    g, feeds = _graph(op, special=True)
    with np.errstate(all="ignore"):  # NaN parameters meet NumPy in the reference and in folding passes
        want = run_reference(g, feeds)
        got = compile_graph(g, "ve", options={"ve_variant": "ncc"})(*feeds)
    for i, (o, w) in enumerate(zip(got, want)):
        assert_special_equal(o, w, f"{op} case {i} (ncc) with NaN/inf inputs")
