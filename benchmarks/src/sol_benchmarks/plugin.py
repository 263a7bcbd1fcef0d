"""Hook implementations of sol-benchmarks: the ``bench`` and ``demo`` commands, and this
machine's ceilings for roofline reports. Imports nothing heavy."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from sol.plugin_api import CommandRegistry
    from sol.roofline import Ceilings

SOL_PLUGIN_API = ">=1.0,<2"
hookimpl = pluggy.HookimplMarker("sol")


@hookimpl
def sol_register_commands(registry: CommandRegistry) -> None:
    from sol_benchmarks.commands import BenchCommand, DemoCommand

    registry.register(BenchCommand())
    registry.register(DemoCommand())


@hookimpl
def sol_measure_ceilings(device: str) -> Ceilings | None:
    """The host CPU's ceilings, for the x86 device (the one that runs on it natively)."""
    from sol_benchmarks.commands import DEVICE

    if device != DEVICE:
        return None
    from sol import progress
    from sol_benchmarks.ceilings import measure
    from sol_benchmarks.harness import physical_cores

    with progress.step(f"measuring this machine's ceilings for {device} (SGEMM, memory bandwidth; once, then cached)"):
        return measure(physical_cores())
