"""Nothing that runs in eager fails in ``optimize`` (issue #22 item 1).

* Results of any structure: objects PyTorch's pytree does not know (a cache class holding lists
  of tensors, as transformers' DynamicCache) are taken apart for ``torch.export`` and built
  again, a fresh object per call, and the model still compiles whole.
* Models ``torch.export`` cannot take (data-dependent control flow) go through the Dynamo path
  (``torch.compile(backend="sol")``) with one warning saying why; ``fallback=False`` makes that
  a SolError naming the reason, not a raw ``torch.export`` error.
* Operations whose result shape depends on the values (``nonzero``, ``masked_select``,
  ``unique``) run in PyTorch with the reason said, or are refused clearly with ``fallback=False``.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest
import torch
from torch import nn

import sol
from sol.errors import SolError, UnsupportedOpError
from sol.plugin_api import SolFallbackWarning

DEVICE = "x86"


@pytest.fixture(autouse=True)
def _x86() -> None:
    import sol.plugins

    if DEVICE not in sol.plugins.roles().devices:
        pytest.skip("the x86 device is not installed")


class Memory:
    """A container pytree does not know: tensors in a list of objects, and plain values."""

    def __init__(self) -> None:
        self.slots: list[Slot] = []
        self.tag = "memory"


class Slot:
    def __init__(self, key: torch.Tensor, value: torch.Tensor) -> None:
        self.key, self.value = key, value
        self.steps = 1


class WithMemory(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> dict[str, Any]:
        memory = Memory()
        h = torch.relu(self.a(x))
        memory.slots.append(Slot(h, h * 2))
        memory.slots.append(Slot(self.b(h), x))
        return {"out": self.b(h).sum(-1), "memory": memory, "n": 2}


def test_result_with_unknown_container_compiles_whole_and_is_built_again() -> None:
    model = WithMemory().eval()
    x = torch.randn(3, 4)
    fast = sol.optimize(model, x, device=DEVICE, fallback=False)  # before: torch.export's "not a known type"
    with torch.no_grad():
        want, got, again = model(x), fast(x), fast(x)
    assert set(got) == {"out", "memory", "n"} and got["n"] == 2
    torch.testing.assert_close(got["out"], want["out"])
    assert type(got["memory"]) is Memory and got["memory"].tag == "memory"
    for s, w in zip(got["memory"].slots, want["memory"].slots, strict=True):
        assert type(s) is Slot and s.steps == 1
        torch.testing.assert_close(s.key, w.key)
        torch.testing.assert_close(s.value, w.value)
    # every call gets objects of its own (a caller appending to one result changes no other)
    assert again["memory"] is not got["memory"] and again["memory"].slots is not got["memory"].slots
    assert again["memory"].slots[0] is not got["memory"].slots[0]
    torch.testing.assert_close(again["memory"].slots[1].value, x)


class Branchy(nn.Module):
    """Data-dependent control flow: torch.export cannot trace it, Dynamo can (a graph break)."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 5)
        with torch.no_grad():
            self.fc.weight.copy_(torch.eye(5) + 0.01 * torch.randn(5, 5))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.tanh(self.fc(x))
        if h.sum() > 0:
            return self.fc(h) + 1
        return self.fc(h) - 1


def test_model_torch_export_cannot_trace_runs_through_dynamo(monkeypatch: pytest.MonkeyPatch) -> None:
    import sol_pytorch.dynamo as dynamo

    compiled: list[int] = []
    real = dynamo.compile_variant
    monkeypatch.setattr(dynamo, "compile_variant", lambda *a, **k: compiled.append(1) or real(*a, **k))
    model = Branchy().eval()
    x = torch.randn(2, 5)
    with pytest.warns(SolFallbackWarning, match=r"torch\.export cannot trace Branchy .*data-dependent.*Dynamo"):
        fast = sol.optimize(model, x, device=DEVICE)
    assert compiled, "sol's Dynamo backend compiled nothing"
    with torch.no_grad():
        for y in (x.abs(), -x.abs()):  # both branches (fc starts as the identity)
            torch.testing.assert_close(fast(y), model(y))
        z = torch.randn(3, 5)  # another shape
        torch.testing.assert_close(fast(z), model(z))
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("error", SolFallbackWarning)  # said once, at optimize
        fast(x)


def test_model_torch_export_cannot_trace_with_fallback_false_is_a_clear_error() -> None:
    with pytest.raises(SolError, match=r"torch\.export cannot trace Branchy: .*data-dependent.*fallback=True") as err:
        sol.optimize(Branchy().eval(), torch.randn(2, 5), device=DEVICE, fallback=False)
    assert "GuardOnDataDependentSymNode" not in str(err.value)  # torch's own error is the cause, not the message
    assert err.value.__cause__ is not None


def test_training_a_model_torch_export_cannot_trace_runs_in_pytorch() -> None:
    torch.manual_seed(0)
    model = Branchy().train()
    twin = Branchy()
    twin.load_state_dict(model.state_dict())
    x = torch.randn(2, 5)
    with pytest.warns(SolFallbackWarning, match="torch.export cannot trace Branchy for training"):
        fast = sol.optimize(model, x, device=DEVICE)
    fast(x).sum().backward()
    twin(x).sum().backward()
    torch.testing.assert_close(model.fc.weight.grad, twin.fc.weight.grad)


@pytest.mark.parametrize("op", ["nonzero", "masked_select", "unique"])
def test_data_dependent_shapes_fall_back_or_are_refused_clearly(op: str) -> None:
    fns = {"nonzero": lambda x: torch.nonzero(x > 0).float().sum(0) + x.sum(),
           "masked_select": lambda x: torch.masked_select(x, x > 0).sum() * x,
           "unique": lambda x: torch.unique(torch.round(x)).sum() + x}

    class M(nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return fns[op](torch.tanh(x))

    x = torch.randn(4, 3)
    model = M().eval()
    with pytest.warns(SolFallbackWarning, match="depends on the values"):
        fast = sol.optimize(model, x, device=DEVICE)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x))
        y = torch.randn(4, 3)  # another count of selected elements, same compiled variant
        torch.testing.assert_close(fast(y), model(y))
    with pytest.raises(UnsupportedOpError, match="depends on the values") as err:
        sol.optimize(model, x, device=DEVICE, fallback=False)
    assert "sym_size" not in str(err.value)  # the size arithmetic is not listed on its own


def test_an_op_whose_decomposition_fails_is_refused_by_name_or_runs_in_pytorch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Where PyTorch's decomposition of an op sol has no converter for cannot be traced (it reads
    a size from tensor values, as torch.take's of a 0-d tensor did), the op stays as it is:
    PyTorch runs it (fallback), or with fallback=False sol refuses it by name. It raised torch's
    raw GuardOnDataDependentSymNode. The failure is simulated: the ops that showed it compile now."""
    from torch.export import ExportedProgram

    def failing(self: ExportedProgram, *args: Any, **kwargs: Any) -> ExportedProgram:
        raise RuntimeError("Could not guard on data-dependent expression Eq(u0, 1)")

    class Diff(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.diff(x, dim=1) * 2  # aten.diff: no converter, decomposed where it can be

    monkeypatch.setattr(ExportedProgram, "run_decompositions", failing)
    x = torch.randn(3, 5)
    with pytest.raises(UnsupportedOpError, match=r"aten\.diff"):
        sol.optimize(Diff().eval(), x, device="x86", fallback=False)
    with pytest.warns(SolFallbackWarning, match="diff"):
        fast = sol.optimize(Diff().eval(), x, device="x86")
    torch.testing.assert_close(fast(x), Diff()(x))


def test_take_of_a_0d_tensor_compiles() -> None:
    class Take(torch.nn.Module):
        def forward(self, x: torch.Tensor, i: torch.Tensor) -> torch.Tensor:
            return torch.take(x, i) * 2

    x, i = torch.tensor(1.5), torch.tensor(0)
    fast = sol.optimize(Take().eval(), x, i, device="x86", fallback=False)
    torch.testing.assert_close(fast(x, i), Take()(x, i))
