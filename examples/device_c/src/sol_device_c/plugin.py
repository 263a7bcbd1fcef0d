"""Hook implementations of the example C device: what the ``sol`` entry point names. Importing
this module imports nothing heavy (``sol plugins`` imports every installed plugin)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sol.plugin_api import hookimpl

if TYPE_CHECKING:
    from sol.plugin_api import BackendRegistry, DeviceRegistry

# Written against plugin API 1.1 (DeviceCapabilities.unsupported_ops, the lowering in the facade).
SOL_PLUGIN_API = ">=1.1,<2"


@hookimpl
def sol_register_devices(registry: DeviceRegistry) -> None:
    from sol_device_c.device import CDevice

    registry.register(CDevice())


@hookimpl
def sol_register_backends(registry: BackendRegistry) -> None:
    from sol_device_c.device import LoopBackend

    registry.register(LoopBackend())
