"""Hook implementations of the example C device: what the ``sol`` entry point names. Importing
this module imports nothing heavy (``sol plugins`` imports every installed plugin)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sol.plugin_api import hookimpl

if TYPE_CHECKING:
    from sol.plugin_api import BackendRegistry, DeviceRegistry

# Written against plugin API 1.4 (the reference loops and the shipped op templates of the generator;
# 1.4: LinAlgError and Dialect.linalg_errors, a failed factorization check raised as such).
SOL_PLUGIN_API = ">=1.4,<2"


@hookimpl
def sol_register_devices(registry: DeviceRegistry) -> None:
    from sol_device_c.device import CDevice

    registry.register(CDevice())


@hookimpl
def sol_register_backends(registry: BackendRegistry) -> None:
    """The generator's reference loops run conv2d, conv_transpose2d, dense and matmul here (the
    device has no vendor library); they arrive as LIBRARY groups its shipped templates render."""
    from sol.plugin_api import reference_loops

    registry.register(reference_loops("c"))
