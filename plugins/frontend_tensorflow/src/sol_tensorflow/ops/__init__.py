"""TensorFlow ops -> sol IR: one small converter per TensorFlow op type.

Layout. TensorFlow images are NHWC; sol's IR is logical NCHW. Rather than transposing around
every convolution, a TensorFlow tensor of rank 4 may be held in either layout (or both): a
convolution or pooling reads and produces NCHW, element-wise ops between them run in whichever
layout their image operand already has (their small operands, a bias or a BatchNormalization
scale, are moved to NCHW once, at optimize time), and a TensorFlow-layout copy is made only where
an op needs one (a reshape, a softmax over channels, the model's output). So a Keras network of
conv / BN / activation / add / concat / pool layers has no transposes inside.

Every converter gets the :class:`Context` and the ``tf.Operation``; it returns one result per
op output: a :class:`~sol.ir.Value` in TensorFlow layout, an :class:`NCHW` value, or a NumPy
array (a value known at optimize time, e.g. shape arithmetic). The importer checks each result's
shape against the one TensorFlow inferred, so a wrong mapping fails at import, never at run time.

One module per op family, as core's :mod:`sol.ops`: :mod:`~sol_tensorflow.ops.elementwise`,
:mod:`~sol_tensorflow.ops.reduce`, :mod:`~sol_tensorflow.ops.layout`, :mod:`~sol_tensorflow.ops.window`
(pooling), :mod:`~sol_tensorflow.ops.linalg` (convolution, MatMul, einsum),
:mod:`~sol_tensorflow.ops.index` (gathers, comparisons, Select, selecting reductions) and
:mod:`~sol_tensorflow.ops.spatial` (transposed convolution, resizing); what they share (the
:class:`Context`, the table, :class:`Unsupported`) is in :mod:`~sol_tensorflow.ops.base`.
Importing this package registers every converter.
"""

from __future__ import annotations

from sol_tensorflow.ops import elementwise, index, layout, linalg, reduce, spatial, window
from sol_tensorflow.ops.base import (
    CONVERTERS,
    NCHW,
    TO_NCHW,
    TO_NHWC,
    Context,
    Converter,
    Entry,
    Result,
    Unsupported,
    attr,
    converts,
    dtype_name,
    out_type,
    same_padding,
    supported_ops,
    window_padding,
)

__all__ = ["CONVERTERS", "NCHW", "TO_NCHW", "TO_NHWC", "Context", "Converter", "Entry", "Result", "Unsupported",
           "attr", "converts", "dtype_name", "elementwise", "index", "layout", "linalg", "out_type", "reduce",
           "same_padding", "spatial", "supported_ops", "window", "window_padding"]
