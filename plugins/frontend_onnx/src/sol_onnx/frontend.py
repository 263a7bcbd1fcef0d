"""The ONNX frontend role: which models it takes, how they are imported and wrapped."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from sol.plugin_api import Availability, Frontend, framework_availability

if TYPE_CHECKING:
    from sol.plugin_api import Graph, PartitionedProgram, Program


def availability() -> Availability:
    """``onnx`` is importable here (looked up, not imported)."""
    return framework_availability("onnx", "pip install onnx")


def is_onnx_path(model: Any) -> bool:
    """A path (str or ``os.PathLike``) naming an ``.onnx`` file: what ``sol.optimize("m.onnx")`` takes."""
    if isinstance(model, (str, os.PathLike)) and not isinstance(model, bytes):
        return os.fspath(model).lower().endswith(".onnx")
    return False


class OnnxFrontend(Frontend):
    name = "onnx"
    module = "sol_onnx"

    def availability(self) -> Availability:
        return availability()

    def accepts(self, model: Any) -> bool:
        if is_onnx_path(model):
            return True
        # No onnx imported: no ModelProto can exist, and importing it for every other model costs time.
        onnx = sys.modules.get("onnx")
        return onnx is not None and isinstance(model, onnx.ModelProto)

    def import_graph(self, model: Any, example_inputs: tuple[Any, ...], options: dict[str, Any]) -> Graph:
        from sol_onnx.importer import import_model

        return import_model(model, example_inputs, options)

    def wrap(self, program: Program | PartitionedProgram, model: Any, graph: Graph) -> Any:
        from sol_onnx.session import SolInferenceSession

        return SolInferenceSession.from_compiled(program, graph)
