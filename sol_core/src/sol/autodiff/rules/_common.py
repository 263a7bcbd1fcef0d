"""Helpers every family of gradient rules uses."""

from __future__ import annotations

from typing import Any

from sol.autodiff.builder import GradContext
from sol.ir import Value

Grads = list[Value | None]


def _k(ctx: GradContext, value: float) -> Value:
    return ctx.const(value, ctx.node.outputs[0])


def _selected(ctx: GradContext, inside: Value, g: Value) -> list[Value | None]:
    return [ctx.op("where", inside, g, _k(ctx, 0.0))] + [None] * (len(ctx.node.inputs) - 1)


def _stopped(ctx: GradContext, outside: Value, g: Value) -> list[Value | None]:
    """``where(outside, 0, g)``: the gradient passes wherever ``outside`` is false, NaN included."""
    return [ctx.op("where", outside, _k(ctx, 0.0), g)] + [None] * (len(ctx.node.inputs) - 1)


def _compare_k(ctx: GradContext, op: str, value: float) -> Value:
    return ctx.op(op, ctx.x(0), _k(ctx, value))


def _pool_attrs(a: dict[str, Any]) -> dict[str, Any]:
    return {k: a[k] for k in ("kernel", "stride", "padding", "dilation", "ceil_mode")}
