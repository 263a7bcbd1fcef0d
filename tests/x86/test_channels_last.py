"""x86 with channels-last regions (sol.planner.layout): oneDNN's convolutions read and write
(N, H, W, C) where the concat, bias and activations between them are computed channels-last too,
so no conversion runs around them. Through the public API, against PyTorch eager: SqueezeNet-like
Fire modules (a concat between convolutions, another read by a pooling), a residual add, odd
sizes, batch 1 and 3, NaN and infinity in the input; ``SOL_X86_LAYOUT=nchw`` turns it off."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import sol
from sol_x86.device import has_avx512

# Where oneDNN's convolutions compute channels-last (the layouts asserted below are its choices).
pytestmark = pytest.mark.skipif(not has_avx512(), reason="no AVX-512 on this CPU: the x86 device computes NCHW")


@pytest.fixture(autouse=True)
def _default_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOL_X86_LAYOUT", raising=False)  # the device's own choice, whatever the caller set

NET = textwrap.dedent("""
    import torch
    from torch import nn

    class Fire(nn.Module):
        def __init__(self, c, squeeze, expand):
            super().__init__()
            self.squeeze = nn.Conv2d(c, squeeze, 1)
            self.e1 = nn.Conv2d(squeeze, expand, 1)
            self.e3 = nn.Conv2d(squeeze, expand, 3, padding=1)

        def forward(self, x):
            s = torch.relu(self.squeeze(x))
            return torch.cat([torch.relu(self.e1(s)), torch.relu(self.e3(s))], 1)

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 24, 3, stride=2)
            self.fire1, self.fire2 = Fire(24, 8, 16), Fire(32, 8, 16)
            self.fire3 = Fire(32, 12, 20)
            self.res = nn.Conv2d(40, 40, 3, padding=1)
            self.head = nn.Conv2d(40, 10, 1)

        def forward(self, x):
            x = nn.functional.max_pool2d(torch.relu(self.stem(x)), 3, 2, ceil_mode=True)
            x = self.fire2(self.fire1(x))
            x = nn.functional.max_pool2d(x, 2)          # a concat read by a pooling
            x = self.fire3(x)
            x = x + torch.relu(self.res(x)) * 0.5         # a residual add between convolutions
            return self.head(x).mean((2, 3)), x
""")


def _net() -> nn.Module:
    scope: dict = {}
    exec(NET, scope)  # noqa: S102 (the test's own network, shared with the subprocess below)
    torch.manual_seed(0)
    return scope["Net"]().eval()


@pytest.mark.parametrize("batch", [1, 3])
def test_fire_modules_match_eager_channels_last(batch: int) -> None:
    model = _net()
    x = torch.randn(batch, 3, 37, 29)
    fast = sol.optimize(model, x, device="x86")
    plan = sol.explain(model, x, device="x86")
    assert "conv2d_nhwc" in str(plan)
    with torch.no_grad():
        want, got = model(x), fast(x)
        for w, g in zip(want, got):
            assert g.shape == w.shape and g.is_contiguous()
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)
        x[0, 1, 3, 4], x[-1, 0, 10, 7] = float("nan"), float("inf")
        for w, g in zip(model(x), fast(x)):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5, equal_nan=True)


def test_sol_x86_layout_nchw_turns_it_off(tmp_path) -> None:
    script = NET + textwrap.dedent("""
        import sol
        model, x = Net().eval(), torch.randn(1, 3, 37, 29)
        print("conv2d_nhwc" in str(sol.explain(model, x, device="x86")))
    """)
    env = {**os.environ, "SOL_X86_LAYOUT": "nchw", "SOL_CACHE_DIR": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "False"


def test_seed_network_runs_channels_last_without_a_conversion() -> None:
    # The seed's conv1x1 -> bias -> ReLU -> AvgPool13: oneDNN computes the convolution channels-last
    # with bias and ReLU as post-ops, the pooling reads that result as it is (a vector loop over
    # channels), and the (N, C, 1, 1) result leaves through a reshape. Measured faster than the NCHW
    # plan's conversion plus per-(batch, channel) loop nest (benchmarks/layout_speed.py's method).
    from sol_benchmarks.zoo import SeedNet

    torch.manual_seed(0)
    model, x = SeedNet().eval(), torch.randn(2, 512, 13, 13)
    plan = str(sol.explain(model, x, device="x86"))
    assert "conv2d_nhwc" in plan and "avg_pool2d_nhwc" in plan and "transpose" not in plan
    fast = sol.optimize(model, x, device="x86")
    lines = fast.program.info["libraries"].splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and "(input reordered, output plain)" in lines[0], lines
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-5)


def test_convnext_permutes_disappear_into_the_region() -> None:
    # ConvNeXt permutes to channels-last around each block's LayerNorm and MLP and back: those
    # permutes are the region's own edges, so the depthwise convolutions read and write the
    # residual stream channels-last and no tensor is transposed (the head's permutes act on
    # (N, C, 1, 1), where both layouts are the same memory: one reshape-like copy stays).
    from sol_benchmarks.zoo import convnext_tiny_stage

    torch.manual_seed(0)
    model, x = convnext_tiny_stage(stages=2).eval(), torch.randn(2, 3, 40, 40)
    plan = sol.explain(model, x, device="x86")
    transposes = [line for line in str(plan).splitlines() if "transpose" in line]
    assert len(transposes) <= 1, transposes
    fast = sol.optimize(model, x, device="x86")
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-4)


def test_channels_last_biases_stay_onednn_bias_arguments(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    # In the region a convolution's (C, 1, 1) bias is read as (1, 1, 1, C) through a reshape of
    # the parameter: still the primitive's own bias argument, not a binary-add post-op (measured
    # 3-40% slower per 1x1 convolution, oneDNN 3.2).
    monkeypatch.setenv("SOL_DEBUG_DIR", str(tmp_path))
    model, x = _net(), torch.randn(1, 3, 37, 29)
    fast = sol.optimize(model, x, device="x86")
    source = "\n".join(p.read_text() for p in tmp_path.rglob("*.cpp"))
    assert "conv2d_nhwc" in source and "dnnl_binary_add" not in source
    with torch.no_grad():
        for w, g in zip(model(x), fast(x)):
            torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)
