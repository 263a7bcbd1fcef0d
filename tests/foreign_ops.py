"""An operation sol can never have a converter for, for the tests of what happens to such ops
(fallback to the framework, refusals naming the op and its source line, training through
PyTorch). The tests used ``torch.cumprod`` until sol compiled it: a custom op registered here,
as a third-party kernel would be, stays foreign whatever sol learns."""

from __future__ import annotations

from typing import Any

import torch


@torch.library.custom_op("soltest::cumulative_product", mutates_args=())
def cumulative_product(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``torch.cumprod`` behind an opaque op: PyTorch computes it, forward and backward."""
    return torch.cumprod(x, dim)


@cumulative_product.register_fake
def _(x: torch.Tensor, dim: int) -> torch.Tensor:
    return torch.empty_like(x)


def _setup(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    ctx.save_for_backward(inputs[0])
    ctx.dim = inputs[1]


def _backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
    (x,) = ctx.saved_tensors
    with torch.enable_grad():
        leaf = x.detach().requires_grad_(True)
        (dx,) = torch.autograd.grad(torch.cumprod(leaf, ctx.dim), leaf, grad)
    return dx, None


cumulative_product.register_autograd(_backward, setup_context=_setup)

FOREIGN_OP = "soltest.cumulative_product.default"
"""How sol names the op in its messages."""
