"""Whole IR networks on device "ve" (emulated here), against the NumPy reference.

The same tolerances as the x86 suite: rtol 1e-4 against the reference for IR networks, 1e-3
against PyTorch for imported models. The "vel" variant is what clang's VE backend compiles and
what the emulation runs by default; the "ncc" variant (plain C with NEC pragmas) runs through the
same emulated offload, compiled for the host, so its numerics are checked too.
"""

from __future__ import annotations

import numpy as np
import pytest

from sol.api import compile_graph
from sol.debug import run_reference
from sol.ir import Graph

from graphs import randn
from ve_networks import IR_NETWORKS

pytestmark = pytest.mark.filterwarnings("ignore:sol device 've' runs emulated")


def check(g: Graph, rtol: float = 1e-4, **options: object) -> object:
    xs = [randn(*v.shape) for v in g.inputs]
    want = run_reference(g, xs)
    program = compile_graph(g, "ve", options=dict(options))
    for w, o in zip(want, program(*xs)):
        np.testing.assert_allclose(o, w, rtol=rtol, atol=rtol * float(np.abs(w).max()))
    return program


@pytest.mark.parametrize("name", sorted(IR_NETWORKS))
def test_ir_network_matches_reference(name: str) -> None:
    program = check(IR_NETWORKS[name]())
    assert program.info["emulated"] and program.info["variant"] == "vel"  # type: ignore[attr-defined]


@pytest.mark.parametrize("name", ["seed", "conv_bn_relu_pool", "branchy", "conv_block_residual", "dense_mm_3d"])
def test_ncc_variant_matches_reference(name: str) -> None:
    program = check(IR_NETWORKS[name](), ve_variant="ncc")
    assert program.info["variant"] == "ncc"  # type: ignore[attr-defined]


# The PyTorch models of the network suite (tests/integration/test_pytorch_networks.py) run on
# every installed device, ve included: they are not repeated here.
