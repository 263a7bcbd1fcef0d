"""Hook implementations of the SX-Aurora (VE) device plugin. Importing this module touches no
compiler, no VE and no AVEO: the device looks for them when sol first asks."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from sol.plugin_api import BackendRegistry, DeviceRegistry

SOL_PLUGIN_API = ">=1.4,<2"
hookimpl = pluggy.HookimplMarker("sol")


@hookimpl
def sol_register_devices(registry: DeviceRegistry) -> None:
    from sol_sxaurora.device import VeDevice

    registry.register(VeDevice())


@hookimpl
def sol_register_backends(registry: BackendRegistry) -> None:
    from sol_sxaurora.libraries import GeneratedKernels
    from sol_sxaurora.render import VeDialect

    registry.register(GeneratedKernels(VeDialect().elementwise_ops))
