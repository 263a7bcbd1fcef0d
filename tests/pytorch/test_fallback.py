"""Fallback: operations sol cannot compile run in PyTorch, the rest is compiled in as few parts as
the graph allows, with one warning naming what fell back; ``fallback=False`` makes it an error.

Tests that look at how a graph is cut use ``fallback.split`` directly (no compile); the others
compile through the public API and compare with PyTorch eager.
"""

from __future__ import annotations

import copy
import os
import re
import warnings
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import fx, nn

import sol
from sol.errors import UnsupportedOpError
from sol_pytorch import fallback
from sol_pytorch.fallback import SolFallbackWarning
from sol_pytorch.importer import trace
from sol_pytorch.variants import SplitVariant, host_array, torch_tensor
from sol_pytorch.wrapper import SolModule

from foreign_ops import cumulative_product
from op_cases import Fn

torch.manual_seed(0)
HERE = os.path.basename(__file__)


@torch.library.custom_op("soltest::halfsum", mutates_args=())
def halfsum(x: torch.Tensor, dim: int) -> torch.Tensor:
    """A custom op: opaque to sol, as any third-party kernel would be."""
    return torch.cumsum(x, dim) * 0.5


@halfsum.register_fake
def _(x: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.empty_like(x)


class SoftClip(torch.autograd.Function):
    """A custom autograd.Function whose forward uses an op sol lacks."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        return cumulative_product(x, -1).clamp(-4, 4)  # fallback: cumprod in a Function

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        return grad


class Mixed(nn.Module):
    """Compiled and PyTorch parts interleaved: a custom op, a Function, an FFT, and a branch
    independent of all of them; max-pool indices returned (compiled). Three compiled parts."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(16, 5)
        self.register_buffer("shift", torch.linspace(-1, 1, 16))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        h = torch.relu(self.conv(x))
        side = torch.sigmoid(h).mean((2, 3))  # independent of every PyTorch op below
        h = halfsum(h, 3)  # fallback: custom op
        p, idx = F.max_pool2d(h, 2, return_indices=True)  # compiled: the indices too
        s = p.mean(1).flatten(1) + self.shift
        c = SoftClip.apply(s)
        f = torch.fft.rfft(s, dim=-1).abs()  # fallback: fft (and abs of its complex result)
        out = self.fc(torch.tanh(c)) + f.sum(-1, keepdim=True)
        return out, {"side": side * 2, "f": f, "idx": idx}


def _same(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-3) -> None:
    torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * max(1.0, float(want.abs().max())))


def _line(marker: str) -> int:
    with open(__file__) as f:
        return next(i for i, line in enumerate(f, 1) if marker in line and "_line(" not in line)


def test_unsupported_ops_run_in_pytorch_with_one_warning_and_match_eager(device: str) -> None:
    model = Mixed().eval()
    x = torch.randn(2, 3, 8, 8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = sol.optimize(model, x, device=device)
    ours = [w for w in caught if issubclass(w.category, SolFallbackWarning)]
    assert len(ours) == 1, [str(w.message) for w in caught]
    assert ours[0].filename == __file__, "the warning points at the optimize call"
    message = str(ours[0].message)
    for op, marker in [("soltest.halfsum.default", "# fallback: custom op"),
                       ("soltest.cumulative_product.default", "# fallback: cumprod in a Function"),
                       ("aten._fft_r2c.default", "# fallback: fft"),
                       ("aten.abs.default [reads a complex64 tensor from PyTorch]", "# fallback: fft")]:
        assert re.search(rf"{re.escape(op)}.* at .*{HERE}:{_line(marker)}", message), (op, message)
    assert "fallback=False" in message and "(3 parts)" in message

    assert isinstance(fast, SolModule) and isinstance(fast, nn.Module)
    variant = fast.variants[0]
    assert isinstance(variant, SplitVariant) and len(variant.programs) == 3
    with torch.no_grad():
        got, want = fast(x), model(x)
    assert isinstance(got, tuple) and isinstance(got[1], dict) and list(got[1]) == ["side", "f", "idx"]
    assert torch.equal(got[1].pop("idx"), want[1].pop("idx"))
    _same(got[0], want[0])
    for key in want[1]:
        _same(got[1][key], want[1][key])
    assert list(fast.state_dict()) == list(model.state_dict())


def test_fallback_false_raises_naming_the_op_and_its_line(device: str) -> None:
    with pytest.raises(UnsupportedOpError) as info:
        sol.optimize(Mixed().eval(), torch.randn(1, 3, 8, 8), device=device, fallback=False)
    message = str(info.value)
    assert info.value.op == "soltest.halfsum.default"
    assert "soltest.cumulative_product.default" in message and "max_pool2d" not in message
    assert info.value.source == f"model ({HERE}:{_line('# fallback: custom op')})"
    assert re.search(rf"aten\._fft_r2c\.default .*{HERE}:{_line('# fallback: fft')}", message), message
    assert "fallback=True" in message


def _split(model: nn.Module, *shapes: tuple[int, ...]) -> fallback.Split:
    return fallback.split(trace(model, [torch.zeros(s) for s in shapes], {}), model)


def _ops(part: fallback.Part) -> list[str]:
    return [n.op for n in part.graph.nodes]


def test_regions_are_as_few_as_the_chain_of_pytorch_ops_allows() -> None:
    """relu and the independent tanh branch share part 0; the chain cumprod -> cumprod needs no
    part between; sigmoid and the add that joins the branches form part 1."""

    def fn(x: torch.Tensor) -> torch.Tensor:
        a = cumulative_product(cumulative_product(torch.relu(x), 1), 0)
        return torch.sigmoid(a) + torch.tanh(x) * 3

    cut = _split(Fn(fn).eval(), (4, 5))
    kinds = ["part" if isinstance(s, fallback.Part) else fx.Node.__name__ for s in cut.steps]
    assert kinds == ["part", "Node", "Node", "part"]
    first, second = cut.parts
    assert sorted(_ops(first)) == ["mul", "relu", "tanh"]
    assert sorted(_ops(second)) == ["add", "sigmoid"]
    assert [n.name for n in first.results] == ["relu", "mul"], "results read later: by cumprod and by the add"
    assert len(cut.fallen) == 1, "one line per op and place"


def test_a_region_that_only_moves_data_is_left_to_pytorch() -> None:
    cut = _split(Fn(lambda x: cumulative_product(x.view(2, 6).t(), 0).reshape(-1)).eval(), (3, 4))
    assert cut.parts == [], "views around the cumprod: nothing worth a compile"


def test_weights_are_read_in_place_by_every_part_that_uses_them() -> None:
    class TwoUses(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(cumulative_product(self.fc(x), 1))

    model = TwoUses().eval()
    cut = _split(model, (2, 4))
    assert len(cut.parts) == 2
    for part in cut.parts:
        weight = next(p for p in part.graph.params if p.name == "fc.weight")
        assert np.shares_memory(weight.data, model.fc.weight.detach().numpy())


def test_values_cross_between_pytorch_and_sol_without_copies() -> None:
    t = torch.randn(3, 4)
    a = host_array(t)
    assert np.shares_memory(a, t.numpy())
    back = torch_tensor(a)
    assert back.data_ptr() == t.data_ptr()
    assert not np.shares_memory(host_array(t.t()), t.numpy()), "a transposed view needs its own layout"


def test_a_model_sol_can_compile_nothing_of_still_runs(device: str) -> None:
    model = Fn(lambda x: torch.fft.rfft(x, dim=-1).abs()).eval()
    x = torch.randn(2, 6)
    with pytest.warns(SolFallbackWarning, match=r"2 operation\(s\) of Fn.*\(0 parts\)"):
        fast = sol.optimize(model, x, device=device)
    _same(fast(x), model(x), rtol=1e-4)
    assert repr(fast).startswith("SolModule(Fn on "), "a partitioned program shows as a compiled one"


def test_a_model_pytorch_trains_entirely_compiles_nothing(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Training with an op sol cannot convert: PyTorch trains the whole model (gradients through a
    partly compiled model are not supported), so nothing is compiled, for the example's shapes or
    for new ones (TensorFlow's behaviour too); eager's outputs and gradients, one warning."""
    import sol.api
    import sol.plugin_api

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("PyTorch trains this model: nothing to compile")

    class Cumulative(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return cumulative_product(self.fc(x), 1)

    # The plugin API caches a name on first use: patched first (its lookup then caches the real
    # function, which monkeypatch restores), a stub cached there would outlive this test.
    monkeypatch.setattr(sol.plugin_api, "compile_graph", refuse)
    monkeypatch.setattr(sol.api, "compile_graph", refuse)
    torch.manual_seed(0)
    model = Cumulative().train()
    eager = copy.deepcopy(model)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fast = sol.optimize(model, torch.randn(2, 4), device=device)
        for batch in (2, 5):  # 5: a new shape, a training variant of its own
            x = torch.randn(batch, 4)
            got, want = fast(x), eager(x)
            _same(got, want, rtol=1e-6)
            (got * got).sum().backward()
            (want * want).sum().backward()
    fell = [w for w in caught if issubclass(w.category, SolFallbackWarning)]
    assert len(fell) == 1 and "PyTorch trains the whole model" in str(fell[0].message), [str(w.message) for w in fell]
    for p, q in zip(model.parameters(), eager.parameters()):
        assert p.grad is not None and q.grad is not None
        _same(p.grad, q.grad, rtol=1e-6)
    variants = list(fast._train_variants.values())
    assert len(variants) == 2 and all(v.programs == [] and v.fallen for v in variants)
    assert repr(fast).startswith("SolModule(Cumulative on ")
