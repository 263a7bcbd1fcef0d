"""MXNet operators -> sol IR: one small converter per MXNet operator (the names of
``Symbol.tojson()``), one module per family as core's :mod:`sol.ops`:
:mod:`~sol_mxnet.ops.elementwise`, :mod:`~sol_mxnet.ops.linalg` (convolutions, dense,
normalizations, Embedding), :mod:`~sol_mxnet.ops.window` (pooling, upsampling),
:mod:`~sol_mxnet.ops.layout`, :mod:`~sol_mxnet.ops.reduce` and :mod:`~sol_mxnet.ops.recurrent`
(RNN). Importing this package registers every converter."""

from __future__ import annotations

from sol_mxnet.ops import elementwise, layout, linalg, recurrent, reduce, window
from sol_mxnet.ops.base import CONVERTERS, Attrs, Context, Entry, Key, MXNode, Unsupported, supported_ops

__all__ = ["CONVERTERS", "Attrs", "Context", "Entry", "Key", "MXNode", "Unsupported", "elementwise", "layout",
           "linalg", "recurrent", "reduce", "supported_ops", "window"]
