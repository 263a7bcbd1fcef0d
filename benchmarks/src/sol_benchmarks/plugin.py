"""Hook implementations of sol-benchmarks: the ``bench`` and ``demo`` commands. Imports nothing
heavy. (This machine's ceilings for roofline reports are the x86 device's to measure.)"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from sol.plugin_api import CommandRegistry

SOL_PLUGIN_API = ">=1.0,<2"
hookimpl = pluggy.HookimplMarker("sol")


@hookimpl
def sol_register_commands(registry: CommandRegistry) -> None:
    from sol_benchmarks.commands import BenchCommand, DemoCommand

    registry.register(BenchCommand())
    registry.register(DemoCommand())

