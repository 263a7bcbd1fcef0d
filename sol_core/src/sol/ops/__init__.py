"""Core's builtin ops (see CATALOGUE.md); the registry itself is :mod:`sol.ops.registry`."""

from __future__ import annotations

from sol.ops.registry import OpDef


def builtin_ops() -> list[OpDef]:
    """Every builtin op, each defined whole in its family's module (gradient rule, FLOP count and
    C lowering included), as a plugin's op would be."""
    from sol.ops import (
        elementwise,
        factor,
        grad_ops,
        gradient,
        index,
        layout,
        linalg,
        recurrent,
        reduce,
        sort,
        spatial,
        special,
        window,
    )

    return (elementwise.ops() + window.ops() + reduce.ops() + layout.ops() + linalg.ops() + index.ops()
            + recurrent.ops() + spatial.ops() + gradient.ops() + grad_ops.ops() + sort.ops()
            + special.ops() + factor.ops())
