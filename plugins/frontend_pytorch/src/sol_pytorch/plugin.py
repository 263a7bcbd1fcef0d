"""Hook implementations of the PyTorch frontend. Importing this module does not import torch."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from sol.plugin_api import FrontendRegistry

SOL_PLUGIN_API = ">=1.4,<2"
hookimpl = pluggy.HookimplMarker("sol")


@hookimpl
def sol_register_frontends(registry: FrontendRegistry) -> None:
    from sol_pytorch.frontend import PyTorchFrontend

    registry.register(PyTorchFrontend())
