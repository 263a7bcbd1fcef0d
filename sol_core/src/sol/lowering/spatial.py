"""Loop lowering of ``resize2d`` for C-family templates (see :mod:`sol.lowering`).

The source rows and columns of every output pixel, and the bilinear weights, are computed here
once with :func:`sol.ops.spatial.resize_table` (PyTorch's float32 rule, also the NumPy
reference's) and handed to the templates as constant tables: a device then only gathers and
blends, and can never pick a different neighbour than the reference (re-deriving the index in C
would let the compiler contract ``scale * (o + 0.5) - 0.5`` into one FMA and round differently).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from sol.ir import Node
from sol.lowering.base import numel
from sol.lowering.records import BaseFields, Resize2dRecord
from sol.ops.spatial import resize_tables

if TYPE_CHECKING:
    from sol.lowering.loops import GroupLowering


def _floats(a: np.ndarray) -> list[str]:
    """C float literals; the repr of the float64 holding a float32 parses back to that float32."""
    return [f"{float(v)!r}f" for v in a.astype(np.float32)]


def lower(low: GroupLowering, node: Node, depth: int, base: BaseFields) -> tuple[str, Resize2dRecord]:
    x, y = node.inputs[0], node.outputs[0]
    h, w = x.shape[-2:]
    rows, cols = resize_tables(node, (h, w))
    rec = Resize2dRecord(**base, planes=numel(x.shape[depth:-2]), H=h, W=w, OH=y.shape[-2], OW=y.shape[-1],
                         bilinear=node.attrs["mode"] == "bilinear", h0=rows.i0.tolist(), w0=cols.i0.tolist())
    if rec.bilinear:
        rec.h1, rec.w1 = rows.i1.tolist(), cols.i1.tolist()
        rec.lh0, rec.lh1, rec.lw0, rec.lw1 = _floats(rows.l0), _floats(rows.l1), _floats(cols.l0), _floats(cols.l1)
    return "resize2d", rec
