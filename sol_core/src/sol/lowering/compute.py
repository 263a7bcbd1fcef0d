"""Reference loops for the compute-bound ops (``conv2d``, ``conv_transpose2d``, ``dense``,
``matmul``): correct, plain loop nests every C-family device gets without a vendor library.

The planner runs a compute- or parameter-bound op only where a library backend claims it, so
the loops come as a backend: :func:`reference_loops` gives one for a device, claiming every
floating-point op whose :class:`~sol.ops.registry.OpDef` has reference loops (``c_reference``,
a plugin's ops included) at the lowest priority, so any vendor library that claims the op wins.
Each claimed op arrives as a LIBRARY group with no epilogue; :meth:`CRenderer.library
<sol.lowering.CRenderer.library>` hands its templates the op's typed record
(:mod:`sol.lowering.records`: :class:`ConvRecord`, :class:`DenseRecord`, :class:`MatmulRecord`)
and the shipped templates (``sol/ops.j2``) render it in the device's dialect.

The records hold sizes and pointer names only, no loop structure: a device maps them to its
own loops (a CUDA device: one thread per output element over a grid) by overriding the macro.
The shipped loops give every output element one accumulator in double precision (the ops'
NumPy references sum in float64) and skip taps in the padding: they contribute nothing, not
``0 * w``, which is NaN for an infinite weight.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from sol.errors import SolError
from sol.ir import Graph, Node, Value
from sol.lowering.base import ctype, numel
from sol.lowering.records import BaseFields, ConvRecord, DenseRecord, MatmulRecord, OpRecord
from sol.ops.registry import CReferenceFn, registry
from sol.planner.plan import Group
from sol.roles import Backend

# fn(buffer names, node, base record fields) -> (op macro name, record); OpDef.c_reference.
ReferenceLowering = CReferenceFn

FLOAT_DTYPES = ("float32", "float64")


def _bias(sym: Callable[[Value], str], node: Node) -> str:
    return sym(node.inputs[2]) if len(node.inputs) > 2 else ""


def conv(sym: Callable[[Value], str], node: Node, base: BaseFields) -> tuple[str, OpRecord]:
    """conv2d, weight (O, C/g, kh, kw), and conv_transpose2d, weight (C, O/g, kh, kw): x (N, C,
    H, W) -> y (N, O, OH, OW); the transposed output padding is part of OH/OW."""
    a = node.attrs
    (pt, pb), (pl, pr) = a["padding"]
    n, c, h, wd = node.inputs[0].shape
    _, o, oh, ow = node.outputs[0].shape
    kh, kw = node.inputs[1].shape[2:]
    g = a["groups"]
    return node.op, ConvRecord(**base, w=sym(node.inputs[1]), b=_bias(sym, node), N=n, C=c, H=h, W=wd, O=o, OH=oh,
                               OW=ow, kh=kh, kw=kw, CG=c // g, OG=o // g, pt=pt, pb=pb, pl=pl, pr=pr,
                               sh=a["stride"][0], sw=a["stride"][1], dh=a["dilation"][0], dw=a["dilation"][1])


def dense(sym: Callable[[Value], str], node: Node, base: BaseFields) -> tuple[str, OpRecord]:
    x, w = node.inputs[0], node.inputs[1]
    return "dense", DenseRecord(**base, w=sym(w), b=_bias(sym, node), R=numel(x.shape[:-1]), N=w.shape[0],
                                K=w.shape[1])


def matmul(sym: Callable[[Value], str], node: Node, base: BaseFields) -> tuple[str, OpRecord]:
    x, w, y = node.inputs[0], node.inputs[1], node.outputs[0]
    batch = y.shape[:-2]
    return "matmul", MatmulRecord(**base, w=sym(w), M=x.shape[-2], K=x.shape[-1], N=w.shape[-1], B=numel(batch),
                                  x_off=batch_offsets(x.shape, batch), w_off=batch_offsets(w.shape, batch))


def batch_offsets(shape: tuple[int, ...], batch: tuple[int, ...]) -> list[int]:
    """Element offset of each of ``batch``'s matrices (row-major) in an operand of ``shape``,
    whose batch dims broadcast against ``batch`` (a dim of 1, or a missing one, repeats)."""
    own = shape[:-2]
    index = np.arange(numel(own)).reshape((1,) * (len(batch) - len(own)) + own)
    return [int(i) for i in np.broadcast_to(index, batch).reshape(-1) * numel(shape[-2:])]


def reference_record(g: Group, sym: Callable[[Value], str], who: str = "c") -> tuple[str, OpRecord]:
    """(macro, record) of LIBRARY group ``g`` through its anchor's reference loops; refused where
    the op has none or the group has an epilogue (which the reference loops would drop)."""
    node = g.anchor
    lowering = registry.get(node.op, node).c_reference
    if lowering is None:
        raise SolError(f"{who}: no library binding for {node.op!r} (backend {g.backend!r}) and no reference loops")
    if g.epilogue:
        raise SolError(f"{who}: the reference loops of {node.op!r} take no epilogue, but backend {g.backend!r} "
                       f"fused {[n.op for n in g.epilogue]} into it: render that backend's groups yourself")
    x, y = node.inputs[0], node.outputs[0]
    return lowering(sym, node, BaseFields(op=node.op, T=ctype(y), x=sym(x), y=sym(y)))


def has_reference_loops(node: Node) -> bool:
    """Whether the reference loops run ``node``: its op has them and it computes in floating point."""
    opdef = registry.get(node.op, node)
    return opdef.c_reference is not None and all(v.dtype in FLOAT_DTYPES for v in (*node.inputs, *node.outputs))


def fits_epilogue(anchor: Node, node: Node, elementwise_ops: frozenset[str]) -> bool:
    """Whether a generated compute kernel can apply ``node`` to each output element of ``anchor``
    before storing it (a device's own conv/dense kernels absorbing their epilogue: ``absorbs``):
    an element-wise op the device's dialect renders (``elementwise_ops``), with the anchor's
    output shape and dtype, every other operand broadcasting against that shape."""
    from sol.ops.registry import LayerClass

    if node.op not in elementwise_ops or registry.layer_class(node) is not LayerClass.ELEMENTWISE:
        return False
    out = anchor.output
    if node.output.shape != out.shape or node.output.dtype != out.dtype:
        return False
    for v in node.inputs:
        padded = (1,) * (len(out.shape) - v.type.rank) + v.shape
        if len(padded) != len(out.shape) or any(d not in (1, o) for d, o in zip(padded, out.shape)):
            return False
    return True


class ReferenceLoops(Backend):
    """The reference loops as a library backend of one device (see the module docstring)."""

    priority = -1000  # any vendor library claiming the op wins

    def __init__(self, device: str) -> None:
        self.name = f"{device}-reference-loops"
        self.device = device

    def claims(self, node: Node, graph: Graph) -> bool:
        return has_reference_loops(node)


def reference_loops(device: str) -> Backend:
    """A backend for ``device`` that claims every compute- and parameter-bound op with reference
    loops (register it in ``sol_register_backends``): those ops then reach the device's renderer
    as LIBRARY groups, which :meth:`CRenderer.library <sol.lowering.CRenderer.library>` renders
    by default."""
    return ReferenceLoops(device)
