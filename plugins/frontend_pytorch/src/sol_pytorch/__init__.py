"""sol for PyTorch: ``from sol.pytorch import optimize``.

Importing this package (or its ``plugin`` module, which sol loads at startup) does not import
torch: the names below that need torch are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["optimize", "SolModule", "import_module", "supported_ops"]

_LAZY = {"SolModule": "sol_pytorch.wrapper", "import_module": "sol_pytorch.importer",
         "supported_ops": "sol_pytorch.aten"}


def optimize(model: Any, *example_inputs: Any, **options: Any) -> Any:
    """Optimize an ``nn.Module``; see :func:`sol.optimize`. Example inputs may be tensors or
    shapes (``x.size()``), one per forward argument."""
    from sol.api import optimize as _optimize

    return _optimize(model, *example_inputs, **options)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sol_pytorch' has no attribute {name!r}")
