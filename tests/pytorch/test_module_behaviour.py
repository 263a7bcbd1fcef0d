"""The optimized module behaves as the model does in PyTorch: buffers, non-tensor arguments that
change the graph, structured outputs, eval()/train(), state_dict round trips and weight updates."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import sol
from sol_pytorch.fallback import SolFallbackWarning

torch.manual_seed(0)


def _same(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-3) -> None:
    torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * max(1.0, float(want.abs().max())))


class Flags(nn.Module):
    """Buffers (one not persistent), non-tensor arguments that select Python branches, a tuple in
    a dict out."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(6, 6)
        self.drop = nn.Dropout(0.5)
        self.register_buffer("center", torch.linspace(-1, 1, 6))
        self.register_buffer("scale", torch.full((6,), 2.0), persistent=False)

    def forward(self, x: torch.Tensor, square: bool, repeat: int = 1,
                gain: float | None = None) -> dict[str, object]:
        h = self.drop(self.fc(x - self.center)) * self.scale
        for _ in range(repeat):
            h = torch.tanh(h)
        if square:
            h = h * h
        if gain is not None:
            h = h * gain
        return {"h": h, "stats": (h.mean(1), repeat)}


def _check(got: dict[str, object], want: dict[str, object]) -> None:
    assert list(got) == list(want)
    _same(got["h"], want["h"])  # type: ignore[arg-type]
    g_stats, w_stats = got["stats"], want["stats"]
    assert isinstance(g_stats, tuple) and g_stats[1] == w_stats[1]  # type: ignore[index]
    _same(g_stats[0], w_stats[0])  # type: ignore[index]


def test_non_tensor_arguments_select_their_own_variant(device: str) -> None:
    model = Flags().eval()
    x = torch.randn(3, 6)
    fast = sol.optimize(model, x, False, device=device)
    with torch.no_grad():
        for args, kwargs in [((x, False), {}), ((x, True), {"repeat": 2}), ((x,), {"square": False, "gain": 0.5}),
                             ((x, True, 2), {})]:
            _check(fast(*args, **kwargs), model(*args, **kwargs))
    assert len(fast.variants) == 3, "(x, False), (x, True, 2) and (x, False, 1, 0.5): each compiled once"
    with pytest.warns(SolFallbackWarning, match=r"input 1 \(square\): a list: .* PyTorch runs this call"), \
            torch.no_grad():
        _check(fast(x, [True]), model(x, [True]))  # what eager makes of it (a truthy flag), not an error
    with pytest.raises(TypeError, match=r"input 0 \(x\): expected a torch.Tensor, got float"):
        fast(1.0, True)
    with pytest.raises(TypeError, match="missing input"):
        fast(x, repeat=2)


def test_state_dict_round_trip_and_weight_updates(device: str) -> None:
    model = Flags().eval()
    x = torch.randn(3, 6)
    fast = sol.optimize(model, x, True, device=device)
    assert list(fast.state_dict()) == list(model.state_dict()) == ["center", "fc.weight", "fc.bias"]
    assert dict(fast.named_buffers())["scale"] is model.scale

    other = Flags().eval()
    fast.load_state_dict(other.state_dict())  # writes into the model's own tensors
    assert torch.equal(model.fc.weight, other.fc.weight)
    with torch.no_grad():
        _check(fast(x, True), other(x, True))
        model.center.add_(0.25)  # an in-place buffer update
        _check(fast(x, True), model(x, True))
        model.fc.weight = nn.Parameter(torch.randn(6, 6))  # a new parameter object
        _check(fast(x, True), model(x, True))


def test_train_switches_to_training_behaviour_and_eval_restores(device: str) -> None:
    model = Flags().eval()
    x = torch.randn(3, 6)
    fast = sol.optimize(model, x, False, device=device)
    assert fast.train() is fast
    assert fast.training and model.training and model.drop.training, "modes switch as in PyTorch"
    for grad in (True, False):  # dropout active, the same mask as eager for the same seed
        with torch.set_grad_enabled(grad):
            torch.manual_seed(grad)
            got = fast(x, False)
            torch.manual_seed(grad)
            _check(got, model(x, False))
    fast.eval()
    assert not (fast.training or model.training or model.drop.training)
    with torch.no_grad():
        _check(fast(x, False), model(x, False))
    assert len(fast.variants) == 2, "one inference variant, one training variant"
