"""Which converted nodes the target device cannot compile, asked before core plans the graph.

Why here: ops sol converts can still be beyond the device (on x86: ``dense`` and ``conv2d`` in
float64, which oneDNN does not take and no template generates; anything in float16, for which
the C code generators have no type). Core's planner would raise at the first such node, after
the import, with fallback on. Asking the same questions the planner asks (does a library backend
claim the node, can the device's templates fuse it, is it a recurrence the device renders, does
generated code have its dtypes) for every node at import time lets TensorFlow run those ops like
any other op sol cannot compile: one warning, the rest compiled, never an error with fallback on.

The answer is a prediction from the same registries the planner reads, taken after core's passes
where it matters (:meth:`DeviceSupport.confirmed`); a node it accepts that the planner still
refuses raises as before (never a wrong result). Which device: the one ``optimize`` resolved,
which core passes as ``options["device"]`` (:func:`target_device`); a later variant compiled for
another device asks that device and imports again where the answers differ.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from sol.plugin_api import Graph, LayerClass, Node, SolError
from sol.plugin_api import op_registry as registry

log = logging.getLogger("sol")
_LIBRARY = (LayerClass.COMPUTE_BOUND, LayerClass.PARAM_BOUND)


def generated_dtypes() -> frozenset[str]:
    """The dtypes core's C-family code generators have a C type for."""
    from sol.plugin_api import CTYPES

    return frozenset(CTYPES)


class DeviceSupport:
    """What ``device`` cannot compile of a converted graph (see the module doc)."""

    def __init__(self, device: str) -> None:
        from sol.plugin_api import plugin_roles as roles

        self.device = roles().devices.get(device)
        self.backends = roles().backends.for_device(self.device.name)
        self.caps = self.device.capabilities
        self.dtypes = generated_dtypes()

    def flagged(self, graph: Graph) -> list[tuple[Node, str]]:
        """The nodes of ``graph`` the device cannot compile, with why."""
        found = []
        for node in graph.nodes:
            why = self._why(node, graph)
            if why is not None:
                found.append((node, why))
        return found

    def confirmed(self, graph: Graph, fresh: Callable[[], Graph], training: bool) -> list[tuple[Node, str]]:
        """The nodes the device cannot compile once core's passes ran: asked of ``graph`` first,
        node by node (cheap, and nearly always the answer is none); where that flags nodes, asked
        again of ``fresh()`` (the same graph converted again: ``graph`` is what core compiles and
        must not see the passes twice) after the passes, which rewrite some ops into others the
        device has (an inference ``batch_norm`` into multiplies and adds folded into the
        convolution before it)."""
        first = self.flagged(graph)
        if not first:
            return []
        from sol.plugin_api import plugin_roles as roles

        probe = fresh()
        if not probe.outputs:  # ops sol cannot convert cut the graph: keep every result it computes
            users = probe.users()
            probe.outputs = [v for n in probe.nodes for v in n.outputs if not users.get(v)]
        try:
            roles().passes.run(probe, training=training)
        except SolError as exc:  # the passes refuse the probe: keep the first answer (more runs in TensorFlow)
            log.debug("sol: passes on the support probe of %s failed (%s)", graph.name, exc)
            return first
        return self.flagged(probe)

    def problems(self, flagged: Sequence[tuple[Node, str]]) -> list[tuple[str, str, str]]:
        """(op type, op name, why) of each TensorFlow op with a flagged node (the nodes'
        ``source``, ``"name (type)"``, says which op they came from)."""
        found: dict[str, tuple[str, str, str]] = {}
        for node, why in flagged:
            problem = problem_of(node, why)
            found.setdefault(problem[1], problem)  # an op's first node that fails says why
        return list(found.values())

    def _why(self, node: Node, graph: Graph) -> str | None:
        if node.op in ("reshape", "stop_gradient"):
            return None  # an alias, or gone before planning (canonicalization): no code
        cls = registry.layer_class(node)
        if cls in _LIBRARY and any(b.claims(node, graph) for b in self.backends):
            return None
        name = self.device.name
        if cls is LayerClass.ORDER_CONSTRAINED:
            return None if node.op in self.caps.recurrent_ops else f"device {name!r} has no {node.op}"
        dtypes = sorted({v.dtype for v in [*node.inputs, *node.outputs]})
        if node.op not in self.caps.fusible_ops:
            libs = ", ".join(b.name for b in self.backends) or "none"
            return (f"device {name!r} cannot compile {node.op} in {'/'.join(dtypes)} (no template, no library "
                    f"({libs}) takes it)")
        missing = [d for d in dtypes if d not in self.dtypes]
        if missing:
            return f"device {name!r} generates no code for {'/'.join(missing)}"
        return None


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


def target_device(options: dict[str, Any]) -> str:
    """The device ``optimize`` compiles for: ``options["device"]``, which core sets; else (an
    import called outside ``optimize``) the default device (``sol.device.set``)."""
    name = options.get("device")
    if isinstance(name, str) and name:
        return name
    from sol.plugin_api import selected_device

    return selected_device()
