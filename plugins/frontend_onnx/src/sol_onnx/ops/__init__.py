"""ONNX operators -> sol IR: one small converter per ONNX operator type (default domain).

One module per family, as core's :mod:`sol.ops`: :mod:`~sol_onnx.ops.elementwise`,
:mod:`~sol_onnx.ops.linalg` (convolutions, Gemm, MatMul, normalizations),
:mod:`~sol_onnx.ops.window` (pooling), :mod:`~sol_onnx.ops.layout` (shapes, data movement, values
known when optimizing) and :mod:`~sol_onnx.ops.reduce`; what they share is in
:mod:`~sol_onnx.ops.base`. Importing this package registers every converter.
"""

from __future__ import annotations

from sol_onnx.ops import elementwise, layout, linalg, reduce, window
from sol_onnx.ops.base import (
    CONVERTERS,
    ONNX_DTYPES,
    Context,
    Converter,
    Entry,
    Result,
    Unsupported,
    attr,
    converts,
    supported_ops,
)

__all__ = ["CONVERTERS", "ONNX_DTYPES", "Context", "Converter", "Entry", "Result", "Unsupported", "attr",
           "converts", "elementwise", "layout", "linalg", "reduce", "supported_ops", "window"]
