"""x86's generated loops call the vector forms of exp, tanh, erf, log, ... (glibc's libmvec,
declared in the network source, sol_x86/templates/network.cpp.j2): a sigmoid or SiLU loop ran
one element at a time before. Checked through the public API: the network library built for a
model of such ops imports the vector forms, and its results match PyTorch's, NaN, infinities,
huge and tiny arguments and signed zeros included."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import pytest
import torch
from torch import nn

import sol


class Transcendental(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (torch.sigmoid(x), torch.tanh(x), nn.functional.silu(x), nn.functional.gelu(x),
                torch.exp(x), torch.log(x.abs()), torch.log1p(x.abs()), torch.expm1(x), torch.erf(x),
                torch.sin(x), torch.cos(x), torch.softmax(x, -1))


def _input() -> torch.Tensor:
    torch.manual_seed(0)
    x = torch.randn(4, 16, 300) * 6  # above the size where the loops start threads (vector loops)
    special = torch.tensor([float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-40, -1e-40, 88.7, 89.0,
                            -87.5, -103.0, -104.0, 1e30, -1e30])
    x[0, 0, :special.numel()] = special
    x[1, 12, 100:100 + special.numel()] = special
    return x


def test_transcendental_loops_match_pytorch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOL_CACHE_DIR", str(tmp_path))
    model, x = Transcendental().eval(), _input()
    fast = sol.optimize(model, x, device="x86")
    with torch.no_grad():
        for i, (got, want) in enumerate(zip(fast(x), model(x))):
            assert torch.equal(torch.isnan(got), torch.isnan(want)), i
            assert torch.equal(torch.isinf(got), torch.isinf(want)), i
            # GELU's 1 + erf(x / sqrt(2)) cancels for negative x: PyTorch's own erf differs from
            # libm's by up to 2e-7 there (sol's is the closer to the exact value), hence an atol.
            atol = 1e-6 if i == 3 else 1e-30
            torch.testing.assert_close(got, want, rtol=2e-6, atol=atol, equal_nan=True, msg=f"output {i}")
    if platform.machine() != "x86_64" or platform.libc_ver()[0] != "glibc":
        return  # the vector forms are glibc's
    imported = set()
    for lib in tmp_path.rglob("*.so"):
        out = subprocess.run(["nm", "-D", "--undefined-only", str(lib)], capture_output=True, text=True).stdout
        imported |= {line.split()[-1].split("@")[0] for line in out.splitlines() if "_ZGV" in line}
    # One vector width or another, per what -march=native allows (16 lanes on AVX-512, 8 on AVX2).
    for fn in ("expf", "tanhf", "erff", "logf"):
        assert any(s.endswith(f"v_{fn}") for s in imported), (fn, sorted(imported))


class Sigmoid(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x * 2.0)


def test_small_loops_are_vector_loops(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A loop alone in its group and too small to start threads (1200 elements) is a vector loop
    too: the parallel choice is rendered into the source, not left to an OpenMP if() clause,
    under which GCC 12 dropped the simd and the loop called the scalar expf."""
    monkeypatch.setenv("SOL_CACHE_DIR", str(tmp_path))
    model = Sigmoid().eval()
    x = torch.randn(4, 300)
    x[0, :4] = torch.tensor([float("nan"), float("inf"), -float("inf"), -104.0])
    fast = sol.optimize(model, x, device="x86")
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=2e-6, atol=1e-30, equal_nan=True)
    if platform.machine() != "x86_64" or platform.libc_ver()[0] != "glibc":
        return  # the vector forms are glibc's
    imported = set()
    for lib in tmp_path.rglob("*.so"):
        out = subprocess.run(["nm", "-D", "--undefined-only", str(lib)], capture_output=True, text=True).stdout
        imported |= {line.split()[-1].split("@")[0] for line in out.splitlines()}
    assert any(s.startswith("_ZGV") and s.endswith("v_expf") for s in imported), sorted(imported)
