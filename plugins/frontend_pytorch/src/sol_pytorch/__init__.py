"""sol for PyTorch: ``from sol.pytorch import optimize``."""

from __future__ import annotations

from typing import Any

__all__ = ["optimize"]


def optimize(model: Any, *example_inputs: Any, **options: Any) -> Any:
    """Optimize an ``nn.Module``; see :func:`sol.optimize`. Example inputs may be tensors or
    shapes (``x.size()``), one per forward argument."""
    from sol.api import optimize as _optimize

    return _optimize(model, *example_inputs, **options)
