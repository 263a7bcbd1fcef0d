"""Whole networks on device "ve" (emulated here), against the NumPy reference and PyTorch.

The same tolerances as the x86 suite: rtol 1e-4 against the reference for IR networks, 1e-3
against PyTorch for imported models. The "vel" variant is what clang's VE backend compiles and
what the emulation runs by default; the "ncc" variant (plain C with NEC pragmas) runs through the
same emulated offload, compiled for the host, so its numerics are checked too.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from sol.api import compile_graph
from sol.debug import run_reference
from sol.ir import Graph

from graphs import randn
from ve_networks import HAVE_TORCH, IR_NETWORKS, torch_models

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


@pytest.mark.skipif(not HAVE_TORCH, reason="the PyTorch frontend (sol-frontend-pytorch, torch) is not installed")
@pytest.mark.parametrize("name", ["SeedNet", "mlp", "small_resnet_b1", "small_resnet_b3"])
def test_pytorch_model_matches_pytorch(name: str) -> None:
    import torch

    import sol

    torch.manual_seed(0)
    factory, shape = torch_models()[name]
    model = factory()
    x = torch.rand(*shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = sol.optimize(model, x, device="ve")
    with torch.no_grad():
        want, got = model(x), fast(x)
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3 * float(want.abs().max()))


@pytest.mark.skipif(not HAVE_TORCH, reason="the PyTorch frontend (sol-frontend-pytorch, torch) is not installed")
def test_pytorch_multiple_inputs_and_tuple_outputs() -> None:
    import torch
    from torch import nn

    import sol

    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 4)

        def forward(self, a: torch.Tensor, b: torch.Tensor):  # type: ignore[no-untyped-def]
            h = torch.relu(self.fc(a)) * torch.sigmoid(b)
            return h, torch.softmax(h, dim=1)

    model = Two().eval()
    a, b = torch.rand(3, 8), torch.rand(3, 4)
    fast = sol.optimize(model, a, b, device="ve")
    with torch.no_grad():
        want, got = model(a, b), fast(a, b)
    assert isinstance(got, tuple) and len(got) == 2
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-3, atol=1e-5)
