"""The PyTorch frontend role: which models it takes, how they are imported and wrapped."""

from __future__ import annotations

import sys
from typing import Any

from sol.plugin_api import Availability, Frontend, Graph, PartitionedProgram, Program, framework_availability


def availability() -> Availability:
    """PyTorch is importable here (looked up, not imported): ``sol plugins`` and ``from sol.pytorch
    import ...`` say the same."""
    return framework_availability("torch", "pip install torch", version_of="torch")


class PyTorchFrontend(Frontend):
    name = "pytorch"
    module = "sol_pytorch"

    def availability(self) -> Availability:
        return availability()

    def example_input(self, shape: tuple[int, ...], dtype: str) -> Any:
        import torch

        return torch.zeros(shape, dtype=getattr(torch, dtype))

    def accepts(self, model: Any) -> bool:
        torch = sys.modules.get("torch")  # no torch imported: no torch model can exist
        return torch is not None and isinstance(model, torch.nn.Module)

    def training_mode(self, model: Any) -> bool:
        return bool(model.training)

    def example_device(self, example_inputs: tuple[Any, ...]) -> tuple[int, int] | None:
        """Where the first example tensor on a GPU lives (a CUDA tensor: ``(2, index)``):
        ``optimize(model, x_on_gpu)`` then compiles for that GPU."""
        import torch

        for t in example_inputs:
            if isinstance(t, torch.Tensor) and t.is_cuda:  # meta tensors and shapes say nothing
                return tuple(t.__dlpack_device__())  # type: ignore[return-value]
        return None

    def import_graph(self, model: Any, example_inputs: tuple[Any, ...], options: dict[str, Any]) -> Graph:
        """The whole model's graph; where PyTorch must run some operations (``fallback``), the
        first compiled part, with the rest recorded for :meth:`wrap` to compile."""
        from sol_pytorch.variants import import_model, max_variants

        max_variants(options)  # a wrong value fails before any tracing or compiling
        return import_model(model, example_inputs, options)

    def wrap(self, program: Program | PartitionedProgram, model: Any, graph: Graph) -> Any:
        from sol_pytorch.wrapper import SolModule

        return SolModule(program, model, graph)
