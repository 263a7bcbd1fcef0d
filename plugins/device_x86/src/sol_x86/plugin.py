"""Hook implementations of the x86 device plugin. Importing this module compiles nothing and
imports no library: the device and oneDNN are looked up when sol first needs them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from sol.plugin_api import BackendRegistry, Ceilings, DeviceRegistry

SOL_PLUGIN_API = ">=1.4,<2"
hookimpl = pluggy.HookimplMarker("sol")


@hookimpl
def sol_register_devices(registry: DeviceRegistry) -> None:
    from sol_x86.device import X86Device

    registry.register(X86Device())


@hookimpl
def sol_register_backends(registry: BackendRegistry) -> None:
    from sol_x86.libraries import OneDNNBackend

    registry.register(OneDNNBackend())


@hookimpl
def sol_measure_ceilings(device: str) -> Ceilings | None:
    """This CPU's ceilings, measured with oneDNN's own matmul and binary add (sol_x86.ceilings)."""
    if device != "x86":
        return None
    from sol.plugin_api import progress_step
    from sol_x86.ceilings import measure

    with progress_step("measuring this machine's ceilings for x86 (oneDNN matmul and bandwidth; once, then cached)"):
        return measure()
