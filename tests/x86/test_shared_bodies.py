"""Repeated blocks (a transformer's layers) lower to the same loops over different buffers; the
x86 source holds each such body once, as a function the groups call with their buffers
(sol.lowering.shared_bodies), and the results stay PyTorch's."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn

import sol

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")


class Block(nn.Module):
    """LayerNorm, a scaled softmax and GELU: fused groups between the dense layers."""

    def __init__(self, width: int, scale: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(width)
        self.fc = nn.Linear(width, width)
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.fc(self.norm(x))
        return x + torch.nn.functional.gelu(torch.softmax(y * self.scale, dim=-1) * y)


class Stack(nn.Module):
    def __init__(self, scales: list[float]) -> None:
        super().__init__()
        self.blocks = nn.Sequential(*(Block(16, s) for s in scales))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.blocks(x)


def _compile(model: nn.Module, x: torch.Tensor, folder: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("SOL_DEBUG_DIR", str(folder))
    fast = sol.optimize(model, x, device="x86", fallback=False)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-5)
    (source,) = folder.glob("*/network.cpp")
    return source.read_text()


def _bodies(text: str) -> list[str]:
    """The shared bodies defined (each also declared noinline: inlined, it is compiled per caller)."""
    names = re.findall(r"^void (sol_body\d+)\(.*\{$", text, flags=re.M)
    assert all(f"__attribute__((noinline)) void {n}(" in text for n in names)
    return names


def test_identical_blocks_share_one_body(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.manual_seed(0)
    text = _compile(Stack([0.5] * 5).eval(), torch.randn(3, 5, 16), tmp_path, monkeypatch)
    bodies = _bodies(text)
    assert bodies, "no shared body in the source"
    calls = {name: text.count(f"  {name}(net, in, out,") for name in bodies}
    assert all(n >= 2 for n in calls.values()), calls  # a body is shared only where it repeats
    assert max(calls.values()) >= 3, calls  # the three middle blocks (the first reads the input: const)


def test_blocks_that_differ_share_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scale is a literal in the loops: blocks with different scales are different code
    (a body shared across them would compute the first block's scale everywhere)."""
    torch.manual_seed(1)
    text = _compile(Stack([0.5, 0.25]).eval(), torch.randn(2, 3, 16), tmp_path, monkeypatch)
    for name in _bodies(text):  # what is shared (if anything) is not the scaled softmax
        start = text.index(f"\nvoid {name}(")
        assert "0.5f" not in text[start:text.index("\n}\n", start)]
