"""Training through sol for Keras models and ``tf.function``s: gradients for ``tf.GradientTape``
and Keras ``fit``, Keras' training-mode layers, variables read at every call.

How a call runs. A *training variant* is the model traced again by TensorFlow, in the mode of the
call (``training=True``: Keras' training-mode layers; ``False``: inference layers, but still
differentiable), and converted with **every variable as a run-time input** of the graph (not a
constant placed once): an optimizer step changes the variables, and the next call reads them, with
no recompile. Core autodiff (:func:`sol.autodiff.compile_training`) differentiates it with
respect to the trainable variables and the floating-point inputs; the compiled forward and
backward run inside one ``tf.custom_gradient`` function whose inputs are the call's tensors *and
the variables' current values* (read with TensorFlow's own ``ReadVariableOp``), so the tape
records the reads and gradients reach the model's own ``tf.Variable``s and the inputs, in eager
mode, in ``tf.function`` and in Keras ``fit`` alike (inside a graph, each program runs through
``tf.numpy_function`` with its static shapes set).

Keras' training-mode semantics come from the traced graph itself, as Keras 3 writes it:

* ``BatchNormalization(training=True)`` normalizes with the batch's mean and its *biased*
  variance (``moments``: the mean of squared differences) and assigns
  ``moving = moving * momentum + batch * (1 - momentum)`` to ``moving_mean`` and
  ``moving_variance`` (the biased batch variance too). sol computes both new values in the
  compiled forward (they are extra outputs, take no gradient) and the call assigns them to the
  variables afterwards, as the ``AssignVariableOp``\\ s of the traced graph would. A variable read
  after an assignment in the same call is refused (sol reads all variables first).
* ``Dropout(training=True)`` draws its mask with TensorFlow's stateless RNG keyed by the layer's
  ``SeedGenerator`` state (``StatelessRandomUniformV2``), and advances that state. sol does not
  re-implement the RNG: the ops of the traced graph that do not depend on the inputs and that sol
  cannot compile (random draws, the seed's arithmetic and its assignment) form a *prelude* that
  TensorFlow runs first (its own nodes, imported into a ``tf.function``); their results (the
  mask) enter the compiled program as inputs. So a seeded ``Dropout`` draws exactly the masks
  TensorFlow draws, and a model trains to the same losses with or without sol.

Gradients follow TensorFlow's: ``tf.stop_gradient`` is core's ``stop_gradient`` (no gradient
through it; gone from the compiled programs), ``PreventGradient`` on a value that takes a
gradient is refused, non-trainable variables take none, and a variable or input that only model
outputs the loss does not use depend on gets ``None`` from the tape, as TensorFlow gives it
(``unconnected_gradients="none"``, the default; ``"zero"`` then gives zeros), not a tensor of
zeros: each output passes an identity whose gradient function records that the tape reached it
(TensorFlow hands a custom gradient zeros, not None, for outputs the loss does not use), and
the backward returns None for what only unreached outputs depend on
(:meth:`sol.autodiff.Differentiated.unreached`). Ops sol cannot compile *between* the inputs
and the outputs (a ``py_function``, an FFT) make the variant train in TensorFlow itself with one
warning (``fallback=False``: an error): gradients through a partly compiled model are not
supported.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import tensorflow as tf
from tensorflow.core.framework import graph_pb2

from sol.plugin_api import (
    DTYPES,
    Graph,
    Program,
    TensorType,
    TrainingProgram,
    UnsupportedOpError,
    ValueKind,
    compile_training,
    params_to_inputs,
)
from sol_tensorflow.graphcall import numpy_call
from sol_tensorflow.importer import (
    OpConverter,
    SolFallbackWarning,
    Traced,
    _user_stacklevel,
    effect,
    graph_ops,
    problem_lines,
    trace,
    user_inputs,
)
from sol_tensorflow.ops import Entry, Unsupported, dtype_name
from sol_tensorflow.support import DeviceSupport
from sol_tensorflow.variants import run_eager

_ASSIGN = "AssignVariableOp"
_NO_GRADIENT = "PreventGradient"  # its gradient is an error in TensorFlow
_FREE = frozenset({"Const", "Placeholder"})


@dataclass
class Prelude:
    """TensorFlow ops that run before the compiled forward: ``fn()`` returns ``results``."""

    fn: Any  # tf ConcreteFunction without arguments
    results: list[str]
    ops: list[str]


@dataclass
class TrainingGraph:
    """A traced model converted for training.

    ``feeds[i]`` says where graph input i comes from at a call: ``("arg", k)`` the k-th model
    input, ``("var", variable)`` the variable's current value, ``("prelude", k)`` the k-th
    result of the prelude. The graph's outputs are the model's (``num_outputs``), then the new
    values of ``updates`` (variables assigned after the call)."""

    graph: Graph
    feeds: list[tuple[str, Any]]
    num_outputs: int
    updates: list[Any]
    wrt: list[int]  # graph input indices that take a gradient
    prelude: Prelude | None
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (op type, op name, why)


# --- analysis of the traced graph ---------------------------------------------------------------


def _downstream(ops: Sequence[Any], seeds: set[str]) -> set[str]:
    """Names of the tensors computed (through data edges) from the tensors ``seeds``."""
    reached = set(seeds)
    for op in ops:
        if any(t.name in reached for t in op.inputs):
            reached.update(t.name for t in op.outputs)
    return reached


def _variable_of(conv: OpConverter, t: Any) -> Any:
    """The model variable behind a captured resource tensor, or None."""
    ext = conv.captured.get(t.name)
    return conv.handles.get(id(ext)) if ext is not None else None


def convert_for_training(traced: Traced) -> TrainingGraph:
    """Convert ``traced`` with variables as inputs, the prelude split off and assignments of
    computed values as extra outputs (see the module doc)."""
    ops = graph_ops(traced)
    probe = OpConverter(traced, Graph(name=traced.name))
    inputs = {t.name for t in user_inputs(traced)}
    from_inputs = _downstream(ops, inputs)
    trainable = {id(v) for v in traced.fn.trainable_variables}
    reads_trainable = {op.outputs[0].name for op in ops if op.type == "ReadVariableOp"
                       and id(_variable_of(probe, op.inputs[0])) in trainable}
    differentiable = _downstream(ops, {n for n in inputs if n in from_inputs} | reads_trainable)

    # 1. Which ops TensorFlow runs first: unconvertible ops not computed from the inputs, and
    #    everything (but constants and captures) they read.
    probe.add_user_inputs()
    failed: dict[str, str] = {}
    for op in ops:
        if effect(op):
            continue
        try:
            blocked = next((t.name for t in op.inputs if t.name in failed), None)
            if blocked is not None:
                raise Unsupported(f"reads {blocked}, which sol cannot compute")
            probe.convert(op)
        except Unsupported as exc:
            failed[op.name] = str(exc)
            for t in op.outputs:
                if t.name in from_inputs or not t.shape.is_fully_defined() or dtype_name(t.dtype) not in DTYPES:
                    failed[t.name] = str(exc)  # its readers cannot be compiled either
                else:  # TensorFlow will compute it before the call: sol reads it as an input
                    probe.ctx.env[t.name] = Entry(tf=probe.graph.add_input(t.name, TensorType(
                        tuple(int(d) for d in t.shape), dtype_name(t.dtype))))
    prelude: set[str] = set()
    problems: list[tuple[str, str, str]] = []
    by_name = {op.name: op for op in ops}
    for op in ops:
        computed = any(t.name in from_inputs for t in op.inputs)
        if effect(op):
            if op.type == _ASSIGN and op.inputs[1].name in from_inputs:
                continue  # an update sol computes (BatchNorm's moving statistics)
            if computed:
                problems.append((op.type, op.name, "an effect on values computed from the inputs"))
            else:
                prelude.add(op.name)
        elif op.name in failed:
            if computed:
                problems.append((op.type, op.name, failed[op.name]))
            else:
                prelude.add(op.name)
    roots = [p for p in problems if not p[2].startswith("reads ")]
    problems = roots or problems  # name the ops sol cannot compile, not every op after them
    todo = list(prelude)
    while todo:  # what the prelude reads, TensorFlow computes too (constants and captures are free)
        op = by_name.get(todo.pop())
        if op is None:
            continue
        for p in [t.op for t in op.inputs] + list(op.control_inputs):
            if p.name not in prelude and p.type not in _FREE and p.name in by_name:
                prelude.add(p.name)
                todo.append(p.name)

    # 2. Convert what sol computes.
    graph = Graph(name=f"{traced.name}_train")
    conv = OpConverter(traced, graph)
    conv.add_user_inputs()
    feeds: list[tuple[str, Any]] = [("arg", i) for i in range(len(graph.inputs))]
    prelude_results: list[str] = []
    updates: list[tuple[Any, Any]] = []
    for op in ops:
        if problems:
            break
        if op.name in prelude:
            continue
        if effect(op):
            if op.type != _ASSIGN:
                problems.append((op.type, op.name, "an effect sol cannot run"))
                continue
            var = _variable_of(conv, op.inputs[0])
            if var is None:
                problems.append((op.type, op.name, "assigns a resource that is not a variable of the model"))
                continue
            updates.append((var, op.inputs[1]))
            continue
        try:
            for t in op.inputs:
                if t.name not in conv.ctx.env and t.op.name in prelude:
                    if t.name in reads_trainable or (t.name in differentiable and t.dtype.is_floating):
                        raise Unsupported(f"reads {t.name}, computed by TensorFlow from a trainable variable")
                    conv.ctx.env[t.name] = Entry(tf=graph.add_input(f"prelude{len(prelude_results)}", TensorType(
                        tuple(int(d) for d in t.shape), dtype_name(t.dtype))))
                    feeds.append(("prelude", len(prelude_results)))
                    prelude_results.append(t.name)
            if op.type == "ReadVariableOp":
                var = _variable_of(conv, op.inputs[0])
                if var is not None and any(c.type == _ASSIGN and _variable_of(conv, c.inputs[0]) is var
                                           for c in op.control_inputs):
                    raise Unsupported(f"reads {var.name} after assigning it in the same call")
            if op.type == _NO_GRADIENT and op.inputs[0].name in differentiable:
                raise Unsupported("PreventGradient on a value that takes a gradient (TensorFlow raises when it is "
                                  "differentiated)")
            conv.convert(op)
        except Unsupported as exc:
            problems.append((op.type, op.name, str(exc)))
    if problems:
        return TrainingGraph(graph, feeds, 0, [], [], None, problems)
    for t in traced.fn.outputs:
        graph.outputs.append(conv.ctx.tf(t))
    num_outputs = len(graph.outputs)
    for _, t in updates:
        graph.outputs.append(conv.ctx.tf(t))
    # an output that is an input or a constant gets a buffer of its own
    graph.outputs = [v if v.kind is ValueKind.NODE else graph.add_node("identity", [v]).output
                     for v in graph.outputs]
    graph.prune_unused()
    # Every variable is read at every call: all of them become inputs.
    variables = {id(v): v for v in traced.variables}
    var_of_param = {id(p): variables[k] for k, p in conv.params.items()}
    params = list(graph.params)
    params_to_inputs(graph, params)
    feeds += [("var", var_of_param[id(p)]) for p in params]
    wrt = [i for i, (kind, src) in enumerate(feeds) if graph.inputs[i].dtype.startswith("float") and (
        (kind == "arg") or (kind == "var" and id(src) in trainable))]
    pre = _prelude(traced, [by_name[n] for n in sorted(prelude, key=[op.name for op in ops].index)],
                   prelude_results) if prelude else None
    return TrainingGraph(graph, feeds, num_outputs, [v for v, _ in updates], wrt, pre)


def _prelude(traced: Traced, members: list[Any], results: list[str]) -> Prelude:
    """``members`` (TensorFlow's own nodes) as a ``tf.function`` without arguments that returns
    ``results`` after running every member with an effect (the seed's assignment)."""
    fn = traced.fn
    full = fn.graph.as_graph_def()
    nodes = {n.name: n for n in full.node}
    captured = {internal.name: ext for ext, internal in fn.graph.captures}
    names = {op.name for op in members}
    sub = graph_pb2.GraphDef()
    sub.versions.CopyFrom(full.versions)
    sub.library.CopyFrom(full.library)
    fixed: dict[str, Any] = {}  # placeholder name in ``sub`` -> captured value (a variable's handle)
    copied: set[str] = set()

    def source(t: Any) -> str:
        producer = t.op
        if producer.name in names or producer.type == "Const":
            if producer.type == "Const" and producer.name not in copied:
                node = sub.node.add()
                node.CopyFrom(nodes[producer.name])
                del node.input[:]  # control inputs on ops outside
                copied.add(producer.name)
            return t.name if t.value_index else producer.name
        if producer.type == "Placeholder" and t.name in captured:
            ph = f"sol_prelude_capture_{len(fixed)}"
            node = sub.node.add()
            node.name, node.op = ph, "Placeholder"
            node.attr["dtype"].type = t.dtype.as_datatype_enum
            fixed[ph] = captured[t.name]
            return ph
        raise Unsupported(f"the prelude reads {t.name}, which it does not compute")

    for op in members:
        node = sub.node.add()
        node.CopyFrom(nodes[op.name])
        del node.input[:]
        node.input.extend([source(t) for t in op.inputs] + [f"^{c.name}" for c in op.control_inputs
                                                            if c.name in names])
    effects = [op.name for op in members if effect(op)]
    shapes = [fn.graph.get_tensor_by_name(r).shape for r in results]

    def run() -> list[Any]:
        graph = tf.compat.v1.get_default_graph()
        mapping = {f"{ph}:0": graph.capture(v) for ph, v in fixed.items()}
        outs = tf.graph_util.import_graph_def(sub, input_map=mapping, return_elements=results + effects,
                                              name="sol_prelude")
        with tf.control_dependencies(outs[len(results):]):
            values = [tf.identity(o) for o in outs[:len(results)]]
        for v, shape in zip(values, shapes):
            v.set_shape(shape)
        return values

    concrete = tf.function(run, autograph=False).get_concrete_function()
    return Prelude(concrete, results, [op.name for op in members])


# --- running ------------------------------------------------------------------------------------

def run_program(program: Program, values: Sequence[Any]) -> list[Any]:
    """``program`` on tensors, on the calling thread: directly when eager (in place where the
    program's memory is the host's: :func:`sol_tensorflow.variants.run_eager`), else as a
    ``tf.numpy_function`` (which TensorFlow runs on threads of its own pool: programs are
    callable from any thread, the device's contract)."""
    if tf.executing_eagerly():
        return run_eager(program, values)
    return numpy_call(program, values, [(tf.as_dtype(t.dtype), t.shape) for t in program.output_types],
                      "sol_training_program")


class TrainingVariant:
    """One compiled training variant (see the module doc); called with the model's inputs."""

    def __init__(self, model: Any, training: bool, converted: TrainingGraph, device: str,
                 options: dict[str, Any]) -> None:
        from sol.plugin_api import compile_graph

        self.model = model
        self.training = training
        self.converted = converted
        self.fallen = problem_lines(converted.problems)
        self.training_program: TrainingProgram | None = None
        self.program: Program | None = None
        if self.fallen:
            return
        graph = converted.graph
        differentiable = [i for i in range(converted.num_outputs) if graph.outputs[i].dtype.startswith("float")]
        if converted.wrt and differentiable:
            self.training_program = compile_training(
                graph, [graph.inputs[i] for i in converted.wrt], device, options=options, outputs=differentiable)
        else:
            self.program = compile_graph(graph, device, training=True, options=options)

    @property
    def programs(self) -> list[Program]:
        tp = self.training_program
        if tp is not None:
            return [tp.forward_program, tp.backward_program]
        return [self.program] if self.program is not None else []

    def __call__(self, inputs: Sequence[Any]) -> list[Any]:
        c = self.converted
        if self.fallen:
            raise RuntimeError("a variant TensorFlow trains is run by the caller")  # see SolKerasModel
        pre = c.prelude.fn() if c.prelude is not None else []
        pre = list(pre) if isinstance(pre, (list, tuple)) else [pre]
        values = []
        for kind, src in c.feeds:
            if kind == "arg":
                values.append(tf.convert_to_tensor(inputs[src]))
            elif kind == "var":
                values.append(tf.convert_to_tensor(src))  # a read the tape records: gradients reach src
            else:
                values.append(pre[src])
        if self.training_program is not None:
            results = _differentiable_call(self.training_program, values)
        else:
            assert self.program is not None
            results = run_program(self.program, values)[:c.num_outputs + len(c.updates)]
        for var, new in zip(c.updates, results[c.num_outputs:]):
            var.assign(tf.stop_gradient(new))
        return list(results[:c.num_outputs])


def _differentiable_call(tp: TrainingProgram, values: list[Any]) -> list[Any]:
    """The compiled forward as one ``tf.custom_gradient`` function whose gradient is the compiled
    backward; returns the forward graph's outputs (model outputs and new variable values), each
    output that takes a gradient through :func:`_reach_mark` (see the module doc)."""
    diff = tp.diff
    dtypes = [tf.as_dtype(t.dtype) for t in tp.backward_program.input_types[len(diff.saved):]]
    shapes = [t.shape for t in tp.backward_program.input_types[len(diff.saved):]]
    reached: set[int] = set()  # outputs whose gradient the tape computed (for this call / this trace)

    @tf.custom_gradient
    def forward(*xs: Any) -> tuple[list[Any], Callable[..., list[Any]]]:
        results = run_program(tp.forward_program, xs)
        saved = [xs[s.index] if s.kind == "input" else results[s.index] for s in diff.saved]

        def backward(*dys: Any) -> list[Any]:
            given = [dys[i] for i in tp.grad_output_indices]
            given = [tf.zeros(shape, dtype) if g is None else tf.convert_to_tensor(g, dtype)
                     for g, shape, dtype in zip(given, shapes, dtypes)]
            unreached = diff.unreached([i in reached for i in tp.grad_output_indices])
            reached.clear()  # a persistent tape's next gradient marks its own outputs again
            out: list[Any] = [None] * len(xs)
            if all(unreached):
                return out
            grads = run_program(tp.backward_program, saved + given)
            for i, g, skip in zip(tp.wrt_inputs, grads, unreached):
                out[i] = None if skip else g
            return out

        return list(results[:diff.num_outputs]), backward

    results = list(forward(*values))
    return [_reach_mark(r, i, reached) if i in tp.grad_output_indices else r for i, r in enumerate(results)]


def _reach_mark(t: Any, index: int, reached: set[int]) -> Any:
    """``t`` through an identity whose gradient function adds ``index`` to ``reached``: the tape
    calls it only when the loss depends on ``t``, and before the gradient of what computed ``t``."""

    @tf.custom_gradient
    def mark(x: Any) -> tuple[Any, Callable[[Any], Any]]:
        def grad(dy: Any) -> Any:
            reached.add(index)
            return dy

        return tf.identity(x), grad

    return mark(t)


# --- building ---------------------------------------------------------------------------------


def build_variant(model: Any, traced: Traced, specs: Sequence[Any], training: bool, device: str,
                  options: dict[str, Any], warned: set[str]) -> TrainingVariant:
    """Trace ``model`` in this mode for ``specs`` (``traced``: how it was traced for the example
    inputs), convert and compile it. Ops sol cannot convert, or ``device`` cannot compile, make
    TensorFlow train the whole model (one warning; ``fallback=False``: an error)."""
    specs = list(specs)
    if isinstance(model, tf.types.experimental.ConcreteFunction):
        again = traced  # no modes: its graph, converted with the variables as inputs
    elif isinstance(model, tf.types.experimental.PolymorphicFunction):
        again = trace(model, tuple(specs))
    else:
        again = trace(model, (specs,) if traced.keras_inputs else (specs[0],), training=training)
    converted = convert_for_training(again)
    if not converted.problems:
        support = DeviceSupport(device)
        flagged = support.confirmed(converted.graph, lambda: convert_for_training(again).graph, True)
        converted.problems = support.problems(flagged)
    variant = TrainingVariant(model, training, converted, device, options)
    if variant.fallen:
        text = (f"sol cannot compile {len(variant.fallen)} TensorFlow operation(s) of {traced.name} for "
                f"training; TensorFlow trains the whole model (gradients through a partly compiled model are "
                f"not supported):\n" + "\n".join(variant.fallen))
        if options.get("fallback", True) is False:
            first = variant.converted.problems[0]
            raise UnsupportedOpError(text, op=first[0], source=first[1])
        new = [line for line in variant.fallen if line not in warned]
        if new:
            warned.update(new)
            warnings.warn(text, SolFallbackWarning, stacklevel=_user_stacklevel())
    return variant


TRAIN_KEY = "tensorflow.train_options"
"""``Graph.meta`` key: the options ``optimize`` was given, for compiling training variants later.
With ``training=True`` among them the wrapper runs every call through a training variant (so
inference reads the variables as they are, and every call is differentiable)."""


def tape_recording() -> bool:
    """Whether a ``tf.GradientTape`` may record this eager call (then it must be differentiable).
    Inside a ``tf.function`` this is unknown at trace time: there, ``training=True`` or
    ``optimize(..., training=True)`` selects the differentiable path."""
    try:
        from tensorflow.python.eager import record
    except ImportError:  # pragma: no cover - TensorFlow moved it: be differentiable
        return True
    return bool(record.could_possibly_record())
