"""Core's own plugin: the builtin ops, graph passes and the "ir" frontend (networks built in
sol's IR, :mod:`sol.ir_frontend`), registered through the same hooks as any third-party plugin's."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from sol.ops.registry import OpRegistry
    from sol.passes.manager import PassRegistry
    from sol.roles import FrontendRegistry

SOL_PLUGIN_API = ">=1.0,<2"
hookimpl = pluggy.HookimplMarker("sol")


@hookimpl
def sol_register_ops(registry: OpRegistry) -> None:
    from sol.ops import builtin_ops

    for opdef in builtin_ops():
        registry.register(opdef)


@hookimpl
def sol_register_passes(registry: PassRegistry) -> None:
    from sol.passes import builtin_passes

    builtin_passes(registry)


@hookimpl
def sol_register_frontends(registry: FrontendRegistry) -> None:
    from sol.ir_frontend import IRFrontend

    registry.register(IRFrontend())
