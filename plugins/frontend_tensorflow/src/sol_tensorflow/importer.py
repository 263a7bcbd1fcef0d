"""Keras model / ``tf.function`` -> sol IR, through TensorFlow's traced graph.

Why the concrete function's graph: tracing a Keras model (Sequential, functional or subclassed)
or a ``tf.function`` for the example inputs' shapes gives the graph TensorFlow itself runs, with
every tensor's static shape and dtype (the ground truth each conversion is checked against) and
the op names that carry the Keras layer's name scope (for messages). A ``tf.function`` with an
input signature that leaves dimensions open (``(None, 4)``) is traced from its Python function for
the example's shapes. Variables appear as captured resource handles read by ``ReadVariableOp``;
each is mapped back to its ``tf.Variable`` and becomes a parameter holding
``np.asarray(var.value())``: a zero-copy view of the variable's buffer (``var.numpy()`` would
copy). TensorFlow copies a variable's buffer on write while such a view is alive, so the view
stays a consistent snapshot of the weights at optimize time, and a moved buffer tells the wrapper
that the weights changed (:mod:`sol_tensorflow.weights`).

Ops sol cannot convert, and converted ops the target device cannot compile (a float64 ``dense``
on x86, float16 anywhere the C code generators have no type: :mod:`sol_tensorflow.support`),
make the import fail with :class:`UnsupportedOpError` listing every such op with its Keras layer
(``fallback=False``), or (the default) TensorFlow runs them and sol compiles the rest
(:mod:`sol_tensorflow.fallback`), with one warning listing them: never a wrong result. Where the
device cannot compute some ops in a floating-point type other than float32, TensorFlow runs all
of the model's ops in that type: cutting the model at every such op would compile dozens of tiny
programs that save nothing.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np
import tensorflow as tf

from sol.plugin_api import (
    DTYPES,
    FallbackWording,
    Graph,
    SolFallbackWarning,
    TensorType,
    Value,
    ValueKind,
    known_value,
    mark_framework_node,
    partition,
    user_stacklevel,
)
from sol_tensorflow.ops import CONVERTERS, NCHW, Context, Entry, Unsupported, dtype_name
from sol_tensorflow.support import DeviceSupport, floating_dtypes, target_device

TRACED_KEY = "tensorflow.traced"
FALLBACK_KEY = "tensorflow.fallback"
MARKED_KEY = "tensorflow.marked"  # what the wrapper needs to run TensorFlow's steps (sol_tensorflow.fallback)
OPTIONS_KEY = "tensorflow.options"
DEVICE_KEY = "tensorflow.device"  # the device asked what it can compile (sol_tensorflow.support)
FORCED_KEY = "tensorflow.forced"  # names of the ops that device cannot compile
_SKIP = frozenset({"NoOp", "Assert"})
_FREE = frozenset({"Const", "Placeholder", "ReadVariableOp"})


_user_stacklevel = partial(user_stacklevel, "tensorflow", "keras")
"""The stack level of the user's line for a warning (past sol's, TensorFlow's and Keras' frames)."""


@dataclass
class Traced:
    """A model traced for one input signature: the concrete function and what wrapping needs."""

    name: str
    fn: Any  # tf ConcreteFunction
    specs: list[Any]  # tf.TensorSpec per user input
    structure: Any  # the function's structured outputs (for tf.nest.pack_sequence_as)
    keras_inputs: int  # how the model takes its inputs: 0 = positional, n = one list of n
    variables: list[Any] = field(default_factory=list)
    # id(variable) -> (variable, view of its buffer), read once for every converter of this trace
    snapshots: dict[int, tuple[Any, np.ndarray]] = field(default_factory=dict)

    def snapshot(self, var: Any) -> np.ndarray:
        """The variable's value as every part compiled from this trace reads it (zero-copy)."""
        from sol_tensorflow.weights import view

        kept = self.snapshots.get(id(var))
        if kept is None:
            kept = self.snapshots.setdefault(id(var), (var, view(var)))
        return kept[1]


# --- example inputs and tracing -----------------------------------------------------------------


def _is_shape(x: Any) -> bool:
    if isinstance(x, tf.TensorShape):
        return x.is_fully_defined()
    return isinstance(x, (tuple, list)) and all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in x)


def _spec(i: int, x: Any) -> Any:
    if isinstance(x, tf.TensorSpec):
        return x
    if isinstance(x, (tf.Tensor, np.ndarray, tf.Variable)):
        return tf.TensorSpec(tuple(int(d) for d in x.shape), tf.as_dtype(x.dtype), name=f"input_{i}")
    if _is_shape(x):
        return tf.TensorSpec(tuple(int(d) for d in x), tf.float32, name=f"input_{i}")
    raise TypeError(f"example input {i} must be a tf.Tensor, a NumPy array or a shape (tuple of "
                    f"non-negative ints), got {type(x).__name__}")


def example_specs(example_inputs: tuple[Any, ...]) -> tuple[list[Any], bool]:
    """One TensorSpec per model input; a single list of tensors (Keras' multi-input convention)
    is unpacked. Returns the specs and whether they came as one list."""
    items = tuple(example_inputs)
    as_list = False
    if len(items) == 1 and isinstance(items[0], (list, tuple)) and items[0] and not _is_shape(items[0]):
        items = tuple(items[0])
        as_list = True
    return [_spec(i, x) for i, x in enumerate(items)], as_list


def trace(model: Any, example_inputs: tuple[Any, ...], training: bool = False, partial: bool = False) -> Traced:
    """``model`` traced for these inputs; a Keras model is called with ``training`` (True gives
    the graph of training-mode layers: batch statistics, dropout; :mod:`sol_tensorflow.training`).
    ``partial``: the inputs may leave dimensions open (for the outputs' static shapes only)."""
    specs, as_list = example_specs(example_inputs)
    name = str(getattr(model, "name", None) or type(model).__name__)
    keras_inputs = 0
    if isinstance(model, tf.types.experimental.ConcreteFunction):
        if specs:
            raise TypeError(f"{name} is a concrete function: its input signature is fixed, pass no example inputs")
        fn = model
    elif isinstance(model, tf.types.experimental.PolymorphicFunction):
        name = getattr(getattr(model, "python_function", None), "__name__", name)
        fn = _trace_function(model, specs, name)
    else:  # a Keras layer or model
        if not specs:
            raise TypeError(f"optimize({name}) needs example inputs (tensors or shapes), one per model input")
        keras_inputs = len(specs) if as_list or len(specs) > 1 else 0

        def call(*xs: Any) -> Any:
            return model(list(xs) if keras_inputs else xs[0], training=training)

        fn = tf.function(call, autograph=False).get_concrete_function(*specs)
    captured = len(fn.captured_inputs)
    user = fn.inputs[:len(fn.inputs) - captured]
    specs = [tf.TensorSpec(t.shape, t.dtype, name=f"input_{i}") for i, t in enumerate(user)]
    for i, s in enumerate(specs):
        if not s.shape.is_fully_defined() and not partial:
            raise ValueError(f"input {i} of {name} has shape {s.shape}; sol needs a fully known shape: pass an "
                             f"example input")
    return Traced(name, fn, specs, fn.structured_outputs, keras_inputs, list(fn.variables))


def _trace_function(model: Any, specs: list[Any], name: str) -> Any:
    """The concrete function of a ``tf.function`` for ``specs``. With an input signature the
    function itself only traces that signature (open dimensions stay open, and a spec named
    otherwise does not bind): its Python function is traced for the example's shapes instead,
    once they are checked against the signature."""
    signature = model.input_signature
    if not specs:
        return model.get_concrete_function()
    if signature is None:
        return model.get_concrete_function(*specs)
    flat = tf.nest.flatten(signature)
    if len(flat) != len(specs) or not all(isinstance(s, tf.TensorSpec) for s in flat):
        raise TypeError(f"{name} has the input signature {signature}; got {len(specs)} example input(s) "
                        f"({', '.join(_describe_spec(s) for s in specs)})")
    for i, (want, got) in enumerate(zip(flat, specs)):
        if want.dtype != got.dtype or not want.shape.is_compatible_with(got.shape):
            raise TypeError(f"example input {i} of {name}: the input signature says {_describe_spec(want)}, "
                            f"got {_describe_spec(got)}")
    if all(w.shape.is_fully_defined() for w in flat):
        return model.get_concrete_function()
    unnamed = [tf.TensorSpec(s.shape, s.dtype) for s in specs]
    # ``_autograph``: whether the user's tf.function converts Python control flow (its default: yes)
    retrace = tf.function(model.python_function, autograph=bool(getattr(model, "_autograph", True)))
    return retrace.get_concrete_function(*unnamed)


def _describe_spec(spec: Any) -> str:
    shape = "?" if spec.shape.rank is None else ", ".join("None" if d is None else str(d) for d in spec.shape)
    return f"{spec.dtype.name}[{shape}]"


# --- conversion ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class TFCall:
    """The handle of a framework node (:func:`sol.fallback.mark`): the TensorFlow op, the
    tensors it reads through the node's inputs and those its outputs stand for, in order."""

    op: Any
    reads: tuple[str, ...]
    writes: tuple[str, ...]


@dataclass
class Converted:
    graph: Graph
    problems: list[tuple[str, str, str]]  # (op type, op name, why), every op TensorFlow must run
    forced: dict[str, str] = field(default_factory=dict)  # op name -> why: converted, but not for the device
    # marked graphs only: tensors known at optimize time, and the model outputs sol computes
    statics: dict[str, np.ndarray] = field(default_factory=dict)
    sol_outputs: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        return problem_lines(self.problems)


WORDING = FallbackWording("TensorFlow operation(s)", "TensorFlow",
                          "sol_tensorflow.supported_ops() lists the TensorFlow ops sol converts",
                          where="op {name!r} in layer {layer!r}")
problem_lines = WORDING.lines  # one line per op TensorFlow runs: type, op, layer, why


class OpConverter:
    """Converts TensorFlow ops of ``traced`` into ``graph``, one at a time (:meth:`convert`).
    Used for the whole model, and by :mod:`sol_tensorflow.fallback` for each region sol compiles."""

    def __init__(self, traced: Traced, graph: Graph) -> None:
        fn = traced.fn
        self.traced = traced
        self.graph = graph
        self.ctx = Context(graph)
        self.handles = {id(v.handle): v for v in traced.variables}
        self.resources: dict[str, Any] = {}
        self.params: dict[int, Value] = {}
        self.captured = dict((internal.name, ext) for ext, internal in fn.graph.captures)

    def add_user_inputs(self) -> None:
        for i, t in enumerate(user_inputs(self.traced)):
            self.ctx.env[t.name] = Entry(tf=self.graph.add_input(f"input_{i}", TensorType(
                tuple(int(d) for d in t.shape), dtype_name(t.dtype))))

    def convert(self, op: Any) -> None:
        """Convert ``op``, recording its outputs in ``ctx.env``; raises :class:`Unsupported`."""
        ctx, graph = self.ctx, self.graph
        ctx.source = f"{op.name} ({op.type})"
        if op.type == "Placeholder":
            t = op.outputs[0]
            if t.name in ctx.env:
                return
            ext = self.captured.get(t.name)
            if ext is None:
                raise Unsupported("a placeholder that is neither an input nor a captured value")
            if t.dtype == tf.resource:
                var = self.handles.get(id(ext))
                if var is None:
                    raise Unsupported("a captured resource that is not a variable of the model")
                self.resources[t.name] = var
            else:
                ctx.env[t.name] = Entry(static=np.asarray(ext.numpy()))
            return
        if op.type in ("ReadVariableOp", "ResourceGather"):
            var = self.resources.get(op.inputs[0].name)
            if var is None:
                raise Unsupported("reads a resource that is not a captured variable")
            if id(var) not in self.params:
                data = self.traced.snapshot(var)  # zero-copy; see the module doc
                self.params[id(var)] = graph.add_param(f"{var.name}#{len(self.params)}", data)
            if op.type == "ReadVariableOp":
                ctx.env[op.outputs[0].name] = Entry(tf=self.params[id(var)])
                return
            # embedding_lookup on a variable: its converter gathers from the variable's value.
            ctx.env[op.inputs[0].name] = Entry(tf=self.params[id(var)])
        if op.type == "Const":
            ctx.env[op.outputs[0].name] = Entry(static=tf.make_ndarray(op.get_attr("value")))
            return
        if op.inputs and all(ctx.env.get(t.name, Entry()).static is not None for t in op.inputs):
            values = [tf.get_static_value(t) for t in op.outputs]
            if all(v is not None for v in values):
                for t, v in zip(op.outputs, values):
                    ctx.env[t.name] = Entry(static=np.asarray(v))
                return
        converter = CONVERTERS.get(op.type)
        if converter is None:
            raise Unsupported("")
        results = converter(ctx, op)
        static = bool(op.inputs) and all(ctx.env.get(t.name, Entry()).static is not None for t in op.inputs)
        for t, r in zip(op.outputs, results):
            entry = _entry(t, r)
            if static:  # TensorFlow cannot fold it (a slice of a shape): sol's references can
                value = known_value(entry.tf) if entry.tf is not None else None
                if value is not None:
                    entry = Entry(static=value)
            ctx.env[t.name] = entry




def user_inputs(traced: Traced) -> list[Any]:
    """The traced function's placeholders for the model's inputs (the captured values follow)."""
    fn = traced.fn
    return list(fn.inputs[:len(fn.inputs) - len(fn.captured_inputs)])


def graph_ops(traced: Traced) -> list[Any]:
    """The traced graph's ops that the outputs need (through data or control dependencies; the
    latter keep ops with effects), in TensorFlow's order, without those :func:`skipped`. Ops
    nothing reads (a Keras regularization loss) are not converted, so they cannot fail."""
    fn = traced.fn
    live: set[str] = set()
    todo = [t.op for t in fn.outputs]
    while todo:
        op = todo.pop()
        if op.name in live:
            continue
        live.add(op.name)
        todo.extend(t.op for t in op.inputs)
        todo.extend(op.control_inputs)
    return [op for op in fn.graph.get_operations() if op.name in live and not skipped(op)]


def skipped(op: Any) -> bool:
    """Ops that compute nothing for inference: no outputs (automatic control dependencies) and
    assertions. Ops with effects and no outputs are not skipped (see :func:`effect`)."""
    return op.type in _SKIP or (not op.outputs and not effect(op))


def effect(op: Any) -> bool:
    """A stateful op without outputs (a variable assignment, a print): only TensorFlow can run it."""
    return not op.outputs and op.type not in _SKIP and bool(op.op_def.is_stateful)


def holdable(t: Any) -> bool:
    """Whether sol can take ``t`` as a program input (a fully known shape, a dtype sol has)."""
    return t.shape.is_fully_defined() and dtype_name(t.dtype) in DTYPES


def convert(traced: Traced, support: DeviceSupport | None = None, forced: dict[str, str] | None = None,
            mark: bool = False) -> Converted:
    """Convert every op of ``traced``. An op that does not convert, or (with ``support``) that
    the device cannot compile, or that ``forced`` names, is a problem; the conversion goes on past
    it, so that every such op is found, not only the first of a chain. Its results enter as graph
    inputs where sol can hold them; with ``mark``, the op becomes a framework node instead
    (:func:`sol.fallback.mark`) and the graph is the whole model, for core to cut into parts.
    Without problems, the graph computes the model."""
    fn = traced.fn
    graph = Graph(name=traced.name)
    conv = OpConverter(traced, graph)
    conv.add_user_inputs()
    forced = dict(forced or {})
    unheld: dict[str, str] = {}  # tensor name -> the op TensorFlow computes it with; sol cannot hold it
    on_tf: dict[str, Any] = {}  # op name -> its framework node (mark) or None
    problems: list[tuple[str, str, str]] = []
    ops = graph_ops(traced)
    for op in ops:
        blocked = next((t for t in op.inputs if t.name in unheld), None)
        if effect(op):
            why = "an effect (no outputs) that only TensorFlow can run"
        elif op.name in forced:
            why = forced[op.name]
        elif blocked is not None:
            shape = blocked.shape.as_list() if blocked.shape.rank is not None else "[?]"
            why = f"reads {blocked.name} ({unheld[blocked.name]}), which sol cannot hold ({blocked.dtype.name}{shape})"
        else:
            try:
                conv.convert(op)
                continue
            except Unsupported as exc:
                why = str(exc)
        problems.append((op.type, op.name, why))
        held = [t for t in op.outputs if holdable(t)]
        unheld.update((t.name, op.type) for t in op.outputs if not holdable(t))
        if mark:
            on_tf[op.name] = _mark(conv, op, held, on_tf)
        else:
            for t in held:
                conv.ctx.env[t.name] = Entry(tf=graph.add_input(t.name, TensorType(
                    tuple(int(d) for d in t.shape), dtype_name(t.dtype))))
    found = _device_forced(traced, graph, ops, conv, support) if support is not None else {}
    if found:
        done = {n for _, n, _ in problems}
        problems += [(op.type, op.name, found[op.name]) for op in ops if op.name in found and op.name not in done]
        order = {op.name: i for i, op in enumerate(ops)}
        problems.sort(key=lambda p: order.get(p[1], -1))
    converted = Converted(graph, problems, found)
    if mark:
        converted.statics = {name: e.static for name, e in conv.ctx.env.items() if e.static is not None}
        _mark_outputs(conv, converted, on_tf)
    elif not problems:
        for t in fn.outputs:
            try:
                graph.outputs.append(conv.ctx.tf(t))
            except Unsupported as exc:
                problems.append(("output", t.name, str(exc)))
    return converted


def _sol_side(conv: OpConverter, t: Any, on_tf: dict[str, Any]) -> bool:
    """Whether sol computes ``t`` for TensorFlow to read (TensorFlow takes constants, variable
    reads, captured values and values known now itself: :mod:`sol_tensorflow.fallback`)."""
    e = conv.ctx.env.get(t.name)
    return (t.op.name not in on_tf and t.op.type not in _FREE and e is not None and e.static is None
            and t.name not in {x.name for x in user_inputs(conv.traced)})


def _mark(conv: OpConverter, op: Any, held: list[Any], on_tf: dict[str, Any]) -> Any:
    """``op`` as a framework node: it reads what sol computes through its inputs, runs after the
    framework nodes it reads from (or depends on), and its results sol can hold are its outputs."""
    reads = [t for t in op.inputs if _sol_side(conv, t, on_tf)]
    after = {on_tf[t.op.name] for t in op.inputs if t.op.name in on_tf}
    after |= {on_tf[c.name] for c in op.control_inputs if c.name in on_tf}
    types = [TensorType(tuple(int(d) for d in t.shape), dtype_name(t.dtype)) for t in held]
    handle = TFCall(op, tuple(t.name for t in reads), tuple(t.name for t in held))
    node = mark_framework_node(conv.graph, handle, [conv.ctx.tf(t) for t in reads], types,
                              after=[n for n in after if n is not None], label=op.type, source=f"{op.name} ({op.type})")
    for t, v in zip(held, node.outputs):
        conv.ctx.env[t.name] = Entry(tf=v)
    return node


def _mark_outputs(conv: OpConverter, converted: Converted, on_tf: dict[str, Any]) -> None:
    """The model outputs sol computes are the marked graph's outputs (each a result of its own);
    TensorFlow's, the inputs returned as they are and values known now are the wrapper's."""
    for t in conv.traced.fn.outputs:
        if _sol_side(conv, t, on_tf) and t.name not in converted.sol_outputs:
            v = conv.ctx.tf(t)
            converted.graph.outputs.append(v if v.kind is ValueKind.NODE else conv.ctx.emit("identity", [v]))
            converted.sol_outputs.append(t.name)


def _device_forced(traced: Traced, graph: Graph, ops: list[Any], conv: OpConverter,
                   support: DeviceSupport) -> dict[str, str]:
    """Op name -> why, for the converted ops the device cannot compile (see the module doc)."""
    flagged = support.confirmed(graph, lambda: convert(dataclasses.replace(traced, snapshots={})).graph, False)
    forced = {name: why for _, name, why in support.problems(flagged)}
    types = floating_dtypes([n for n, _ in flagged])
    if types:  # TensorFlow runs every op computing in those types
        env = conv.ctx.env
        for op in ops:
            if op.name in forced or op.type in _FREE or effect(op):
                continue
            touched = {dtype_name(t.dtype) for t in [*op.inputs, *op.outputs]} & types
            if touched and not all(env.get(t.name, Entry()).static is not None for t in op.outputs):
                forced[op.name] = (f"TensorFlow runs the model's {'/'.join(sorted(touched))} operations (device "
                                   f"{support.device.name!r} cannot compile some of them)")
    return forced


def _entry(t: Any, r: Any) -> Entry:
    """Record a converter's result, checked against TensorFlow's own shape and dtype."""
    if not t.shape.is_fully_defined():
        raise Unsupported(f"TensorFlow does not know the shape of {t.name} ({t.shape})")
    shape = tuple(int(d) for d in t.shape)
    if isinstance(r, np.ndarray):
        return Entry(static=r)
    if isinstance(r, NCHW):
        got = tuple(r.value.shape[i] for i in (0, 2, 3, 1)) if r.value.type.rank == 4 else None
        entry = Entry(nchw=r.value)
        value = r.value
    else:
        got, entry, value = r.shape, Entry(tf=r), r
    if got != shape or value.dtype != dtype_name(t.dtype):
        raise Unsupported(f"sol computed {value.type} (layout {'NCHW' if isinstance(r, NCHW) else 'TF'}) where "
                          f"TensorFlow has {dtype_name(t.dtype)}{list(shape)}; please report this")
    return entry


# --- entry point ----------------------------------------------------------------------------


def import_model(model: Any, example_inputs: tuple[Any, ...], options: dict[str, Any],
                 warned: set[str] | None = None) -> Graph:
    """Trace and convert ``model`` for the device ``optimize`` compiles for; see the module doc
    for unsupported ops. Warns once listing the ops TensorFlow runs, leaving out a warning whose
    every line is in ``warned`` already (a model compiled again for other shapes)."""
    return import_traced(trace(model, example_inputs), options, warned)


def import_traced(traced: Traced, options: dict[str, Any], warned: set[str] | None = None) -> Graph:
    """:func:`import_model` for a model traced already."""
    device = target_device(options)
    converted = convert(traced, DeviceSupport(device))
    graph = converted.graph
    if converted.problems:
        if options.get("fallback", True) is False:
            raise unsupported_error(traced.name, converted.problems)
        graph = _marked(traced, converted.forced, warned)
        graph.meta[OPTIONS_KEY] = {k: v for k, v in options.items() if k not in ("training", "device")}
    graph.meta[TRACED_KEY] = traced
    graph.meta[DEVICE_KEY] = device
    graph.meta[FORCED_KEY] = frozenset(converted.forced)
    graph.meta["tensorflow.train_options"] = dict(options)  # sol_tensorflow.training.TRAIN_KEY
    return graph


def _marked(traced: Traced, forced: dict[str, str], warned: set[str] | None) -> Graph:
    """The whole model with the ops TensorFlow runs marked (core cuts it into parts), warned
    about once (lines in ``warned`` are not warned about again)."""
    from sol_tensorflow.fallback import MarkedModel

    marked = convert(traced, forced=forced, mark=True)
    model = MarkedModel(traced.name, marked.problems, marked.statics, marked.sol_outputs)
    lines = problem_lines(model.fallen)
    if warned is None or not set(lines) <= warned:
        parts = len(partition(marked.graph).parts)
        warnings.warn(model.warning(parts), SolFallbackWarning, stacklevel=_user_stacklevel())
    if warned is not None:
        warned.update(lines)
    graph = marked.graph
    graph.meta[MARKED_KEY] = model
    graph.meta[FALLBACK_KEY] = model.op_types()
    return graph


unsupported_error = WORDING.error  # the fallback=False error: every op TensorFlow would run, with its layer and why
