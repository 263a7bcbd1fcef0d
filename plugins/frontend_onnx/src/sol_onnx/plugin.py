"""Hook implementations of the ONNX frontend. Importing this module does not import ``onnx``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sol.plugin_api import hookimpl

if TYPE_CHECKING:
    from sol.plugin_api import FrontendRegistry

SOL_PLUGIN_API = ">=1.3,<2"


@hookimpl
def sol_register_frontends(registry: FrontendRegistry) -> None:
    from sol_onnx.frontend import OnnxFrontend

    registry.register(OnnxFrontend())
