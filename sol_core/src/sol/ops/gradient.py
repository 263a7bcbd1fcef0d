"""Ops that only speak to autodiff: ``stop_gradient``.

Why an op of its own: frameworks let a model cut a gradient path while keeping the value
(PyTorch's ``detach`` and ``torch.no_grad()`` blocks inside ``forward``, TensorFlow's
``tf.stop_gradient``). Compiled as an ``identity`` it computes the right forward value and the
wrong gradient (``h * h.detach()`` would get twice eager's). So the frontends emit
``stop_gradient``; core autodiff gives it no gradient (its rule returns None: nothing upstream
is reached through it, so weights only behind it keep ``.grad is None`` as in the framework), and
the ``remove_stop_gradient`` canonicalization pass (:mod:`sol.passes.canonicalize`) replaces it by
its input in every graph the planner sees, inference graphs and the forward graph after
differentiation alike: it costs nothing at run time and no device lowers it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from sol.ir import TensorType
from sol.ops.registry import LayerClass, OpDef

if TYPE_CHECKING:
    from sol.autodiff.builder import GradContext


def _same(types: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    return [types[0]]


def _reference(xs: list[np.ndarray], attrs: dict[str, Any]) -> list[np.ndarray]:
    return [np.array(xs[0], copy=True)]  # the value passes unchanged (any dtype)


def _no_gradient(ctx: GradContext, grads: list[Any]) -> list[Any]:
    """The point of the op: nothing flows back through it."""
    return [None]


def ops() -> list[OpDef]:
    from sol import workload  # when the registry is filled (sol.ops.registry explains why)

    return [
        # No C expression: removed before planning. 0 FLOPs: it computes nothing.
        OpDef("stop_gradient", LayerClass.ELEMENTWISE, _same, _reference, (1, 1), gradient=_no_gradient,
              flops=workload.per_output(0),
              doc="the identity forward; no gradient flows through it (detach, no_grad blocks, "
                  "tf.stop_gradient); removed before planning"),
    ]
