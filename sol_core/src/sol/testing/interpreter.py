"""The reference device: a device plugin written through the plugin API only, whose runtime
interprets the plan group by group with the ops' NumPy references.

Its "compiler" writes the plan's group order to a text file (so the compile cache and the
render -> compile -> load path are exercised as for any device); its "runtime" keeps every
cross-group tensor at its planned place in one arena per call. A wrong memory plan (two live
tensors sharing bytes) or a wrong group order therefore gives wrong numbers, which the kit
catches: passing the kit on this device checks core's planner and the kit itself.

It is not registered by default (no entry point): nobody wants a NumPy interpreter picked as
their device. The kit registers it when asked (``--sol-device interp``, and by default next to
the installed devices) with :func:`sol.testing.reference_device`; a test registers it with
``sol.plugins.register(sol.testing.interpreter, "interp")``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from sol.plugin_api import (
    Availability,
    Compiler,
    Device,
    DeviceCapabilities,
    DeviceRegistry,
    GroupKind,
    LayerClass,
    Plan,
    Program,
    Source,
    Storage,
    Value,
    hookimpl,
    op_registry,
    recurrent_op_names,
)

SOL_PLUGIN_API = ">=1.0,<2"
NAME = "interp"

# The ops the interpreter runs in fused groups when it is built with an explicit list (core's
# planner tests pin the grouping with it). The registered device claims every op (below).
FUSIBLE = frozenset({
    "relu", "sigmoid", "tanh", "exp", "log", "sqrt", "rsqrt", "neg", "abs", "silu", "hardswish",
    "hardsigmoid", "erf", "gelu", "leaky_relu", "clamp", "add", "sub", "mul", "div", "maximum",
    "minimum", "pow", "batch_norm", "dropout", "identity", "cast", "max_pool2d", "avg_pool2d",
    "adaptive_avg_pool2d", "softmax", "log_softmax", "mean", "sum", "concat", "transpose", "pad", "slice",
    "conv2d", "dense", "matmul",
    "gather", "eq", "ne", "lt", "le", "gt", "ge", "logical_not", "logical_and", "logical_or", "where",
    "max", "min", "argmax", "argmin",
    "conv_transpose2d", "resize2d",
})


class TextCompiler(Compiler):
    """Writes the rendered plan listing: the interpreter's "artifact"."""

    def identity(self) -> str:
        return "interp-1"

    def compile(self, source: Source, outdir: Path) -> Path:
        out = outdir / "plan.txt"
        out.write_text(source.text)
        return out


def every_registered_op() -> frozenset[str]:
    """Every op in the registry except the execution-order-constrained ones (those run as
    RECURRENT groups): the NumPy reference runs any op anywhere."""
    return frozenset(name for name in op_registry.names()
                     if op_registry.get(name).layer_class is not LayerClass.ORDER_CONSTRAINED)


class InterpreterDevice(Device):
    """``fusible``: the ops it runs in fused groups; None (the registered device): every
    registered op, read from the registry when the planner first asks."""

    name = NAME

    def __init__(self, local_bytes: int = 1 << 20, fusible: frozenset[str] | None = FUSIBLE,
                 unsupported: dict[str, str] | None = None) -> None:
        self._local_bytes = local_bytes
        self._unsupported = dict(unsupported or {})
        # Fixed capabilities for an explicit op list (tests swap ``_caps`` to pin the planner's
        # choices); None: derived from the registry at each plan.
        self._caps = None if fusible is None else self._capabilities(fusible)
        self.loads = 0

    def availability(self) -> Availability:
        return Availability(True, "NumPy interpreter (test device)")

    @property
    def capabilities(self) -> DeviceCapabilities:
        if self._caps is not None:
            return self._caps
        # The registry's ops now: a test may have registered more since the last plan.
        return self._capabilities(self._all_ops(tuple(op_registry.names())))

    def _capabilities(self, fusible: frozenset[str]) -> DeviceCapabilities:
        return DeviceCapabilities(vector_width=1, fusible_ops=fusible, local_bytes=self._local_bytes,
                                  recurrent_ops=recurrent_op_names(), unsupported_ops=self._unsupported)

    @staticmethod
    @functools.lru_cache(maxsize=4)
    def _all_ops(names: tuple[str, ...]) -> frozenset[str]:
        return every_registered_op()

    @property
    def compiler(self) -> Compiler:
        return TextCompiler()

    def render(self, plan: Plan) -> Source:
        lines = [f"{g.label} {g.kind.value} {' '.join(n.op for n in g.nodes)}" for g in plan.groups]
        return Source({"plan.txt": "\n".join(lines)}, entry="plan.txt")

    def load(self, artifact: Path, plan: Plan, source: Source) -> Program:
        self.loads += 1
        g = plan.graph
        return Program(g.name, self.name, [v.name for v in g.inputs], [v.type for v in g.inputs],
                       [v.type for v in g.outputs], lambda xs: run_plan(plan, xs))


def run_plan(plan: Plan, inputs: list[np.ndarray]) -> list[np.ndarray]:
    """Run ``plan`` group by group with the NumPy references. Each call has its own arena and
    outputs: one program may be called from several threads at once."""
    g = plan.graph
    mem = plan.memory
    arena = np.zeros(mem.arena_bytes, np.uint8)
    outputs = [np.empty(v.shape, v.dtype) for v in g.outputs]

    def place(v: Value) -> np.ndarray:
        owner, slot = mem.resolve(v)
        if slot.storage is Storage.INPUT:
            buf = inputs[slot.index]
        elif slot.storage is Storage.OUTPUT:
            buf = outputs[slot.index]
        elif slot.storage in (Storage.PARAM, Storage.CONST):
            buf = owner.data  # type: ignore[assignment]
        else:
            buf = arena[slot.index: slot.index + owner.type.nbytes].view(owner.dtype)
        return buf.reshape(v.shape)

    for group in plan.groups:
        if group.kind is GroupKind.ALIAS:
            continue
        env: dict[Value, Any] = {v: place(v).copy() for v in group.inputs}
        for node in group.nodes:
            for v, o in zip(node.outputs, op_registry.run_reference(node, [env[v] for v in node.inputs])):
                env[v] = o
        for v in group.outputs:
            place(v)[...] = env[v]
    return outputs


DEVICE = InterpreterDevice(fusible=None)


@hookimpl
def sol_register_devices(registry: DeviceRegistry) -> None:
    registry.register(DEVICE)
