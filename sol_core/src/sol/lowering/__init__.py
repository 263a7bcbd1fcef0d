"""Lowering of planned groups to C-family code, shared by every device that generates C-like
source.

- :mod:`sol.lowering.loops`: :class:`GroupLowering` turns a fused group into loops, offsets and
  per-op stages (index arithmetic done once, in Python);
- :mod:`sol.lowering.records`: the typed per-op records those stages carry to a device's templates;
- :mod:`sol.lowering.elementwise`: the element-wise rules (one C expression per op, for any dialect);
- :mod:`sol.lowering.cfamily`: :class:`Dialect` (how a device spells C) and :class:`CRenderer`
  (the scaffolding of a network renderer), which devices subclass;
- :mod:`sol.lowering.index`, :mod:`~sol.lowering.grad`, :mod:`~sol.lowering.spatial`: the loop
  lowerings of the index/selection ops, the backward ops and ``resize2d``;
- :mod:`sol.lowering.compute`: reference loops for the compute-bound ops (conv2d,
  conv_transpose2d, dense, matmul) as a backend any C-family device registers
  (:func:`reference_loops`), for what no vendor library of the device claims;
- ``templates/`` (package data): plain C op templates for every record of the generator, in a
  dialect's spelling, which a device's templates import as ``sol/ops.j2`` and ``sol/groups.j2``
  (:data:`TEMPLATES` says how).

Which rule or loop lowering an op takes is part of the op's definition
(:class:`sol.ops.registry.OpDef`: ``c_expr``, ``c_loops``), a plugin's ops included;
:data:`ELEMENTWISE` and :data:`OP_LOWERINGS` are read-only views of those fields by op name.
"""

from __future__ import annotations

from sol.lowering.base import CTYPES, contiguous_strides, ctype, linear, numel
from sol.lowering.cfamily import TEMPLATES, CRenderer, Dialect, OuterLoop, indent_lines, recurrent_op_names
from sol.lowering.compute import ReferenceLowering, fits_epilogue, reference_loops
from sol.lowering.elementwise import ELEMENTWISE, OpRule
from sol.lowering.loops import (
    OP_LOWERINGS,
    Access,
    GroupLowering,
    Loop,
    LoweredGroup,
    OpLowering,
    OpStage,
    PointwiseOp,
    PointwiseStage,
    reduce_runs,
)
from sol.lowering.records import BaseFields, OpRecord
from sol.lowering.shared_bodies import SharedBody, share_identical_bodies

__all__ = ["CTYPES", "ELEMENTWISE", "OP_LOWERINGS", "TEMPLATES", "Access", "BaseFields", "CRenderer", "Dialect",
           "GroupLowering", "Loop", "LoweredGroup", "OpLowering", "OpRecord", "OpRule", "OpStage", "OuterLoop",
           "PointwiseOp", "PointwiseStage", "ReferenceLowering", "contiguous_strides", "ctype", "fits_epilogue",
           "indent_lines", "linear", "numel", "recurrent_op_names", "reduce_runs", "reference_loops", "SharedBody",
           "share_identical_bodies"]
