"""Deployed networks against PyTorch: a transformer encoder (weights embedded in the library) and
a block whose fast plan is exact only for finite values (the library must give PyTorch's NaN and
infinities, as sol.optimize does). Each is deployed once and run through its example program."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import sol

from deploy_helpers import compare, needs_gcc, run_example

pytestmark = needs_gcc


def test_transformer_encoder_with_embedded_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    layer = nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, batch_first=True)
    model = nn.TransformerEncoder(layer, 2, enable_nested_tensor=False).eval()
    x = torch.randn(2, 6, 32)
    dep = sol.deploy(model, x, path=tmp_path / "enc", name="enc", embed_weights=True)
    assert not (dep.path / "enc.weights").exists() and "enc.weights" not in dep.files
    x2 = torch.randn(2, 6, 32)
    [got] = run_example(dep.path, "--embedded", [x2.numpy()], [np.dtype(np.float32)], tmp_path / "io")
    with torch.no_grad():
        compare(got, model(x2).numpy())


class MobileBlock(nn.Module):
    """1x1 conv -> BN -> ReLU6 -> depthwise 3x3 -> ReLU6 -> 1x1: oneDNN runs the ReLU6 as a clip
    post-op, which turns NaN into 0 (exact only for finite operands)."""

    def __init__(self) -> None:
        super().__init__()
        self.expand = nn.Conv2d(4, 16, 1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.dw = nn.Conv2d(16, 16, 3, padding=1, groups=16)
        self.project = nn.Conv2d(16, 8, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.project(F.relu6(self.dw(F.relu6(self.bn(self.expand(x))))))


def test_nan_and_infinity_inputs_give_the_frameworks_answer(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = MobileBlock().eval()
    x = torch.randn(2, 4, 8, 8)
    dep = sol.deploy(model, x, path=tmp_path / "block", name="block")
    networks = sorted(p.name for p in (dep.path / "src").glob("v*_network.cpp"))
    assert networks == ["v0_network.cpp", "v1_network.cpp"]  # the fused network and its exact twin
    specials = x.clone()
    specials[0, 1, 2, 3] = math.nan
    specials[1, 0, 5, 5] = math.inf
    specials[1, 3, 0, 0] = -math.inf
    with torch.no_grad():
        want = model(specials).numpy()
    assert np.isnan(want).any()
    [got] = run_example(dep.path, "block.weights", [specials.numpy()], [np.dtype(np.float32)], tmp_path / "io")
    compare(got, want)
    [got] = run_example(dep.path, "block.weights", [x.numpy()], [np.dtype(np.float32)], tmp_path / "io")
    with torch.no_grad():
        compare(got, model(x).numpy())


def test_nan_weights_deploy_the_exact_network_only(tmp_path: Path) -> None:
    """A NaN in a weight the fast plan's premise depends on: only the exact network is built
    (checked at deploy time, when the weights are fixed), and it gives PyTorch's NaN."""
    torch.manual_seed(0)
    model = MobileBlock().eval()
    with torch.no_grad():
        model.dw.weight[3, 0, 1, 1] = math.nan
    x = torch.randn(2, 4, 8, 8)
    dep = sol.deploy(model, x, path=tmp_path / "nanw", name="nanw")
    assert sorted(p.name for p in (dep.path / "src").glob("v*_network.cpp")) == ["v0_network.cpp"]
    assert "v0: batch 2 exact" in (dep.path / "README.md").read_text()
    [got] = run_example(dep.path, "nanw.weights", [x.numpy()], [np.dtype(np.float32)], tmp_path / "io")
    with torch.no_grad():
        want = model(x).numpy()
    assert np.isnan(want).any()
    compare(got, want)


class ResidualBlock(nn.Module):
    """conv3x3 -> BN -> relu -> conv3x3 + x -> relu on 16 channels: both convolutions run as
    Winograd's F(2x2, 3x3) in the fast network, which is exact only for finite inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Conv2d(16, 16, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(16)
        self.b = nn.Conv2d(16, 16, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.b(F.relu(self.bn(self.a(x)))) + x)


def test_winograd_convolutions_deploy_with_their_exact_twin(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ResidualBlock().eval()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-0.5, 0.5)
        model.bn.running_var.uniform_(0.5, 2.0)
    x = torch.randn(2, 16, 13, 11)
    assert all("winograd" in line for line in sol.optimize(model, x).program.info["libraries"].splitlines())
    dep = sol.deploy(model, x, path=tmp_path / "wino", name="wino")
    sources = sorted((dep.path / "src").glob("v*_network.cpp"))
    assert [p.name for p in sources] == ["v0_network.cpp", "v1_network.cpp"]  # Winograd's and the exact twin
    # Conv::init(..., src_nhwc, dst_nhwc, winograd = true) in the fast network only
    asks = [len(re.findall(r"net->scratch, (?:true|false), (?:true|false), true\);", p.read_text())) for p in sources]
    assert asks == [2, 0], asks
    [got] = run_example(dep.path, "wino.weights", [x.numpy()], [np.dtype(np.float32)], tmp_path / "io")
    with torch.no_grad():
        compare(got, model(x).numpy())
    specials = x.clone()
    specials[0, 1, 2, 3] = math.inf  # Winograd would make NaN of it where PyTorch keeps inf
    specials[1, 5, 0, 0] = -math.inf
    with torch.no_grad():
        want = model(specials).numpy()
    assert np.isinf(want).any()
    [got] = run_example(dep.path, "wino.weights", [specials.numpy()], [np.dtype(np.float32)], tmp_path / "io")
    compare(got, want)


class Scaled(nn.Module):
    """A 0-d buffer and a 0-d parameter: weights of shape () (the weights file stored them wrong
    once: a 0-d array has no uint8 view of its own)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 3)
        self.register_buffer("scale", torch.tensor(2.5))
        self.shift = nn.Parameter(torch.tensor(-0.75))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # after the tanh: nothing folds them into the dense layer's weights
        return torch.maximum(torch.tanh(self.fc(x)) * self.scale, self.shift)


def test_zero_dim_weights(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = Scaled().eval()
    x = torch.randn(4, 6)
    dep = sol.deploy(model, x, path=tmp_path / "scaled", name="scaled")
    [got] = run_example(dep.path, "scaled.weights", [x.numpy()], [np.dtype(np.float32)], tmp_path / "io")
    with torch.no_grad():
        compare(got, model(x).numpy())
