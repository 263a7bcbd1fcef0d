"""``torch.compile(model, backend="sol")``: registered by entry point, graph breaks, unsupported
ops, new shapes, and gradients (which run in PyTorch), against PyTorch eager."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from importlib import metadata

import pytest
import torch
from torch import nn

from sol_pytorch import dynamo
from sol_pytorch.dynamo import CompiledGraph, SolDynamoWarning, sol_backend

torch.manual_seed(0)


def _same(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-3) -> None:
    torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * max(1.0, float(want.abs().max())))


@pytest.fixture(autouse=True)
def fresh_dynamo() -> Iterator[None]:
    """Dynamo's caches and sol's once-per-process warnings start empty for each test."""
    torch._dynamo.reset()
    dynamo._WARNED.clear()
    yield
    torch._dynamo.reset()


class Breaks(nn.Module):
    """Two graph breaks: a Python branch on ``.item()`` and a ``print``; an op sol lacks after."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.bn = nn.BatchNorm1d(8)
        self.register_buffer("scale", torch.linspace(0.5, 2, 8))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        h = self.bn(self.fc(x))
        if h.sum().item() > 0:
            h = torch.relu(h)
        else:
            h = -h
        print("sol test: graph break")
        return h * self.scale, {"c": torch.cumsum(h, 1)}


def test_backend_is_registered_through_the_entry_point() -> None:
    points = metadata.entry_points(group="torch_dynamo_backends")
    assert any(p.name == "sol" and p.value == "sol_pytorch.dynamo:sol_backend" for p in points)
    assert "sol" in torch._dynamo.list_backends()


def test_graph_breaks_unsupported_ops_and_new_shapes_match_eager(device: str,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    model = Breaks().eval()
    model.bn.running_mean.uniform_(-0.5, 0.5)
    compiled = torch.compile(model, backend="sol", options={"device": device})
    inputs = [torch.randn(4, 8) + 3, torch.randn(4, 8) - 3, torch.randn(3, 8) + 3]  # both branches, new batch
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the fallback warning for cumsum
        warnings.simplefilter("error", SolDynamoWarning)  # nothing runs eagerly for want of sol
        with torch.no_grad():
            for x in inputs:
                got, want = compiled(x), model(x)
                _same(got[0], want[0])
                _same(got[1]["c"], want[1]["c"])
    assert capsys.readouterr().out.count("sol test: graph break") == 2 * len(inputs), "Python between graphs runs"
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 3


def test_when_gradients_are_needed_the_graph_runs_in_pytorch(device: str) -> None:
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh()).eval()
    compiled = torch.compile(model, backend="sol", options={"device": device})
    x = torch.randn(2, 4)
    with pytest.warns(SolDynamoWarning, match=r"gradients are needed.*torch.no_grad\(\)"):
        y = compiled(x)
    assert y.requires_grad
    y.sum().backward()
    assert model[0].weight.grad is not None
    _same(y.detach(), model(x).detach(), rtol=1e-4)


def test_backend_called_directly_compiles_per_shape_and_follows_weight_updates(device: str) -> None:
    model = nn.Sequential(nn.Linear(5, 3), nn.Sigmoid()).eval()
    gm = torch.fx.symbolic_trace(model)
    run = sol_backend(gm, [torch.randn(2, 5)], options={"device": device})
    assert isinstance(run, CompiledGraph)
    with torch.no_grad():
        for batch in (2, 3, 2):
            x = torch.randn(batch, 5)
            _same(run(x), model(x), rtol=1e-4)
        assert len(run.variants) == 2
        model[0].weight.mul_(2)  # a graph input of Dynamo's would see it; so must sol
        x = torch.randn(2, 5)
        _same(run(x), model(x), rtol=1e-4)


class RemembersBatch(nn.Module):
    """A forward that sets a plain attribute (transformers' models do such things)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.last_batch = x.shape[0]
        return x * 2


def test_sol_in_the_process_does_not_make_torch_compile_recompile_every_call() -> None:
    """sol watches module attributes through nn.Module.__setattr__ (sol_pytorch.weights); once any
    model is optimized, torch.compile of another model whose forward sets an attribute must still
    compile once, not guard on sol's counter and compile again at every call (with fullgraph=True
    that ends in a hard failure at the recompile limit)."""
    import sol

    sol.optimize(nn.Linear(2, 2).eval(), torch.randn(1, 2))  # installs the watch
    model = RemembersBatch()
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    x = torch.randn(3, 4)
    for _ in range(12):
        torch.testing.assert_close(compiled(x), x * 2)
    assert model.last_batch == 3
