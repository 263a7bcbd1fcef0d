"""sol for MXNet: ``from sol.mxnet import optimize``.

Importing this package (or its ``plugin`` module, which sol loads at startup) does not import
MXNet: the names below that need it are loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"  # the one place the version is written: pyproject.toml reads it from here

__all__ = ["optimize", "SolBlock", "supported_ops", "__version__"]

_LAZY = {"SolBlock": "sol_mxnet.wrapper", "supported_ops": "sol_mxnet.ops"}


def optimize(model: Any, *example_inputs: Any, **options: Any) -> Any:
    """Optimize a Gluon ``HybridBlock`` (also a ``SymbolBlock``, e.g. from ``SymbolBlock.imports``),
    a ``Symbol`` (with ``params=``) or a bound ``Module``; see :func:`sol.optimize`. Returns a
    :class:`~sol_mxnet.wrapper.SolBlock` (a ``HybridBlock`` whose parameters are the original ones).

    ``example_inputs``: one per block input: an NDArray, a NumPy array or a shape (float32).

    Options of this frontend:

    - ``params`` (Symbols only): ``{name: NDArray}`` or ``(arg_params, aux_params)`` as
      ``mx.model.load_checkpoint`` returns them; ``data_names``: the Symbol's data inputs (default:
      the arguments without a parameter, labels of loss heads left out).
    - ``fallback`` (default True): MXNet runs the operators sol cannot compile, with one warning
      naming them and their nodes; ``fallback=False`` raises :class:`sol.errors.UnsupportedOpError`.
    - ``dynamic`` (default True): a call with other input shapes compiles a variant for them;
      ``dynamic=False`` makes another shape an ``MXNetError``.
    - ``live_weights`` (default False): inference programs read the parameters at every call
      instead of holding them compiled in. Held weights are faster (BatchNorm folded, weights
      prepacked once) and follow every change MXNet makes (each call checks MXNet's write
      counters; a changed weight rebuilds the program from the compile cache, 0.1-0.6 s on the
      model zoo); ``live_weights=True`` is for weights written behind MXNet's back (through a
      ``to_dlpack_for_write`` view kept and written later) or changed before nearly every call.
    """
    from sol.plugin_api import optimize as _optimize

    return _optimize(model, *example_inputs, **options)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from sol.plugin_api import require_framework
        from sol_mxnet.frontend import availability

        require_framework(availability(), f"sol.mxnet.{name}", "MXNet")
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'sol_mxnet' has no attribute {name!r}")
