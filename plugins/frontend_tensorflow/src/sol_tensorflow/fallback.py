"""TensorFlow's side of a model sol compiles in parts: the steps TensorFlow runs between them.

Why this shape. Ops sol cannot convert (``Cumsum``, ``RFFT``, ``EagerPyFunc``, ...) run in
TensorFlow and everything else is still compiled, in as few programs as possible. The importer
converts the whole traced graph once and marks each such op as a framework node
(:func:`sol_tensorflow.importer.convert` with ``mark``; an op reading a result sol cannot hold,
a ``py_function`` result of unknown shape or a complex FFT, runs in TensorFlow too). Core cuts
that graph into parts and TensorFlow steps, compiles the parts and runs the steps in order
(:mod:`sol.fallback`: the epoch cut, and why it gives the fewest parts); this module only makes
and runs TensorFlow's steps.

*TensorFlow steps* are TensorFlow's own nodes: the step's ``NodeDef``s, with the constants and
variable reads they need, imported (``tf.graph_util.import_graph_def``) into a ``tf.function``
whose arguments replace the tensors other steps or parts compute. So every attribute, function
library entry and registered ``py_function`` is TensorFlow's own; nothing is re-implemented.
Variables are the model's (their handles are captured), read at call time.

Values cross in TensorFlow's layout (NHWC images): a part's inputs are NumPy views of the
tensors, its outputs become tensors. Eagerly, each part is called directly; inside a
``tf.function`` or a Keras model each part is a ``tf.numpy_function`` with its static output
shapes set, and each step a call of its ``tf.function``. Values only TensorFlow holds pass
between its steps by tensor name, on this side.

Weights: the compiled parts hold the variables' values as they were when compiled (as a model sol
compiles whole does), while TensorFlow's steps read their variables when they run; a change to
the weights is noticed at the next call, which compiles the parts again
(:mod:`sol_tensorflow.weights`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf
from tensorflow.core.framework import graph_pb2

from sol.plugin_api import (
    FrameworkStep,
    Graph,
    PartitionedProgram,
    Program,
    SolFallbackWarning,
    SolStep,
    Value,
    call_of,
)
from sol_tensorflow.graphcall import numpy_call
from sol_tensorflow.importer import WORDING, TFCall, Traced, graph_ops, user_inputs

__all__ = ["MarkedModel", "Part", "Runner", "SolFallbackWarning", "Split", "Step", "runner_for"]


@dataclass
class MarkedModel:
    """What the import found (``graph.meta``): the ops TensorFlow runs, the tensors known at
    optimize time, and the model outputs sol computes (the marked graph's outputs, in order)."""

    name: str
    fallen: list[tuple[str, str, str]]  # (op type, op name, why)
    statics: dict[str, np.ndarray]
    sol_outputs: list[str]

    def op_types(self) -> list[str]:
        return sorted({t for t, _, _ in self.fallen})

    def warning(self, parts: int) -> str:
        return WORDING.warning(self.name, self.fallen, parts)


@dataclass
class Part:
    """A step sol runs (core's :class:`~sol.fallback.SolStep`): compiled, or run on the host
    where it only moves data."""

    graph: Graph
    compiled: bool


@dataclass
class Step:
    """TensorFlow ops run as one ``tf.function``: ``fn(*sources)`` returns ``results``."""

    fn: Any  # tf ConcreteFunction
    sources: list[str]
    results: list[str]
    ops: list[str]


@dataclass
class Split:
    """A model cut into sol's parts and TensorFlow steps, in run order."""

    name: str
    steps: list[Part | Step]
    inputs: list[str]  # the model's input tensors, in order
    outputs: list[str]  # the traced function's output tensors, in order
    statics: dict[str, np.ndarray]  # tensors known at optimize time
    fallen: list[tuple[str, str, str]] = field(default_factory=list)  # (op type, op name, why)

    @property
    def parts(self) -> list[Part]:
        """The compiled parts."""
        return [s for s in self.steps if isinstance(s, Part) and s.compiled]

    def op_types(self) -> list[str]:
        return sorted({t for t, _, _ in self.fallen})


def runner_for(traced: Traced, marked: MarkedModel, program: PartitionedProgram) -> Runner:
    """The runner of ``program`` (core's cut of the graph the import marked)."""
    ops = graph_ops(traced)
    readers: dict[str, set[str]] = defaultdict(set)  # tensor name -> op names reading it
    for op in ops:
        for t in op.inputs:
            readers[t.name].add(op.name)
    outputs = [t.name for t in traced.fn.outputs]
    steps: list[Part | Step] = []
    for step in program.steps:
        if isinstance(step, SolStep):
            steps.append(Part(step.graph, step.compiled))
        else:
            members = [_call(n).op for n in step.nodes]
            steps.append(_tf_step(traced, marked.statics, members, readers, outputs, len(steps)))
    cut = Split(marked.name, steps, [t.name for t in user_inputs(traced)], outputs,
                {n: marked.statics[n] for n in outputs if n in marked.statics}, marked.fallen)
    return Runner(cut, program, marked.sol_outputs)


def _call(node: Any) -> TFCall:
    handle: TFCall = call_of(node).handle
    return handle


def _read_outside(op: Any, members: set[str], readers: dict[str, set[str]], outputs: list[str]) -> list[Any]:
    """``op``'s outputs that ops outside ``members`` or the model's outputs read."""
    return [t for t in op.outputs if t.name in outputs or readers[t.name] - members]


def conv_tensor(traced: Traced, name: str) -> Any:
    return traced.fn.graph.get_tensor_by_name(name)


# --- 3. TensorFlow steps ----------------------------------------------------------------------


def _tf_step(traced: Traced, statics: dict[str, np.ndarray], members: list[Any], readers: dict[str, set[str]],
             outputs: list[str], index: int) -> Step:
    """The ops ``members`` as a ``tf.function`` over the tensors they read from outside."""
    fn = traced.fn
    full = fn.graph.as_graph_def()
    nodes = {n.name: n for n in full.node}
    captured = {internal.name: ext for ext, internal in fn.graph.captures}
    sub = graph_pb2.GraphDef()
    sub.versions.CopyFrom(full.versions)
    sub.library.CopyFrom(full.library)
    names = {op.name for op in members}
    inputs = {t.name for t in user_inputs(traced)}
    included: set[str] = set()
    feeds: dict[str, str] = {}  # outside tensor name -> placeholder in ``sub``
    reads: dict[str, str] = {}  # ReadVariableOp name -> its copy in ``sub``
    sources: list[str] = []
    fixed: dict[str, Any] = {}  # placeholder -> value known now (a constant, a captured handle)

    def placeholder(t: Any) -> str:
        if t.name not in feeds:
            node = sub.node.add()
            node.name = f"sol_fallback_input_{len(feeds)}"
            node.op = "Placeholder"
            node.attr["dtype"].type = t.dtype.as_datatype_enum
            feeds[t.name] = node.name
        return feeds[t.name]

    def include(op: Any) -> Any:
        if op.name not in included:
            included.add(op.name)
            node = sub.node.add()
            node.CopyFrom(nodes[op.name])
            _drop_colocation(node)
            return node
        return next(n for n in sub.node if n.name == op.name)

    def source(t: Any) -> str:
        """How the step reads ``t``: the name of a node in ``sub`` producing it."""
        producer = t.op
        if producer.name in names:
            return t.name if t.value_index else producer.name
        if producer.type == "Const":
            node = include(producer)
            del node.input[:]  # control dependencies on ops outside the step
            return producer.name
        if producer.type == "Placeholder" and t.name in captured:
            ph = placeholder(t)
            fixed[ph] = captured[t.name]  # a variable's handle (read at call time) or a captured tensor
            return ph
        if producer.type == "ReadVariableOp":  # read when the step runs, as TensorFlow would
            if producer.name not in reads:
                rv = sub.node.add()
                rv.CopyFrom(nodes[producer.name])
                rv.name = reads[producer.name] = f"sol_fallback_read_{len(reads)}"
                _drop_colocation(rv)
                del rv.input[:]
                rv.input.append(source(producer.inputs[0]))
            return reads[producer.name]
        if t.name in statics and t.name not in inputs:
            ph = placeholder(t)
            fixed[ph] = statics[t.name]
            return ph
        ph = placeholder(t)
        if t.name not in sources:
            sources.append(t.name)
        return ph

    for op in members:
        include(op)
    for op in members:
        node = include(op)
        data_inputs = [source(t) for t in op.inputs]
        controls = [f"^{c.name}" for c in op.control_inputs if c.name in names]
        del node.input[:]
        node.input.extend(data_inputs + controls)
    results = [t.name for op in members for t in _read_outside(op, names, readers, outputs)]
    specs = [tf.TensorSpec(conv_tensor(traced, s).shape, conv_tensor(traced, s).dtype) for s in sources]
    shapes = [conv_tensor(traced, r).shape for r in results]
    source_phs = [feeds[s] for s in sources]

    def run(*xs: Any) -> list[Any]:
        mapping = {f"{ph}:0": x for ph, x in zip(source_phs, xs)}
        graph = tf.compat.v1.get_default_graph()  # the FuncGraph being traced: it captures eager tensors
        mapping.update({f"{ph}:0": tf.constant(v) if isinstance(v, np.ndarray) else graph.capture(v)
                        for ph, v in fixed.items()})
        outs = tf.graph_util.import_graph_def(sub, input_map=mapping, return_elements=results,
                                              name=f"sol_fallback_{index}")
        for o, shape in zip(outs, shapes):
            o.set_shape(shape)
        return list(outs)

    concrete = tf.function(run, autograph=False).get_concrete_function(*specs)
    return Step(concrete, sources, results, [op.name for op in members])


def _drop_colocation(node: Any) -> None:
    """Colocation constraints name ops that may not be part of the step (importing would fail on
    them); placement is TensorFlow's default either way."""
    if "_class" in node.attr:
        del node.attr["_class"]


# --- running ----------------------------------------------------------------------------------


class Runner:
    """Runs a model compiled in parts: core runs the steps in order (:meth:`PartitionedProgram.run`),
    this side holds TensorFlow's values by tensor name and runs TensorFlow's steps."""

    def __init__(self, cut: Split, program: PartitionedProgram, sol_outputs: list[str]) -> None:
        self.cut = cut
        self.program = program
        self._sol_outputs = {name: i for i, name in enumerate(sol_outputs)}
        self._steps = {id(s): t for s, t in zip(program.steps, cut.steps) if isinstance(t, Step)}
        self._names: dict[Value, str] = {}  # a framework node's sol values -> the tensors they stand for
        for step in program.steps:
            for node in step.nodes if isinstance(step, FrameworkStep) else []:
                self._names.update(zip(node.inputs, _call(node).reads))
                self._names.update(zip(node.outputs, _call(node).writes))

    @property
    def programs(self) -> list[Program]:
        return self.program.programs

    def __call__(self, inputs: list[Any], resolve: Callable[[int], Program] | None = None) -> list[Any]:
        """Run every step; inside a graph, sol step i runs ``resolve(i)`` when given (looked up
        when the graph runs), else the program compiled for it."""
        eager = tf.executing_eagerly() and all(hasattr(x, "numpy") or isinstance(x, np.ndarray) for x in inputs)
        env: dict[str, Any] = dict(zip(self.cut.inputs, inputs))
        results = self.program.run(inputs, _TFSteps(self, env, eager, resolve))
        out = []
        for name in self.cut.outputs:
            if name in self.cut.statics:
                out.append(tf.constant(self.cut.statics[name]))
            elif name in self._sol_outputs:
                out.append(tf.convert_to_tensor(results[self._sol_outputs[name]]))
            elif name in self.cut.inputs:
                out.append(tf.identity(env[name]))  # the caller's tensor: not the same object
            else:
                out.append(tf.convert_to_tensor(env[name]))
        return out


@dataclass
class _TFSteps:
    """One call's :class:`~sol.fallback.StepRunner`."""

    runner: Runner
    env: dict[str, Any]
    eager: bool
    resolve: Callable[[int], Program] | None

    def sol(self, index: int, program: Program, values: list[Any]) -> list[Any]:
        if self.eager:
            return list(program(*(v.numpy() if hasattr(v, "numpy") else np.asarray(v) for v in values)))
        resolve = self.resolve
        run = program if resolve is None else (lambda *a: resolve(index)(*a))
        return numpy_call(run, values, [(tf.as_dtype(t.dtype), t.shape) for t in program.output_types], "sol_program")

    def framework(self, step: FrameworkStep, values: list[Any]) -> list[Any]:
        names, env = self.runner._names, self.env
        for v, x in zip(step.inputs, values):
            env[names[v]] = x
        tf_step = self.runner._steps[id(step)]
        outs = tf_step.fn(*(tf.convert_to_tensor(env[s]) for s in tf_step.sources))
        env.update(zip(tf_step.results, outs))
        return [env[names[v]] for v in step.outputs]
