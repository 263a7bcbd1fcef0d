"""Cut a traced TensorFlow graph into regions sol compiles and ops TensorFlow runs between them.

Why this shape (as :mod:`sol_pytorch.fallback` for PyTorch). Ops sol cannot convert (``Cumsum``,
``RFFT``, ``EagerPyFunc``, ...) should run in TensorFlow and everything else should still be
compiled, in as few programs as possible.

1. *Classify*: convert the whole graph once; an op that fails runs in TensorFlow, and its results
   enter sol as inputs where sol can hold them (a fully known shape, a dtype sol has). Where it
   cannot (a ``py_function`` result of unknown shape, a complex FFT), the ops reading them run in
   TensorFlow too. Ops known at optimize time (constants, shape arithmetic, variable reads) belong
   to no one: each side takes what it reads.
2. *Cut by epochs*: an op's epoch is the number of TensorFlow ops on the longest path that reaches
   it (a TensorFlow op takes the epoch of its inputs, a sol op one more than a TensorFlow input's).
   All sol ops of one epoch form one region, all TensorFlow ops of one epoch one TensorFlow step,
   and the run order is region 0, step 0, region 1, ...: a region reads only steps of lower epochs
   and a step only regions of its own epoch or lower, so no cycle can form, and the number of
   compiled programs is the smallest any cut can have along the longest chain of TensorFlow ops.
   A region that would only move data (reshape, transpose, ...) is not worth a compile and a host
   round trip: TensorFlow runs its ops as part of the step of its epoch.
3. *TensorFlow steps* are TensorFlow's own nodes: the step's ``NodeDef``s, with the constants and
   variable reads they need, imported (``tf.graph_util.import_graph_def``) into a
   ``tf.function`` whose arguments replace the tensors other steps or regions compute. So every
   attribute, function library entry and registered ``py_function`` is TensorFlow's own; nothing
   is re-implemented. Variables are the model's (their handles are captured), read at call time.

Values cross in TensorFlow's layout (NHWC images): a region's inputs are NumPy views of the
tensors, its outputs become tensors. Eagerly, each region is called directly; inside a
``tf.function`` or a Keras model each region is a ``tf.numpy_function`` with its static output
shapes set, and each step a call of its ``tf.function``.

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

from sol.ir import DTYPES, Graph, TensorType, ValueKind
from sol.program import Program
from sol_tensorflow.graphcall import numpy_call
from sol_tensorflow.importer import (
    OpConverter,
    SolFallbackWarning,
    Traced,
    effect,
    graph_ops,
    problem_lines,
    user_inputs,
)
from sol_tensorflow.ops import Entry, Unsupported, dtype_name

DATA_MOVEMENT = frozenset({"reshape", "transpose", "cast", "identity", "concat"})
"""Ops of a region TensorFlow runs as well as sol would (views or plain copies)."""

_FREE = frozenset({"Const", "Placeholder", "ReadVariableOp"})

__all__ = ["Part", "Runner", "SolFallbackWarning", "Split", "Step", "split"]


@dataclass
class Part:
    """A region sol compiles: ``sources[i]`` (TensorFlow tensor names) feed ``graph.inputs[i]``;
    ``results[j]`` is ``graph.outputs[j]``."""

    graph: Graph
    sources: list[str]
    results: list[str]


@dataclass
class Step:
    """TensorFlow ops run as one ``tf.function``: ``fn(*sources)`` returns ``results``."""

    fn: Any  # tf ConcreteFunction
    sources: list[str]
    results: list[str]
    ops: list[str]


@dataclass
class Split:
    """A model cut into compiled parts and TensorFlow steps, in run order."""

    name: str
    steps: list[Part | Step]
    inputs: list[str]  # the model's input tensors, in order
    outputs: list[str]  # the traced function's output tensors, in order
    statics: dict[str, np.ndarray]  # tensors known at optimize time that an output or step reads
    fallen: list[tuple[str, str, str]] = field(default_factory=list)  # (op type, op name, why)

    @property
    def parts(self) -> list[Part]:
        return [s for s in self.steps if isinstance(s, Part)]

    def op_types(self) -> list[str]:
        return sorted({t for t, _, _ in self.fallen})

    def warning(self) -> str:
        parts = len(self.parts)
        lines = problem_lines(self.fallen)
        return (f"sol cannot compile {len(self.fallen)} TensorFlow operation(s) of {self.name} "
                f"({', '.join(self.op_types())}); TensorFlow runs them and sol compiles the rest "
                f"({parts} part{'s' if parts != 1 else ''}):\n" + "\n".join(lines)
                + "\nsol_tensorflow.supported_ops() lists the TensorFlow ops sol compiles; pass fallback=False to "
                "make this an error.")


# --- 1. classify ------------------------------------------------------------------------------


@dataclass
class _Classes:
    on_tf: dict[str, str]  # op name -> why TensorFlow runs it
    statics: dict[str, np.ndarray]  # tensor name -> value known at optimize time
    free: set[str]  # op names of constants, captured placeholders, variable reads, static values


def _holdable(t: Any) -> bool:
    return t.shape.is_fully_defined() and dtype_name(t.dtype) in DTYPES


def _classify(traced: Traced, forced: dict[str, str]) -> _Classes:
    conv = OpConverter(traced, Graph(name=traced.name))
    conv.add_user_inputs()
    ctx = conv.ctx
    on_tf: dict[str, str] = {}
    free: set[str] = set()
    unheld: dict[str, str] = {}  # tensor name -> the op TensorFlow computes it with, sol cannot hold it
    for op in graph_ops(traced):
        if effect(op):
            on_tf[op.name] = "an effect (no outputs) that only TensorFlow can run"
            continue
        blocked = next((t for t in op.inputs if t.name in unheld), None)
        if op.name in forced:
            on_tf[op.name] = forced[op.name]
        elif blocked is not None:
            shape = blocked.shape.as_list() if blocked.shape.rank is not None else "[?]"
            on_tf[op.name] = f"reads {blocked.name} ({unheld[blocked.name]}), which sol cannot hold " \
                             f"({blocked.dtype.name}{shape})"
        else:
            try:
                conv.convert(op)
            except Unsupported as exc:
                on_tf[op.name] = str(exc)
        if op.name in on_tf:
            for t in op.outputs:
                if _holdable(t):  # sol reads it as an input of the region after it
                    ctx.env[t.name] = Entry(tf=conv.graph.add_input(t.name, TensorType(
                        tuple(int(d) for d in t.shape), dtype_name(t.dtype))))
                else:
                    unheld[t.name] = op.type
        elif op.type in _FREE or all(ctx.env[t.name].static is not None for t in op.outputs):
            free.add(op.name)
    statics = {name: e.static for name, e in ctx.env.items() if e.static is not None}
    return _Classes(on_tf, statics, free)


# --- 2. cut -----------------------------------------------------------------------------------


class _RegionError(Exception):
    """An op converted in the whole graph does not convert in its region (a converter that looks
    at neighbouring ops): TensorFlow runs it, and the graph is cut again."""

    def __init__(self, op: str, why: str) -> None:
        super().__init__(op, why)
        self.op, self.why = op, why


def split(traced: Traced, forced: dict[str, str] | None = None) -> Split:
    """Classify the traced graph's ops and cut it into parts and TensorFlow steps; ``forced``
    (op name -> why) are ops TensorFlow runs although sol converts them (the device cannot
    compile them: :mod:`sol_tensorflow.support`)."""
    forced = dict(forced or {})
    while True:  # each retry moves one more op to TensorFlow: it ends
        try:
            return _split(traced, forced)
        except _RegionError as exc:
            forced[exc.op] = f"{exc.why} (where it is cut from its neighbours)"


def _split(traced: Traced, forced: dict[str, str]) -> Split:
    fn = traced.fn
    found = _classify(traced, forced)
    ops = graph_ops(traced)
    by_name = {op.name: op for op in ops}
    position = {op.name: i for i, op in enumerate(ops)}
    inputs = [t.name for t in user_inputs(traced)]
    epoch: dict[str, int] = {}
    regions: dict[int, list[Any]] = defaultdict(list)
    tf_ops: dict[int, list[Any]] = defaultdict(list)
    for op in ops:
        if op.name in found.free or op.type == "Placeholder":
            epoch[op.name] = 0
            continue
        runs_tf = op.name in found.on_tf
        producers = [t.op.name for t in op.inputs if t.op.name in epoch] + \
                    [c.name for c in op.control_inputs if c.name in epoch and c.name in found.on_tf]
        epoch[op.name] = max((epoch[p] + (not runs_tf and p in found.on_tf) for p in producers), default=0)
        (tf_ops if runs_tf else regions)[epoch[op.name]].append(op)

    outputs = [t.name for t in fn.outputs]
    readers: dict[str, set[str]] = defaultdict(set)  # tensor name -> op names reading it
    for op in ops:
        for t in op.inputs:
            readers[t.name].add(op.name)
    steps: list[Part | Step] = []
    parts = 0
    for k in sorted(set(regions) | set(tf_ops)):
        on_tf = list(tf_ops.get(k, []))
        members = regions.get(k, [])
        if members:
            part = _region(traced, found, members, readers, outputs, f"{traced.name}_part{parts}")
            if {n.op for n in part.graph.nodes} <= DATA_MOVEMENT:
                on_tf = sorted(on_tf + members, key=lambda op: position[op.name])
            else:
                steps.append(part)
                parts += 1
        if on_tf:
            steps.append(_tf_step(traced, found, on_tf, by_name, readers, outputs, len(steps)))
    statics = {n: found.statics[n] for n in outputs if n in found.statics}
    fallen = [(by_name[n].type, n, why) for n, why in found.on_tf.items()]
    return Split(traced.name, steps, inputs, outputs, statics, fallen)


def _read_outside(op: Any, members: set[str], readers: dict[str, set[str]], outputs: list[str]) -> list[Any]:
    """``op``'s outputs that ops outside ``members`` or the model's outputs read."""
    return [t for t in op.outputs if t.name in outputs or readers[t.name] - members]


def _region(traced: Traced, found: _Classes, members: list[Any], readers: dict[str, set[str]],
            outputs: list[str], name: str) -> Part:
    conv = OpConverter(traced, Graph(name=name))
    ctx = conv.ctx
    for tname, value in found.statics.items():
        ctx.env[tname] = Entry(static=value)
    names = {op.name for op in members}
    sources: list[str] = []

    def need(t: Any) -> None:
        """Make ``t`` (read by a member) available: a variable read becomes a parameter of this
        region, anything else computed outside an input."""
        if t.name in ctx.env:
            return
        producer = t.op
        if producer.type == "Placeholder" and t.name in conv.captured:
            conv.convert(producer)  # a variable's resource (for ops reading it) or a captured value
            return
        if producer.type == "ReadVariableOp":
            conv.convert(producer.inputs[0].op)  # the captured resource placeholder
            conv.convert(producer)
            return
        ctx.env[t.name] = Entry(tf=conv.graph.add_input(f"in{len(sources)}", TensorType(
            tuple(int(d) for d in t.shape), dtype_name(t.dtype))))
        sources.append(t.name)

    for op in members:
        try:
            for t in op.inputs:
                if t.op.name not in names:
                    need(t)
            conv.convert(op)  # converted before, in the whole graph
        except Unsupported as exc:
            raise _RegionError(op.name, str(exc)) from None
    results = [t.name for op in members for t in _read_outside(op, names, readers, outputs)]
    for r in results:
        v = ctx.tf(conv_tensor(traced, r))
        # an output that is an input or a weight gets its own buffer
        conv.graph.outputs.append(v if v.kind is ValueKind.NODE else ctx.emit("identity", [v]))
    return Part(conv.graph, sources, results)


def conv_tensor(traced: Traced, name: str) -> Any:
    return traced.fn.graph.get_tensor_by_name(name)


# --- 3. TensorFlow steps ----------------------------------------------------------------------


def _tf_step(traced: Traced, found: _Classes, members: list[Any], by_name: dict[str, Any],
             readers: dict[str, set[str]], outputs: list[str], index: int) -> Step:
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
        if t.name in found.statics and t.name not in inputs:
            ph = placeholder(t)
            fixed[ph] = found.statics[t.name]
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
    """Runs a :class:`Split` with its compiled programs (one per part, in order)."""

    def __init__(self, cut: Split, programs: list[Program]) -> None:
        self.cut = cut
        self._programs = dict(zip(map(id, cut.parts), programs))

    @property
    def programs(self) -> list[Program]:
        return [self._programs[id(p)] for p in self.cut.parts]

    def __call__(self, inputs: list[Any], resolve: Callable[[int], Program] | None = None) -> list[Any]:
        """Run every step; inside a graph, part i runs ``resolve(i)`` when given (looked up when
        the graph runs), else the program compiled for it."""
        eager = tf.executing_eagerly() and all(hasattr(x, "numpy") or isinstance(x, np.ndarray) for x in inputs)
        env: dict[str, Any] = dict(zip(self.cut.inputs, inputs))
        index = {id(p): i for i, p in enumerate(self.cut.parts)}
        for step in self.cut.steps:
            if isinstance(step, Part):
                program = self._programs[id(step)]
                at = index[id(step)]
                run = program if eager or resolve is None else (lambda *a, at=at: resolve(at)(*a))
                outs = _run_part(program, run, [env[s] for s in step.sources], eager)
            else:
                outs = step.fn(*(tf.convert_to_tensor(env[s]) for s in step.sources))
            env.update(zip(step.results, outs))
        result = []
        for name in self.cut.outputs:
            if name in self.cut.statics:
                result.append(tf.constant(self.cut.statics[name]))
            elif name in self.cut.inputs:
                result.append(tf.identity(env[name]))  # the caller's tensor: not the same object
            else:
                result.append(tf.convert_to_tensor(env[name]))
        return result


def _run_part(program: Program, run: Callable[..., list[Any]], values: list[Any], eager: bool) -> list[Any]:
    if eager:
        return list(program(*(v.numpy() if hasattr(v, "numpy") else np.asarray(v) for v in values)))
    return numpy_call(run, values, [(tf.as_dtype(t.dtype), t.shape) for t in program.output_types], "sol_program")
