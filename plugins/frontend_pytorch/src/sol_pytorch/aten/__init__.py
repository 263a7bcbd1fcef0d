"""ATen operators -> sol IR: one small converter per ATen overload.

The importer hands each converter the node's arguments bound to the overload's schema (so
defaults and keyword arguments look the same), with graph tensors already replaced by sol
:class:`~sol.ir.Value`s and Python scalars left as they are. A converter returns the sol value
(or a tuple of them for multi-output overloads). The node's fake tensor (``meta["val"]``) is the
ground truth for shapes and dtypes: converters read the expected result type from it instead of
re-deriving PyTorch's rules (type promotion, ``view(-1)``, ``squeeze``), and the importer checks
every result against it, so a wrong mapping fails at import and never gives a wrong number.

Converters are keyed by the overload's name (``aten.add.Tensor``) so that this table, error
messages and :func:`supported_ops` all speak the name users see in ``torch.export`` graphs.

One module per op family, as core's :mod:`sol.ops`: :mod:`~sol_pytorch.aten.elementwise`,
:mod:`~sol_pytorch.aten.reduce` (reductions, softmax, normalizations), :mod:`~sol_pytorch.aten.layout`
(views, permutations, concatenation, slicing, padding), :mod:`~sol_pytorch.aten.window` (pooling),
:mod:`~sol_pytorch.aten.linalg` (convolution, linear, matmul, attention), :mod:`~sol_pytorch.aten.index`
(embeddings, comparisons, masks, selecting reductions), :mod:`~sol_pytorch.aten.recurrent` (LSTM, GRU),
:mod:`~sol_pytorch.aten.spatial` (transposed convolution, upsampling),
:mod:`~sol_pytorch.aten.grid_sample` (grid_sample: bilinear, nearest, bicubic sampling at a grid),
:mod:`~sol_pytorch.aten.scatter` (scatter, index_add, put, take, masked_scatter, embedding_bag),
:mod:`~sol_pytorch.aten.sort` (sort, topk, median, searchsorted, cummax, cumprod),
:mod:`~sol_pytorch.aten.special` (torch.special: gamma family, Bessel functions, polynomials),
:mod:`~sol_pytorch.aten.strided` (as_strided and resize: ops on the memory layout the trace records),
:mod:`~sol_pytorch.aten.segment` (nonzero_static, _segment_reduce: run-time positions in static shapes) and
:mod:`~sol_pytorch.aten.training` (training-mode BatchNorm, dropout masks); what they share (the
:class:`Emitter`, the table, :class:`Unsupported`) is in :mod:`~sol_pytorch.aten.base`. Importing
this package registers every converter.
"""

from __future__ import annotations

from sol_pytorch.aten import (
    elementwise,
    factor,
    grid_sample,
    index,
    layout,
    linalg,
    recurrent,
    reduce,
    scatter,
    segment,
    sort,
    spatial,
    special,
    strided,
    training,
    window,
)
from sol_pytorch.aten.base import (
    CONVERTERS,
    WEIGHT_VALUES,
    Args,
    Converter,
    Emitter,
    Result,
    Unsupported,
    converts,
    dtype_name,
    pair,
    supported_ops,
    symmetric,
    tensor_type,
)

__all__ = ["CONVERTERS", "WEIGHT_VALUES", "Args", "Converter", "Emitter", "Result", "Unsupported", "converts",
           "dtype_name", "elementwise", "factor", "grid_sample", "index", "layout", "linalg", "pair", "recurrent",
           "reduce", "scatter", "segment", "sort", "spatial", "special", "strided", "supported_ops", "symmetric",
           "tensor_type", "training", "window"]
