"""Which converted nodes the target device cannot compile, asked while importing.

Why: an op sol converts can still be beyond the device (on x86: ``dense`` and ``conv2d`` in
float64, which oneDNN does not take and no template generates). Asking the planner's questions
node by node while converting (a library backend claims it, the device's templates render it, the
device does not declare it unsupported) lets MXNet run those nodes like any other node sol cannot
convert, instead of the planner refusing the whole model after the import. The answer is a
prediction from the registries the planner reads; a node it accepts that the planner still
refuses is an error as before, never a wrong result.
"""

from __future__ import annotations

from typing import Any

from sol.plugin_api import Graph, LayerClass, Node, op_registry, plugin_roles, selected_device

_LIBRARY = (LayerClass.COMPUTE_BOUND, LayerClass.PARAM_BOUND)
# No code of their own, or rewritten by core's passes before planning.
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
            return f"device {name!r} cannot compile {node.op} in {dtypes}"
        return None


def target_device(options: dict[str, Any]) -> str:
    """The device the import is for: ``options["device"]`` where given, else the selected one."""
    name = options.get("device")
    return name if isinstance(name, str) and name else str(selected_device())
