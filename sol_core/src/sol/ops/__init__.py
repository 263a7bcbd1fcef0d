"""Core's builtin ops (see CATALOGUE.md); the registry itself is :mod:`sol.ops.registry`."""

from __future__ import annotations

from sol.ops.registry import OpDef


def builtin_ops() -> list[OpDef]:
    from sol.autodiff.rules import attach_builtin_rules
    from sol.ops import elementwise, grad_ops, gradient, index, layout, linalg, recurrent, reduce, spatial, window

    ops = (elementwise.ops() + window.ops() + reduce.ops() + layout.ops() + linalg.ops() + index.ops()
           + recurrent.ops() + spatial.ops() + gradient.ops())
    # Every builtin op carries its gradient rule (sol.autodiff.rules), as a plugin's op would.
    return attach_builtin_rules(ops + grad_ops.ops())
