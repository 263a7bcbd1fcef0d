"""Getting the exported graph ready without tracing the model twice (:mod:`sol_pytorch.prepare`):
in-place ops on the graph's own tensors and unknown ops on constants no longer cost a
``run_decompositions`` re-trace, and the results stay eager's, aliasing included."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch
from torch import nn
from torch.export import ExportedProgram

from sol.pytorch import optimize


@pytest.fixture
def retraces(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts ``run_decompositions`` calls (each one traces the whole model again)."""
    calls: list[int] = []
    original = ExportedProgram.run_decompositions

    def counting(self: ExportedProgram, *args: object, **kwargs: object) -> ExportedProgram:
        calls.append(1)
        return original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ExportedProgram, "run_decompositions", counting)
    yield calls


class Residual(nn.Module):
    """torchvision's basic block: ReLU(inplace=True) and ``out += identity``."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.conv1(x))
        out = self.conv2(out)
        out += x
        return self.relu(out)


class ReadBeforeAndAfter(nn.Module):
    """One reader of ``y`` before its update (sees the old value), one after (sees the new)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * 2
        before = y + 1
        y.mul_(3)
        y.clamp_(max=4.0)
        return before * y


class ViewSeesUpdate(nn.Module):
    """A view taken before an in-place update sees the update: the general path must take it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x + 1
        flat = y.view(-1)
        y.add_(10)
        return flat * 2


class UpdatedIsReturned(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        y = x.exp()
        before = y.sum(dim=1)
        y.sub_(1)
        return y, before


class ConstantMask(nn.Module):
    """``torch.diff`` of an ``arange``, as transformers' mask builders do with no mask given:
    sol has no converter for ``aten.diff``, but on a constant the importer folds it."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        steps = torch.diff(torch.arange(x.shape[-1], device=x.device))
        return x[..., 1:] * steps


def _check(model: nn.Module, x: torch.Tensor) -> None:
    want = model(x.clone())
    fast = optimize(model, x, fallback=False)
    got = fast(x)
    for g, w in zip(got if isinstance(got, tuple) else (got,), want if isinstance(want, tuple) else (want,)):
        torch.testing.assert_close(g, w, rtol=1e-4, atol=1e-5)


def test_in_place_ops_on_own_tensors_take_no_second_trace(retraces: list[int]) -> None:
    torch.manual_seed(0)
    _check(Residual().eval(), torch.randn(2, 4, 8, 8))
    _check(ReadBeforeAndAfter(), torch.randn(3, 5))
    assert retraces == []


def test_in_place_updates_that_alias_take_the_general_path(retraces: list[int]) -> None:
    torch.manual_seed(1)
    _check(ViewSeesUpdate(), torch.randn(3, 4))
    assert len(retraces) == 1


def test_an_updated_tensor_returned_is_the_updated_value(retraces: list[int]) -> None:
    """The trace returns the in-place op's result, so the rewrite covers it: no second trace."""
    torch.manual_seed(2)
    _check(UpdatedIsReturned(), torch.randn(3, 4))
    assert retraces == []


def test_unknown_ops_on_constants_are_folded_not_decomposed(retraces: list[int]) -> None:
    _check(ConstantMask(), torch.randn(2, 6))
    assert retraces == []


def test_the_users_tensors_are_not_changed() -> None:
    x = torch.randn(3, 5)
    kept = x.clone()
    optimize(ReadBeforeAndAfter(), x, fallback=False)(x)
    torch.testing.assert_close(x, kept, rtol=0, atol=0)
