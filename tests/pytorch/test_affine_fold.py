"""Core's affine folding seen from PyTorch: a per-channel scale after a linear layer is folded
into its weights (the pass is framework-neutral; see sol.passes.affine)."""

from __future__ import annotations

import numpy as np
import torch

import sol


def test_per_channel_scale_after_pytorch_linear_is_folded_through_the_public_api() -> None:
    """Framework-neutral: a ConvNeXt-style layer scale (``gamma * linear(x)``) in a PyTorch model."""
    class LayerScale(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = torch.nn.Linear(8, 6)
            self.gamma = torch.nn.Parameter(torch.randn(6))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.gamma * self.fc(x) + 1.0)

    torch.manual_seed(0)
    model = LayerScale().eval()
    x = torch.randn(4, 8)
    plan = sol.explain(model, x, device="x86").plan
    assert [n.op for grp in plan.groups for n in grp.nodes] == ["dense", "add", "relu"]
    opt = sol.optimize(model, x, device="x86", fallback=False)
    np.testing.assert_allclose(opt(x).detach().numpy(), model(x).detach().numpy(), rtol=1e-4, atol=1e-5)
