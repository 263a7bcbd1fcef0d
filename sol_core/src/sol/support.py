"""What a device compiles, asked node by node while a frontend imports a model.

Why in core: an op a frontend converts can still be beyond the device (on x86: ``dense`` and
``conv2d`` in float64, which oneDNN does not take and no template generates; anything in
float16, for which the C-family generators have no type; an op the device declares unsupported).
The planner would refuse the whole model after the import. A frontend that asks these questions
while converting marks such nodes for its framework (core's cut, :mod:`sol.fallback`) like any
op it cannot convert: one warning, the rest compiled. Every frontend with a fallback asks the
same questions (TensorFlow, ONNX and MXNet each had a copy), so they are answered here, from the
registries the planner reads.

The answer is a prediction: core's passes may still rewrite a flagged node into something the
device has (then the framework runs a node sol could have compiled: slower, but right), and a
node it accepts that the planner still refuses is an error as before, never a wrong result.
:meth:`DeviceSupport.confirmed` asks again after the passes where that matters.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from sol.errors import SolError
from sol.ir import Graph, Node
from sol.ops.registry import LayerClass, registry

log = logging.getLogger("sol")

_LIBRARY = (LayerClass.COMPUTE_BOUND, LayerClass.PARAM_BOUND)
# No code of their own (an alias), or rewritten by core's passes before planning (an inference
# batch_norm becomes a multiply-add folded into the convolution before it; dropout at inference and
# identity go; stop_gradient is autodiff's marker).
NO_CODE = frozenset({"reshape", "identity", "stop_gradient", "dropout", "batch_norm"})
# Frontends emit lstm/gru; core's passes split each into a dense and the recurrence, which is what
# reaches the device (sol.passes.recurrent).
SPLIT = {"lstm": "lstm_recurrence", "gru": "gru_recurrence"}


def generated_dtypes() -> frozenset[str]:
    """The dtypes core's C-family code generators have a C type for."""
    from sol.lowering.base import CTYPES

    return frozenset(CTYPES)


class DeviceSupport:
    """What ``device`` cannot compile, node by node (see the module doc)."""

    def __init__(self, device: str) -> None:
        from sol.plugins import roles

        self.device = roles().devices.get(device)
        self.backends = roles().backends.for_device(self.device.name)
        self.caps = self.device.capabilities
        self.dtypes = generated_dtypes()

    def why_not(self, node: Node, graph: Graph) -> str | None:
        """None where the device compiles ``node``, else why not (for the fallback warning)."""
        if node.op in NO_CODE:
            return None
        name = self.device.name
        declared = self.caps.unsupported_ops.get(node.op)
        if declared is not None:
            return f"device {name!r} does not run {node.op}: {declared}"
        cls = registry.layer_class(node)
        if cls in _LIBRARY and any(b.claims(node, graph) for b in self.backends):
            return None
        if cls is LayerClass.ORDER_CONSTRAINED:
            op = SPLIT.get(node.op, node.op)
            return None if op in self.caps.recurrent_ops else f"device {name!r} has no {op}"
        dtypes = sorted({v.dtype for v in [*node.inputs, *node.outputs]})
        if node.op not in self.caps.fusible_ops:
            libs = ", ".join(b.name for b in self.backends) or "none"
            return (f"device {name!r} cannot compile {node.op} in {'/'.join(dtypes)} (no template, no library "
                    f"({libs}) takes it)")
        missing = [d for d in dtypes if d not in self.dtypes]
        if missing:
            return f"device {name!r} generates no code for {'/'.join(missing)}"
        return None

    def flagged(self, graph: Graph) -> list[tuple[Node, str]]:
        """The nodes of ``graph`` the device cannot compile, each with why, in graph order."""
        found = []
        for node in graph.nodes:
            why = self.why_not(node, graph)
            if why is not None:
                found.append((node, why))
        return found

    def confirmed(self, graph: Graph, fresh: Callable[[], Graph], training: bool) -> list[tuple[Node, str]]:
        """The nodes the device cannot compile once core's passes ran: asked of ``graph`` first
        (cheap; nearly always the answer is none); where that flags nodes, asked again of
        ``fresh()`` (the same model converted again: ``graph`` is what core compiles and must not
        see the passes twice) after the passes, which rewrite some ops into others the device has."""
        first = self.flagged(graph)
        if not first:
            return []
        from sol.plugins import roles

        probe = fresh()
        if not probe.outputs:  # ops the frontend cannot convert cut the graph: keep every result it computes
            users = probe.users()
            probe.outputs = [v for n in probe.nodes for v in n.outputs if not users.get(v)]
        try:
            roles().passes.run(probe, training=training)
        except SolError as exc:  # the passes refuse the probe: keep the first answer (more runs in the framework)
            log.debug("sol: passes on the support probe of %s failed (%s)", graph.name, exc)
            return first
        return self.flagged(probe)


def target_device(options: dict[str, Any]) -> str:
    """The device an import is for: ``options["device"]``, which ``optimize`` sets to the device
    it resolved; else (an import made outside ``optimize``) the selected one (``sol.device.set``)."""
    name = options.get("device")
    if isinstance(name, str) and name:
        return name
    from sol import device_select

    return device_select.get()
