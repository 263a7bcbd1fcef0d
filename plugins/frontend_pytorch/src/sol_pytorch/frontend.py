"""The PyTorch frontend role: which models it takes, how they are imported and wrapped."""

from __future__ import annotations

import sys
from typing import Any

from sol.ir import Graph
from sol.program import Program
from sol.roles import Frontend


class PyTorchFrontend(Frontend):
    name = "pytorch"
    module = "sol_pytorch"

    def accepts(self, model: Any) -> bool:
        torch = sys.modules.get("torch")  # no torch imported: no torch model can exist
        return torch is not None and isinstance(model, torch.nn.Module)

    def training_mode(self, model: Any) -> bool:
        return bool(model.training)

    def import_graph(self, model: Any, example_inputs: tuple[Any, ...], options: dict[str, Any]) -> Graph:
        """The whole model's graph; where PyTorch must run some operations (``fallback``), the
        first compiled part, with the rest recorded for :meth:`wrap` to compile."""
        from sol_pytorch.variants import import_model

        return import_model(model, example_inputs, options)

    def wrap(self, program: Program, model: Any, graph: Graph) -> Any:
        from sol_pytorch.wrapper import SolModule

        return SolModule(program, model, graph)
