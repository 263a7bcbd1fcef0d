"""Training through values that take no gradient: an op without a gradient rule applied to a
detached value trains (nothing flows through it, so no rule is asked for), and an operand whose
gradient PyTorch defines as zeros gets zeros, not None (``copysign``'s sign operand)."""

from __future__ import annotations

import torch
from torch import nn

import sol


class Detached(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x * self.w
        return y + torch.special.bessel_j0(y.detach())  # bessel_j0: no gradient rule in sol


class SignOf(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.b = nn.Parameter(torch.randn(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.copysign(x, self.b)


def _grads(model: nn.Module, x: torch.Tensor, fast: nn.Module) -> None:
    fast(x).sum().backward()
    ours = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    type(model).forward(model, x).sum().backward()
    eager = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert ours.keys() == eager.keys()
    for name in eager:
        torch.testing.assert_close(ours[name], eager[name])


def test_a_function_of_a_detached_value_needs_no_gradient_rule() -> None:
    torch.manual_seed(0)
    model, x = Detached().train(), torch.randn(3, 5)
    _grads(model, x, sol.optimize(model, x, device="x86", fallback=False))


def test_copysign_gives_its_sign_operand_zeros() -> None:
    torch.manual_seed(1)
    model, x = SignOf().train(), torch.randn(2, 4)
    _grads(model, x, sol.optimize(model, x, device="x86", fallback=False))
    assert model.b.grad is not None and not model.b.grad.any()
