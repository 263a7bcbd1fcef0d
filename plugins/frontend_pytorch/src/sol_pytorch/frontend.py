"""The PyTorch frontend role: which models it takes, how they are imported and wrapped."""

from __future__ import annotations

import importlib.util
import sys
from importlib import metadata
from typing import Any

from sol.ir import Graph
from sol.program import Program
from sol.roles import Availability, Frontend

MISSING = "torch is not installed (pip install torch)"
"""Why this frontend is unavailable without torch: ``sol plugins`` and ``from sol.pytorch import
SolModule`` say the same."""


def availability() -> Availability:
    """PyTorch is importable here (looked up, not imported: importing torch takes seconds)."""
    if not _findable("torch"):
        return Availability(False, MISSING)
    try:
        return Availability(True, f"torch {metadata.version('torch')}")
    except metadata.PackageNotFoundError:  # importable without metadata (e.g. a source tree on the path)
        return Availability(True)


def _findable(name: str) -> bool:
    """Importable without importing it. An imported module counts even without a ``__spec__``
    (find_spec raises then); one blocked with ``sys.modules[name] = None`` does not."""
    if sys.modules.get(name) is not None:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


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

    def import_graph(self, model: Any, example_inputs: tuple[Any, ...], options: dict[str, Any]) -> Graph:
        """The whole model's graph; where PyTorch must run some operations (``fallback``), the
        first compiled part, with the rest recorded for :meth:`wrap` to compile."""
        from sol_pytorch.variants import import_model, max_variants

        max_variants(options)  # a wrong value fails before any tracing or compiling
        return import_model(model, example_inputs, options)

    def wrap(self, program: Program, model: Any, graph: Graph) -> Any:
        from sol_pytorch.wrapper import SolModule

        return SolModule(program, model, graph)
