"""What a call of an optimized module reads and writes on its way to the program: nothing of
the model changes (a call that wrote a module attribute would make every later call take the
whole configuration snapshot again), and a mode switch of any submodule is still seen at the
next call although the modes are no longer read module by module at every call."""

from __future__ import annotations

import torch
from torch import nn

import sol
from sol_pytorch import weights


def _model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                         nn.Flatten(), nn.Linear(4 * 6 * 6, 3)).eval()


def test_calls_change_nothing_the_watches_count(device: str) -> None:
    model = _model()
    x = torch.randn(2, 3, 6, 6)
    fast = sol.optimize(model, x, device=device)
    with torch.no_grad():
        fast(x)
        before = (weights._generation, weights._mode_generation)
        for _ in range(3):
            fast(x)
    assert (weights._generation, weights._mode_generation) == before


def test_a_submodules_mode_switch_is_seen_at_the_next_call(device: str) -> None:
    torch.manual_seed(0)
    model = _model()
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    x = torch.randn(2, 3, 6, 6)
    fast = sol.optimize(model, x, device=device)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-4)
        model[1].train()  # only the BatchNorm: the batch's statistics from now on
        want = model(x)
        got = fast(x)
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
        model[1].eval()
        torch.testing.assert_close(fast(x), model(x), rtol=1e-4, atol=1e-4)
