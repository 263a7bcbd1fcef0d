"""sol for TensorFlow: ``from sol.tensorflow import optimize``.

Importing this package (or its ``plugin`` module, which sol loads at startup) does not import
TensorFlow: the names below that need it are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["optimize", "SolKerasModel", "supported_ops"]

# supported_ops from the module that imports every converter module (each registers its ops)
_LAZY = {"SolKerasModel": "sol_tensorflow.wrapper", "supported_ops": "sol_tensorflow.ops"}


def optimize(model: Any, *example_inputs: Any, **options: Any) -> Any:
    """Optimize a Keras model (Sequential, functional or subclassed) or a ``tf.function``; see
    :func:`sol.optimize`. Returns a :class:`SolKerasModel` (a ``keras.layers.Layer``).

    ``example_inputs``: one per model input: a ``tf.Tensor``, a NumPy array or a shape (float32).
    A ``tf.function`` with a fully defined ``input_signature`` needs none; one whose signature
    leaves dimensions open (``(None, 4)``) takes an example for them.

    Options of this frontend:

    - ``fallback`` (default True): if the model uses TensorFlow operations sol cannot compile (or
      the device cannot compile in their dtype, e.g. float64 ``Dense`` on x86, float16), TensorFlow
      runs those and sol compiles the rest, with one warning listing them (see
      :mod:`sol_tensorflow.fallback`); ``fallback=False`` raises
      :class:`sol.errors.UnsupportedOpError` listing every such op and its Keras layer instead.
    - ``dynamic`` (default True): a call with other shapes than the example's compiles a variant
      for them; ``dynamic=False`` makes another shape a ``ValueError``.
    - ``check_weights`` (default True): every inference call checks that the variables still hold
      the values the program was compiled with, and compiles again when they changed (about 5-10 us
      per variable); ``check_weights=False`` reads them once, at optimize time.
    """
    from sol.plugin_api import optimize as _optimize

    return _optimize(model, *example_inputs, **options)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        _require_framework(name)
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sol_tensorflow' has no attribute {name!r}")


def _require_framework(name: str) -> None:
    from sol.plugin_api import require_framework
    from sol_tensorflow.frontend import availability

    require_framework(availability(), f"sol.tensorflow.{name}", "TensorFlow")
