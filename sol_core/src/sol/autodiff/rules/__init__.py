"""Gradient rules of core's builtin ops, one module per op family as in :mod:`sol.ops`
(elementwise, reduce, layout, window, linalg, index, recurrent; the backward-only ops of
:mod:`sol.ops.grad_ops` beside the ops they differentiate). Each op's
:class:`~sol.ops.registry.OpDef` names its rule (``gradient=``); nothing here is keyed by op name.

A rule is ``rule(ctx, grads) -> list[Value | None]`` (see :class:`sol.autodiff.GradContext`):
``grads[k]`` is the gradient of output k (or None), the result one gradient per input (None for
inputs that take none). Rules are written with sol's own ops, so the backward graph is planned
like any graph: element-wise chains fuse, convolution and dense gradients go to libraries
(``conv2d_backward_data`` / ``conv2d_backward_weight``, ``matmul``). Derivatives at kinks follow
PyTorch by default (ReLU'(0) = 0, clamp passes the gradient at its bounds, max/min split ties
evenly); where frameworks differ, a gradient-only attribute says which (clamp's ``bounds_grad``,
maximum/minimum's ``ties``: :attr:`sol.ops.registry.OpDef.gradient_attrs`), so each frontend's
gradients match its framework's.
"""

from __future__ import annotations

from sol.autodiff.builder import GradContext
from sol.ir import Value

Grads = list[Value | None]


def no_gradient(ctx: GradContext, grads: Grads) -> Grads:
    """For ops whose outputs are not differentiable (integer or boolean results, selections)."""
    return [None] * len(ctx.node.inputs)
