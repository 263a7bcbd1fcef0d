"""Which converted nodes the target device cannot compile, asked while importing.

Why: an op sol converts can still be beyond the device (on x86: ``dense`` and ``conv2d`` in
float64, which oneDNN does not take and no template generates). Core's planner would refuse the
whole model after the import; asking the planner's questions node by node while converting (a
library backend claims it, the device's templates render it, the device does not declare it
unsupported) lets ONNX Runtime run those nodes like any other node sol cannot compile.

The answer is a prediction from the registries the planner reads, on the node as converted
(core's passes may still rewrite it into something the device has: then ONNX Runtime runs a node
sol could have compiled, slower but right); a node it accepts that the planner still refuses is
an error as before, never a wrong result. With ``fallback=False`` nothing is asked: the planner's
own error names the op and the device. Which device: the one ``optimize`` resolved, which core
passes as ``options["device"]``; an import made elsewhere asks the selected one
(``sol.device.set``), and the session checks the cut against the device a program was compiled
for (:func:`sol_onnx.session.SolInferenceSession.from_compiled`).
"""

from __future__ import annotations

from typing import Any

from sol.plugin_api import Graph, LayerClass, Node, op_registry, plugin_roles, selected_device

_LIBRARY = (LayerClass.COMPUTE_BOUND, LayerClass.PARAM_BOUND)
# No code of their own, or rewritten by core's inference passes before planning (an inference
# batch_norm becomes a multiply-add, folded into the convolution before it where there is one).
_NO_CODE = frozenset({"reshape", "identity", "stop_gradient", "dropout", "batch_norm"})


class DeviceSupport:
    """What ``device`` cannot compile, node by node."""

    def __init__(self, device: str) -> None:
        roles = plugin_roles()
        self.device = roles.devices.get(device)
        self.backends = roles.backends.for_device(self.device.name)
        self.caps = self.device.capabilities

    def why_not(self, node: Node, graph: Graph) -> str | None:
        """None where the device compiles ``node``, else why not."""
        if node.op in _NO_CODE:
            return None
        name = self.device.name
        declared = self.caps.unsupported_ops.get(node.op)
        if declared is not None:
            return f"device {name!r} does not run {node.op}: {declared}"
        cls = op_registry.layer_class(node)
        if cls in _LIBRARY and any(b.claims(node, graph) for b in self.backends):
            return None
        if cls is LayerClass.ORDER_CONSTRAINED:
            return None if node.op in self.caps.recurrent_ops else f"device {name!r} has no {node.op}"
        if node.op not in self.caps.fusible_ops:
            dtypes = "/".join(sorted({v.dtype for v in [*node.inputs, *node.outputs]}))
            libs = ", ".join(b.name for b in self.backends) or "none"
            return f"device {name!r} cannot compile {node.op} in {dtypes} (no template, no library ({libs}) takes it)"
        return None


def target_device(options: dict[str, Any]) -> str:
    """The device the import is for: ``options["device"]`` where given, else the selected one."""
    name = options.get("device")
    return name if isinstance(name, str) and name else str(selected_device())
