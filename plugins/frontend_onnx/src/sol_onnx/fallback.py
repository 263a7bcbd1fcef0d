"""ONNX Runtime's side of a model sol compiles in parts: the steps it runs between them.

Core cuts the marked graph (:mod:`sol.fallback`: the fewest parts, the run order); each of its
framework steps becomes a small ONNX model here: the step's own ``NodeProto``s (every attribute,
subgraph and domain as the user's model has it), the tensors it reads from sol or from earlier
steps as inputs, the weights and known arrays it reads as initializers, and as outputs what
later steps or the model's outputs read. ONNX Runtime runs that model; nothing is re-implemented.

ONNX Runtime is needed only here: a model sol compiles whole never imports it, and one that needs
it without it installed gets an error saying so (``pip install sol-frontend-onnx[fallback]``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper, numpy_helper

from sol.plugin_api import FrameworkStep, PartitionedProgram, Program, SolError, TensorType, call_of
from sol_onnx.importer import Imported, OnnxCall, node_reads
from sol_onnx.loader import initializer_array


def require_onnxruntime(name: str) -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise SolError(f"{name} has ONNX nodes sol cannot compile, which run in ONNX Runtime, and onnxruntime is not "
                       f"installed ({exc}): pip install 'sol-frontend-onnx[fallback]' (or pass fallback=False "
                       f"to see which nodes)") from exc
    return onnxruntime


@dataclass
class OrtStep:
    """One framework step as an ONNX Runtime session: fed ``sources`` (tensor names), gives ``results``."""

    session: Any
    sources: list[str]
    results: list[str]


@dataclass
class OrtRunner:
    """Runs a :class:`PartitionedProgram` whose framework steps are ONNX Runtime sessions."""

    program: PartitionedProgram
    steps: dict[int, OrtStep]  # id(core's step) -> its session
    names: dict[Any, str] = field(default_factory=dict)  # sol value of a framework node -> its tensor name

    @property
    def programs(self) -> list[Program]:
        return self.program.programs

    def __call__(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        return self.program.run(list(arrays), _Call(self, {}))


@dataclass
class _Call:
    """One call's :class:`~sol.fallback.StepRunner`; ``env`` holds what only ONNX Runtime's steps read."""

    runner: OrtRunner
    env: dict[str, np.ndarray]

    def sol(self, index: int, program: Program, values: list[Any]) -> list[np.ndarray]:
        return list(program(*values))

    def framework(self, step: FrameworkStep, values: list[Any]) -> list[np.ndarray]:
        names, env = self.runner.names, self.env
        for v, x in zip(step.inputs, values):
            env[names[v]] = x
        ort = self.runner.steps[id(step)]
        outs = ort.session.run(ort.results, {s: env[s] for s in ort.sources})
        env.update(zip(ort.results, outs))
        return [env[names[v]] for v in step.outputs]


def runner_for(imported: Imported, program: PartitionedProgram, threads: int | None = None) -> OrtRunner:
    """Build one ONNX Runtime session per framework step of ``program``."""
    ort = require_onnxruntime(imported.loaded.name)
    runner = OrtRunner(program, {})
    steps = [s for s in program.steps if isinstance(s, FrameworkStep)]
    for step in steps:
        for node in step.nodes:
            call: OnnxCall = call_of(node).handle
            runner.names.update(zip(node.inputs, call.reads))
            runner.names.update(zip(node.outputs, call.writes))
    held = {name: v.type for v, name in runner.names.items()}
    later: set[str] = set()  # tensors read by a later framework step or the model's outputs
    for step in reversed(steps):
        model, sources, results = _step_model(imported, step, later, held, len(runner.steps))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        # ONNX Runtime's pool threads spin after each run by default; between the steps sol's
        # OpenMP threads need those cores (GoogLeNet with 9 MaxPool nodes in ONNX Runtime, 10
        # parts, batch 1: 390 ms a call with spinning, 22 ms without; ONNX Runtime alone 16 ms).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        runner.steps[id(step)] = OrtStep(session, sources, results)
        for node in step.nodes:
            later.update(node_reads(call_of(node).handle.node))
    return runner


def _step_model(imported: Imported, step: FrameworkStep, later: set[str], held: dict[str, TensorType],
                index: int) -> tuple[Any, list[str], list[str]]:
    """The step's nodes as an ONNX model: (model, the tensors it is fed, the tensors it returns)."""
    loaded = imported.loaded
    protos = [call_of(n).handle.node for n in step.nodes]
    produced = {o for p in protos for o in p.output if o}
    inits = {t.name: t for t in loaded.model.graph.initializer}
    graph = onnx.GraphProto(name=f"sol_fallback_{index}")
    graph.node.extend(protos)
    sources: list[str] = []
    for p in protos:
        for name in node_reads(p):
            if name in produced or name in sources or any(i.name == name for i in graph.initializer):
                continue
            if name in imported.statics:  # a weight or an array known when optimizing
                array = imported.statics[name] if name not in inits else initializer_array(inits[name], loaded.base_dir)
                graph.initializer.append(numpy_helper.from_array(np.asarray(array), name))
            else:
                sources.append(name)
    known = {**dict(imported.specs), **held}
    for name in sources:
        if name in known:
            t = known[name]
            graph.input.append(helper.make_tensor_value_info(name, _elem(t.dtype), t.shape))
        elif name in imported.types:
            graph.input.append(helper.make_value_info(name, imported.types[name]))
        else:
            raise SolError(f"{loaded.name}: ONNX Runtime's step reads {name!r}, whose type sol does not know")
    wanted = {call_of(n).handle.writes for n in step.nodes}
    results = [o for p in protos for o in p.output if o and (o in later or any(o in w for w in wanted))]
    for name in results:
        graph.output.append(helper.make_value_info(name, imported.types[name]) if name in imported.types
                            else helper.make_empty_tensor_value_info(name))
    model = helper.make_model(graph, opset_imports=list(loaded.model.opset_import), ir_version=loaded.model.ir_version)
    model.functions.extend(loaded.model.functions)
    return model, sources, results


def _elem(dtype: str) -> int:
    return int(helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))
