"""Empty tensors (a dimension of size 0, e.g. batch 0): computed at compile time, never by kernels.

Why a pass: every value's shape is static, so which values hold no elements is known before
planning, and a kernel over zero elements has nothing to do (and the planner's per-iteration
arithmetic divides by loop extents). The frameworks return an empty result for an empty batch;
sol must too, for every device, so the rule lives once, in core:

* a node whose outputs are all empty is dropped; its outputs become empty constants (whoever
  reads them is handled by the next rules, an empty graph output is an empty array);
* a node that reads an empty value but produces elements (``sum`` over an empty axis is 0,
  ``mean`` is NaN, a weight gradient over an empty batch is 0, ``dense`` with no input features
  is its bias) computes what its NumPy reference computes: where every run-time operand is empty
  its result depends on no run-time data, so it is evaluated here once and becomes a constant
  (a parameter, placed once, where it also read parameters); a reduction without identity
  (``max`` over an empty axis) is an error, as in the frameworks;
* ``concat`` leaves out its empty operands;
* anything else reading an empty value together with run-time data that is not empty cannot be
  evaluated here and is reported (no framework op of sol's set does that except ``concat``).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

from sol.errors import SolError, UnsupportedOpError
from sol.ir import Graph, Node, Value, ValueKind

_STATIC = (ValueKind.PARAM, ValueKind.CONST)


def is_empty(v: Value) -> bool:
    return v.type.numel == 0


def fold_empty(graph: Graph) -> bool:
    """Apply the module's rules; True if the graph changed."""
    changed = False
    for node in list(graph.nodes):
        if node.outputs and all(is_empty(v) for v in node.outputs):
            for v in node.outputs:
                graph.replace_uses(v, graph.add_const(np.zeros(v.shape, v.dtype), hint="empty"))
            graph.nodes.remove(node)
            changed = True
        elif any(is_empty(v) for v in node.inputs):
            _reads_empty(graph, node)
            changed = True
    if changed:
        graph.prune_unused()
    return changed


def _reads_empty(graph: Graph, node: Node) -> None:
    """``node`` produces elements from at least one empty operand."""
    if node.op == "concat":
        kept = [v for v in node.inputs if not is_empty(v)]
        if len(kept) == 1:
            graph.replace_uses(node.output, kept[0])
            graph.nodes.remove(node)
        else:
            node.inputs = kept
        return
    runtime = [v for v in node.inputs if v.kind not in _STATIC and not is_empty(v)]
    if runtime:
        raise UnsupportedOpError(
            f"{node.describe()} reads an empty tensor ({_types(node)}) together with run-time data and "
            f"produces {', '.join(str(v.type) for v in node.outputs)}: sol cannot compile that", op=node.op,
            source=node.source)
    results = _evaluate(node)
    as_param = any(v.kind is ValueKind.PARAM for v in node.inputs)
    for out, data in zip(node.outputs, results):
        # np.asarray(order="C"), not np.ascontiguousarray: that makes a 0-d result (a sum of nothing) 1-d
        data = np.asarray(np.asarray(data).astype(out.dtype, copy=False).reshape(out.shape), order="C")
        new = graph.add_param(f"{node.op}:{out.name}", data) if as_param else graph.add_const(data, hint="k")
        graph.replace_uses(out, new)
    graph.nodes.remove(node)


def _evaluate(node: Node) -> list[Any]:
    """The node's NumPy reference on its operands (empty arrays for the empty ones)."""
    from sol.ops.registry import registry

    arrays = [np.zeros(v.shape, v.dtype) if is_empty(v) else v.data for v in node.inputs]
    try:
        # NumPy warns about a mean of nothing (NaN), which is the defined result here.
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)
            return registry.run_reference(node, arrays)  # type: ignore[arg-type]
    except SolError:
        raise
    except Exception as exc:  # noqa: BLE001 - the reference's own reason (e.g. max of nothing)
        raise SolError(f"{node.describe()} has no result for an empty input ({_types(node)}): {exc}") from exc


def _types(node: Node) -> str:
    return ", ".join(str(v.type) for v in node.inputs)
