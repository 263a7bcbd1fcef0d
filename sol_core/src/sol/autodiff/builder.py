"""What a gradient rule sees: :class:`GradContext`, one per differentiated forward node.

A rule is ``rule(ctx, grads) -> list[Value | None]``: ``grads`` holds the gradient of each of
the node's outputs (backward-graph values, ``None`` where nothing downstream needs it); the rule
returns one gradient per node input, of the input's exact type, or ``None`` for an input with no
gradient (integer indices, or ``ctx.need[i]`` false). Rules build backward nodes only through the
context (``ctx.op``, ``ctx.const``, ...), and read forward values through ``ctx.x(i)`` (input i)
and ``ctx.y(k)`` (output k): a forward value read this way becomes a saved tensor, or is
recomputed in the backward graph (see :mod:`sol.autodiff.differentiate` for the policy), so a
rule never decides what is kept. Rules for plugin ops use the same API.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sol.errors import SolError
from sol.ir import Graph, Node, TensorType, Value, ValueKind


class GradBuilder:
    """The backward graph under construction and the forward values it reads."""

    def __init__(self, forward: Graph, backward: Graph) -> None:
        self.forward = forward
        self.backward = backward
        # forward value -> backward value standing for it (a placeholder input until the
        # save-or-recompute decision, or a copied parameter/constant)
        self.reads: dict[Value, Value] = {}
        self.placeholders: dict[Value, Value] = {}  # placeholder -> forward value
        self.source: str | None = None

    def read(self, v: Value) -> Value:
        got = self.reads.get(v)
        if got is not None:
            return got
        if v.kind is ValueKind.CONST:
            got = self.backward.add_const(v.data, hint="k")
        elif v.kind is ValueKind.PARAM:
            # A frozen parameter (not trained): the backward graph places it too, by reference.
            assert v.data is not None
            got = self.backward.add_param(v.name, v.data)
        else:
            got = Value(f"saved_{v.name}", v.type, ValueKind.INPUT)
            self.placeholders[got] = v
        self.reads[v] = got
        return got

    def op(self, name: str, inputs: Sequence[Value], **attrs: Any) -> Value:
        return self.node(name, inputs, **attrs).output

    def node(self, name: str, inputs: Sequence[Value], **attrs: Any) -> Node:
        return self.backward.add_node(name, list(inputs), attrs, source=self.source)

    def const(self, value: Any, dtype: str) -> Value:
        return self.backward.add_const(np.asarray(value, dtype=dtype), hint="k")


class GradContext:
    """One forward node's view of the backward graph (passed to its op's gradient rule)."""

    def __init__(self, builder: GradBuilder, node: Node, need: list[bool]) -> None:
        self.b = builder
        self.node = node
        self.attrs = node.attrs
        self.need = need  # need[i]: does input i need a gradient?

    # --- forward values -----------------------------------------------------------------------
    def x(self, i: int) -> Value:
        """Forward input ``i`` as a backward value (saved or recomputed)."""
        return self.b.read(self.node.inputs[i])

    def y(self, k: int = 0) -> Value:
        """Forward output ``k`` as a backward value (saved or recomputed)."""
        return self.b.read(self.node.outputs[k])

    def in_type(self, i: int) -> TensorType:
        return self.node.inputs[i].type

    # --- building -------------------------------------------------------------------------------
    def op(self, name: str, *inputs: Value, **attrs: Any) -> Value:
        """Add a backward node with one output; returns that output."""
        return self.b.op(name, inputs, **attrs)

    def const(self, value: Any, like: Value | str) -> Value:
        """A constant (scalar or array) of ``like``'s dtype (or the dtype named)."""
        return self.b.const(value, like if isinstance(like, str) else like.dtype)

    def scale(self, g: Value, factor: float) -> Value:
        return self.op("mul", g, self.const(factor, g))

    def zeros(self, t: TensorType) -> Value:
        """A zero tensor: a broadcast scalar (constant folding makes it a constant)."""
        return self.op("broadcast_to", self.const(0.0, t.dtype), shape=t.shape)

    def reduce_to(self, g: Value, shape: tuple[int, ...]) -> Value:
        """Undo NumPy broadcasting: sum ``g`` over the axes along which an operand of ``shape``
        was broadcast to ``g``'s shape."""
        if g.shape == tuple(shape):
            return g
        lead = g.type.rank - len(shape)
        if lead < 0:
            raise SolError(f"cannot reduce a gradient of shape {g.shape} to the larger shape {shape}")
        axes = list(range(lead)) + [lead + i for i, d in enumerate(shape) if d == 1 and g.shape[lead + i] != 1]
        if axes:
            g = self.op("sum", g, axes=tuple(axes), keepdims=False)
        if g.shape != tuple(shape):
            g = self.op("reshape", g, shape=tuple(shape))
        return g

    def expand(self, g: Value, reduced_axes: Sequence[int], keepdims: bool, shape: tuple[int, ...]) -> Value:
        """The gradient of a reduction over ``reduced_axes``: ``g`` broadcast back to ``shape``."""
        if not keepdims:
            kept = tuple(1 if i in reduced_axes else d for i, d in enumerate(shape))
            g = self.op("reshape", g, shape=kept)
        return self.op("broadcast_to", g, shape=tuple(shape))
