"""sol for ONNX: ``sol.onnx.optimize("model.onnx")`` (or a ``ModelProto``) returns a session with
ONNX Runtime's ``InferenceSession`` surface; :mod:`sol_onnx.backend` implements ONNX's backend API.

Importing this package (or its ``plugin`` module, which sol loads at startup) does not import
``onnx``: the names below that need it are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"  # the one place the version is written: pyproject.toml reads it from here

__all__ = ["optimize", "InferenceSession", "SolInferenceSession", "supported_ops", "__version__"]

_LAZY = {"SolInferenceSession": "sol_onnx.session", "supported_ops": "sol_onnx.ops"}


def optimize(model: Any, *example_inputs: Any, **options: Any) -> Any:
    """Compile an ONNX model (a path to a ``.onnx`` file or an ``onnx.ModelProto``); see
    :func:`sol.optimize`. Returns a :class:`~sol_onnx.session.SolInferenceSession`.

    ``example_inputs``: none (the model's declared input shapes, an open dimension taken as 1),
    or one per model input: a NumPy array or a shape. A call with other shapes compiles for
    those, once (``dynamic=False``: a ``ValueError`` instead).

    ``fallback`` (default True): ONNX nodes sol cannot compile run in ONNX Runtime (the
    ``[fallback]`` extra) between the compiled parts, with one warning listing them;
    ``fallback=False`` raises :class:`sol.errors.UnsupportedOpError` naming every such node,
    its op type and its name.
    """
    from sol.plugin_api import optimize as _optimize

    return _optimize(model, *example_inputs, **options)


def InferenceSession(path_or_model: Any, sess_options: Any = None, providers: Any = None,  # noqa: N802
                     **options: Any) -> Any:
    """``onnxruntime.InferenceSession``'s signature: ``sess_options`` and ``providers`` are
    accepted and ignored (sol picks its device: ``sol.device.set`` or ``device=``)."""
    return optimize(path_or_model, **options)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sol_onnx' has no attribute {name!r}")
