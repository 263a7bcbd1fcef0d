"""Shapes other than the example's: a new batch size (or image size) compiles a variant once and
keeps it; another rank or dtype is an error naming expected and given, as is any other shape
with ``dynamic=False``."""

from __future__ import annotations

import logging
import warnings

import pytest
import torch
from torch import nn

import sol
from sol_pytorch.fallback import SolFallbackWarning

from foreign_ops import cumulative_product

torch.manual_seed(0)


def _same(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-3) -> None:
    torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * max(1.0, float(want.abs().max())))


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(h.mean((2, 3)))


def test_batch_3_after_batch_8_compiles_once_and_is_cached(device: str, caplog: pytest.LogCaptureFixture) -> None:
    model = ConvNet().eval()
    fast = sol.optimize(model, torch.Size([8, 3, 6, 6]), device=device)
    first = fast.program
    with torch.no_grad(), caplog.at_level(logging.INFO, logger="sol"):
        for batch in (3, 8, 3):
            x = torch.randn(batch, 3, 6, 6)
            _same(fast(x), model(x))
    assert len(fast.variants) == 2, "one variant per batch size, compiled once"
    assert [v.key[0][0][0] for v in fast.variants] == [8, 3]
    assert fast.program is first, ".program stays the one for the example inputs"
    notes = [r.getMessage() for r in caplog.records if "compiling ConvNet again" in r.getMessage()]
    assert len(notes) == 1 and "float32[3, 3, 6, 6]" in notes[0] and "float32[8, 3, 6, 6]" in notes[0], notes


def test_other_dimensions_recompile_too(device: str) -> None:
    model = ConvNet().eval()
    fast = sol.optimize(model, torch.Size([2, 3, 6, 6]), device=device)
    x = torch.randn(2, 3, 5, 9)
    with torch.no_grad():
        _same(fast(x), model(x))
    assert len(fast.variants) == 2


def test_another_rank_or_dtype_raises_naming_expected_and_given(device: str) -> None:
    fast = sol.optimize(ConvNet().eval(), torch.Size([2, 3, 6, 6]), device=device)
    with pytest.raises(ValueError, match=r"input 0 \(x\): expected rank 4 with shape \(2, 3, 6, 6\), got rank 3 "
                                         r"with shape \(3, 6, 6\)"):
        fast(torch.randn(3, 6, 6))
    with pytest.raises(TypeError, match=r"input 0 \(x\): expected dtype float32, got float64"):
        fast(torch.randn(5, 3, 6, 6, dtype=torch.float64))
    assert len(fast.variants) == 1, "nothing was compiled for them"


def test_dynamic_false_keeps_the_example_shapes(device: str) -> None:
    fast = sol.optimize(nn.Linear(4, 2).eval(), (3, 4), device=device, dynamic=False)
    with pytest.raises(ValueError, match=r"expected shape \(3, 4\), got \(5, 4\).*dynamic=False"):
        fast(torch.randn(5, 4))


def test_a_model_with_fallback_takes_a_new_batch_without_warning_again(device: str) -> None:
    class Cum(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tanh(cumulative_product(self.fc(x), 1))

    model = Cum().eval()
    with pytest.warns(SolFallbackWarning):
        fast = sol.optimize(model, torch.randn(4, 4), device=device)
    x = torch.randn(2, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SolFallbackWarning)
        with torch.no_grad():
            _same(fast(x), model(x))
    assert len(fast.variants) == 2
