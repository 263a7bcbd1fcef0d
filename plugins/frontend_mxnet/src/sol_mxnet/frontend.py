"""The MXNet frontend role: which models it takes, how they are imported and wrapped."""

from __future__ import annotations

import sys
from typing import Any

from sol.plugin_api import Availability, Frontend, Graph, PartitionedProgram, Program, framework_availability


def availability() -> Availability:
    """MXNet is importable here (looked up, not imported)."""
    return framework_availability("mxnet", "pip install mxnet==1.9.1 'numpy<1.24'")


class MXNetFrontend(Frontend):
    name = "mxnet"
    module = "sol_mxnet"

    def availability(self) -> Availability:
        return availability()

    def accepts(self, model: Any) -> bool:
        # No MXNet imported: no block of its own can exist, and importing it costs a second.
        mx = sys.modules.get("mxnet")
        return mx is not None and isinstance(model, (mx.gluon.HybridBlock, mx.sym.Symbol, mx.mod.BaseModule))

    def training_mode(self, model: Any) -> bool:
        return False  # a Gluon block has no mode of its own: each call's autograd state chooses

    def import_graph(self, model: Any, example_inputs: tuple[Any, ...], options: dict[str, Any]) -> Graph:
        from sol_mxnet.importer import import_model

        return import_model(model, example_inputs, options)

    def wrap(self, program: Program | PartitionedProgram, model: Any, graph: Graph) -> Any:
        from sol_mxnet.wrapper import SolBlock

        return SolBlock.from_compiled(program, graph)
