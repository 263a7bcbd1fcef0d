"""Whole networks through the public API, against PyTorch eager (fp32, rtol 1e-3), on every
installed device (``device`` is parametrized by conftest.py)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import torch
from torch import nn

import sol

from foreign_ops import cumulative_product
from zoo import SeedNet, mlp, randomize_batchnorm, small_resnet

torch.manual_seed(0)


pytestmark = pytest.mark.filterwarnings("ignore:sol device .* runs emulated")


def _close(model: nn.Module, x: torch.Tensor, device: str, **kw) -> nn.Module:  # type: ignore[no-untyped-def]
    fast = sol.optimize(model, x, device=device, **kw)
    with torch.no_grad():
        want = model(x)
        got = fast(x)
    torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-3 * float(want.abs().max()))
    return fast


def test_seed_network_with_shape_only_example_as_in_the_slides() -> None:
    from sol.pytorch import optimize

    model = SeedNet().eval()
    x = torch.rand(2, 512, 13, 13)
    fast = optimize(model, x.size())
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-3, atol=1e-4)
    assert isinstance(fast, nn.Module)


def test_seed_network_generated_code_fuses_bias_relu_pool(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("SOL_DEBUG_DIR", str(tmp_path))
    monkeypatch.setenv("SOL_X86_LAYOUT", "nchw")  # the seed's NCHW plan (channels-last: tests/x86)
    model = SeedNet().eval()
    sol.optimize(model, torch.rand(1, 512, 13, 13), device="x86")
    (src,) = list(tmp_path.rglob("*.cpp"))
    text = src.read_text()
    assert "relu" in text.lower() and "avg_pool2d" in text
    report = str(sol.explain(model, torch.rand(1, 512, 13, 13), device="x86"))
    assert "depth-first over 1x1000" in report


def test_seed_network(device: str) -> None:
    _close(SeedNet().eval(), torch.rand(2, 512, 13, 13), device)


def test_mlp(device: str) -> None:
    _close(mlp().eval(), torch.rand(16, 64), device)


@pytest.mark.parametrize("batch", [1, 3])
def test_small_resnet_with_batchnorm(batch: int, device: str) -> None:
    model = randomize_batchnorm(small_resnet().eval())
    _close(model, torch.rand(batch, 3, 32, 32), device)


def test_multiple_inputs_and_tuple_outputs(device: str) -> None:
    class Two(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(8, 4)

        def forward(self, a: torch.Tensor, b: torch.Tensor):  # type: ignore[no-untyped-def]
            h = torch.relu(self.fc(a)) * torch.sigmoid(b)
            return h, torch.softmax(h, dim=1)

    model = Two().eval()
    a, b = torch.rand(3, 8), torch.rand(3, 4)
    fast = sol.optimize(model, a, b, device=device)
    with torch.no_grad():
        want, got = model(a, b), fast(a, b)
    assert isinstance(got, tuple) and len(got) == 2
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-3, atol=1e-5)


def test_wrong_shape_rank_dtype_raise_naming_expected_and_given() -> None:
    # A new batch re-specializes by default (tests/pytorch/test_dynamic.py); dynamic=False keeps
    # the compiled shape strict, and a wrong rank or dtype is an error either way.
    fast = sol.optimize(mlp().eval(), torch.rand(4, 64), device="x86", dynamic=False)
    with pytest.raises(ValueError, match=r"expected shape \(4, 64\), got \(5, 64\)"):
        fast(torch.rand(5, 64))
    with pytest.raises(ValueError, match="expected rank 2"):
        fast(torch.rand(4, 64, 1))
    with pytest.raises(TypeError, match="expected dtype float32, got float64"):
        fast(torch.rand(4, 64, dtype=torch.float64))


def test_unsupported_op_names_op_and_source_line() -> None:
    class Odd(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return cumulative_product(x, 1)  # no sol op for this

    from sol.errors import UnsupportedOpError

    with pytest.raises(UnsupportedOpError, match=r"cumulative_product.*test_pytorch_networks.py"):
        sol.optimize(Odd().eval(), torch.rand(2, 3), device="x86", fallback=False)


def test_second_process_hits_the_cache_in_well_under_a_second(tmp_path) -> None:
    """Code generation + compile + load is a cache hit in a new process. (The PyTorch import
    itself, torch.export, costs ~2 s on its first call in a process and is not cached yet.)"""
    script = textwrap.dedent(f"""
        import sys, time, torch
        sys.path.insert(0, {os.path.join(os.path.dirname(__file__), '..', '..', 'benchmarks')!r})
        import sol
        from zoo import small_resnet
        torch.manual_seed(0)
        m = small_resnet().eval()
        fast = sol.optimize(m, torch.Size([2, 3, 32, 32]), device="x86")
        print(fast.program.info["cached"], fast.program.info["build_seconds"])
    """)
    env = {**os.environ, "SOL_CACHE_DIR": str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    second = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    cached1, _ = first.stdout.split()
    cached2, t2 = second.stdout.split()
    assert cached1 == "False" and cached2 == "True"
    assert float(t2) < 1.0, f"cache hit took {t2} s"


def test_third_party_device_plugin_runs_a_pytorch_model(fresh_plugins) -> None:
    """A device written in the test (interpreter_device) registered through the public hooks."""
    import sol_pytorch.plugin

    import interpreter_device

    fresh_plugins.register(sol_pytorch.plugin, "pytorch")
    fresh_plugins.register(interpreter_device, "interp")
    model = small_resnet().eval()
    x = torch.rand(2, 3, 16, 16)
    fast = sol.optimize(model, x, device="interp")
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-3, atol=1e-4)
    assert interpreter_device.DEVICE.loads >= 1
