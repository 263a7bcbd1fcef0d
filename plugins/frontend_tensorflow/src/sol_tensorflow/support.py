"""Which converted nodes the target device cannot compile, asked before core plans the graph:
core's :class:`~sol.plugin_api.DeviceSupport` (the planner's questions, node by node, confirmed
after core's passes), plus how TensorFlow names the op a flagged node came from.

Which device: the one ``optimize`` resolved, which core passes as ``options["device"]``
(:func:`target_device`); a later variant compiled for another device asks that device and
imports again where the answers differ.
"""

from __future__ import annotations

from collections.abc import Sequence

from sol.plugin_api import DeviceSupport as CoreDeviceSupport
from sol.plugin_api import Node, target_device

__all__ = ["DeviceSupport", "floating_dtypes", "problem_of", "target_device"]


class DeviceSupport(CoreDeviceSupport):
    """Core's answers, grouped by the TensorFlow op each flagged node came from."""

    def problems(self, flagged: Sequence[tuple[Node, str]]) -> list[tuple[str, str, str]]:
        """(op type, op name, why) of each TensorFlow op with a flagged node (the nodes'
        ``source``, ``"name (type)"``, says which op they came from)."""
        found: dict[str, tuple[str, str, str]] = {}
        for node, why in flagged:
            problem = problem_of(node, why)
            found.setdefault(problem[1], problem)  # an op's first node that fails says why
        return list(found.values())


def problem_of(node: Node, why: str) -> tuple[str, str, str]:
    """(op type, op name, why) for a node converted from a TensorFlow op."""
    name, _, kind = (node.source or "").rpartition(" (")
    if not name:
        return node.op, node.source or node.name, why
    return kind.rstrip(")"), name, why


def floating_dtypes(nodes: Sequence[Node]) -> set[str]:
    """The floating-point dtypes other than float32 that ``nodes`` read or write."""
    return {v.dtype for n in nodes for v in [*n.inputs, *n.outputs]
            if v.dtype.startswith(("float", "bfloat")) and v.dtype != "float32"}
