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
    """Optimize an ``nn.Module``; see :func:`sol.optimize`. Returns a :class:`SolModule`.

    ``example_inputs``: one per forward argument: a tensor, a shape (``x.size()``), or a
    None/bool/int/float argument (a constant of the compiled graph; each value gets its own
    compiled variant).

    Options of this frontend:

    - ``fallback`` (default True): operations sol cannot compile run in PyTorch between the parts
      sol compiles, with one warning listing them; ``fallback=False`` raises
      :class:`sol.errors.UnsupportedOpError` naming each op and its source line instead.
    - ``dynamic`` (default True): a call with other shapes than the example's (batch 3 after
      batch 8, another image size) compiles a variant for them once and keeps it, logging a
      message on ``logging.getLogger("sol")``; ``dynamic=False`` makes another shape a
      ``ValueError``. Another rank or dtype is always an error naming expected and given.
    - ``max_variants`` (default 8): compiled variants of each kind (inference, training) the
      module keeps; beyond that the least recently used one is dropped (logged) and compiled
      again when needed, from the compile cache.
    - ``trace_cache`` (default True): a whole inference graph imported once is kept in sol's cache
      and reused by later imports of the same model code, attributes and argument shapes, in any
      process, with the model's current weights, instead of tracing it again
      (:mod:`sol_pytorch.trace_cache`); ``trace_cache=False`` or ``SOL_TRACE_CACHE=0`` trace every time.

    ``torch.compile(model, backend="sol")`` uses the same machinery (:mod:`sol_pytorch.dynamo`).
    """
    from sol.plugin_api import optimize as _optimize

    return _optimize(model, *example_inputs, **options)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        _require_framework(name)
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sol_pytorch' has no attribute {name!r}")


def _require_framework(name: str) -> None:
    from sol.plugin_api import require_framework
    from sol_pytorch.frontend import availability

    require_framework(availability(), f"sol.pytorch.{name}", "PyTorch")
