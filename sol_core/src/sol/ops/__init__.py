"""Core's builtin ops (see CATALOGUE.md); the registry itself is :mod:`sol.ops.registry`."""

from __future__ import annotations

from sol.ops.registry import OpDef


def builtin_ops() -> list[OpDef]:
    from sol.ops import elementwise, layout, linalg, reduce, window

    return elementwise.ops() + window.ops() + reduce.ops() + layout.ops() + linalg.ops()
