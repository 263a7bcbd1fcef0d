"""A third-party device plugin written the way a vendor would, through sol's public hooks only.

Its "compiler" serializes the plan's group order; its "runtime" interprets the plan group by
group with the ops' NumPy references, keeping every cross-group tensor at its planned place in
one shared arena. A wrong memory plan (two live tensors sharing bytes) or a wrong group order
therefore gives wrong numbers, which the tests catch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pluggy

from sol.ir import Value
from sol.ops.registry import registry
from sol.planner.plan import GroupKind, Plan, Storage
from sol.program import Program
from sol.roles import Availability, Compiler, Device, DeviceCapabilities, Source

SOL_PLUGIN_API = ">=1.0,<2"
hookimpl = pluggy.HookimplMarker("sol")

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
    def identity(self) -> str:
        return "interp-1"

    def compile(self, source: Source, outdir: Path) -> Path:
        out = outdir / "plan.txt"
        out.write_text(source.text)
        return out


class InterpreterDevice(Device):
    name = "interp"

    def __init__(self, local_bytes: int = 1 << 20) -> None:
        self._caps = DeviceCapabilities(vector_width=1, fusible_ops=FUSIBLE, local_bytes=local_bytes,
                                        recurrent_ops=frozenset({"lstm_recurrence", "gru_recurrence"}))
        self.loads = 0

    def availability(self) -> Availability:
        return Availability(True, "NumPy interpreter (test device)")

    @property
    def capabilities(self) -> DeviceCapabilities:
        return self._caps

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
            for v, o in zip(node.outputs, registry.run_reference(node, [env[v] for v in node.inputs])):
                env[v] = o
        for v in group.outputs:
            place(v)[...] = env[v]
    return outputs


DEVICE = InterpreterDevice()


@hookimpl
def sol_register_devices(registry):  # type: ignore[no-untyped-def]
    registry.register(DEVICE)
