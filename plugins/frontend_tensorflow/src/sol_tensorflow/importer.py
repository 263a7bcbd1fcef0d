"""Keras model / ``tf.function`` -> sol IR, through TensorFlow's traced graph.

Why the concrete function's graph: tracing a Keras model (Sequential, functional or subclassed)
or a ``tf.function`` with a fixed input signature gives the graph TensorFlow itself runs, with
every tensor's static shape and dtype (the ground truth each conversion is checked against) and
the op names that carry the Keras layer's name scope (for messages). Variables appear as
captured resource handles read by ``ReadVariableOp``; each is mapped back to its ``tf.Variable``
and becomes a parameter holding ``np.asarray(var.value())``: a zero-copy view of the variable's
buffer (``var.numpy()`` would copy). TensorFlow copies a variable's buffer on write while such a
view is alive, so the view stays a consistent snapshot of the weights at optimize time; the
compiled program does not see later assignments (optimize again after training).

Ops sol cannot convert make the import fail with :class:`UnsupportedOpError` naming each op type
and its Keras layer (``fallback=False``), or (the default) TensorFlow runs them and sol compiles
the rest (:mod:`sol_tensorflow.fallback`), with one warning listing them: never a wrong result.
"""

from __future__ import annotations

import os
import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from sol.errors import UnsupportedOpError
from sol.ir import Graph, TensorType, Value, ValueKind
from sol.ops.registry import registry
from sol_tensorflow import ops_more  # noqa: F401  (registers its converters)
from sol_tensorflow.ops import CONVERTERS, NCHW, Context, Entry, Unsupported, dtype_name

TRACED_KEY = "tensorflow.traced"
FALLBACK_KEY = "tensorflow.fallback"
SPLIT_KEY = "tensorflow.split"
OPTIONS_KEY = "tensorflow.options"
_SKIP = frozenset({"NoOp", "Assert"})


class SolFallbackWarning(UserWarning):
    """Some operations of the model run in TensorFlow because sol cannot compile them."""


@dataclass
class Traced:
    """A model traced for one input signature: the concrete function and what wrapping needs."""

    name: str
    fn: Any  # tf ConcreteFunction
    specs: list[Any]  # tf.TensorSpec per user input
    structure: Any  # the function's structured outputs (for tf.nest.pack_sequence_as)
    keras_inputs: int  # how the model takes its inputs: 0 = positional, n = one list of n
    variables: list[Any] = field(default_factory=list)


# --- example inputs and tracing -----------------------------------------------------------------


def _is_shape(x: Any) -> bool:
    if isinstance(x, tf.TensorShape):
        return x.is_fully_defined()
    return isinstance(x, (tuple, list)) and all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in x)


def _spec(i: int, x: Any) -> Any:
    if isinstance(x, (tf.Tensor, np.ndarray, tf.Variable)):
        return tf.TensorSpec(tuple(int(d) for d in x.shape), tf.as_dtype(x.dtype), name=f"input_{i}")
    if isinstance(x, tf.TensorSpec):
        return x
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


def trace(model: Any, example_inputs: tuple[Any, ...], training: bool = False) -> Traced:
    """``model`` traced for these inputs; a Keras model is called with ``training`` (True gives
    the graph of training-mode layers: batch statistics, dropout; :mod:`sol_tensorflow.training`)."""
    specs, as_list = example_specs(example_inputs)
    name = str(getattr(model, "name", None) or type(model).__name__)
    keras_inputs = 0
    if isinstance(model, tf.types.experimental.ConcreteFunction):
        if specs:
            raise TypeError(f"{name} is a concrete function: its input signature is fixed, pass no example inputs")
        fn = model
    elif isinstance(model, tf.types.experimental.PolymorphicFunction):
        fn = model.get_concrete_function(*specs) if specs else model.get_concrete_function()
        name = getattr(getattr(model, "python_function", None), "__name__", name)
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
        if not s.shape.is_fully_defined():
            raise ValueError(f"input {i} of {name} has shape {s.shape}; sol needs a fully known shape: pass an "
                             f"example input")
    return Traced(name, fn, specs, fn.structured_outputs, keras_inputs, list(fn.variables))


# --- conversion ---------------------------------------------------------------------------------


def _layer(op_name: str) -> str:
    return op_name.rsplit("/", 1)[0] if "/" in op_name else op_name


@dataclass
class Converted:
    graph: Graph
    problems: list[tuple[str, str, str]]  # (op type, op name, why)

    def lines(self) -> list[str]:
        return [f"  {t} (op {n!r} in layer {_layer(n)!r}){': ' + why if why else ''}" for t, n, why in self.problems]


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
                data = np.asarray(var.value())  # zero-copy; see the module doc
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
                value = _evaluate(entry.tf) if entry.tf is not None else None
                if value is not None:
                    entry = Entry(static=value)
            ctx.env[t.name] = entry


def _evaluate(v: Value) -> np.ndarray | None:
    """``v``'s value when it is computed from constants only (NumPy references), else None."""
    if v.kind is ValueKind.CONST:
        return v.data
    node = v.producer
    if node is None:
        return None
    inputs = [_evaluate(i) for i in node.inputs]
    if any(i is None for i in inputs):
        return None
    out = registry.run_reference(node, inputs)[node.outputs.index(v)]  # type: ignore[arg-type]
    return np.asarray(out).astype(v.dtype, copy=False).reshape(v.shape)


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


def convert(traced: Traced) -> Converted:
    fn = traced.fn
    graph = Graph(name=traced.name)
    conv = OpConverter(traced, graph)
    conv.add_user_inputs()
    failed: set[str] = set()
    problems: list[tuple[str, str, str]] = []
    for op in graph_ops(traced):
        if effect(op):
            problems.append((op.type, op.name, "an effect (no outputs) that only TensorFlow can run"))
            continue
        if any(t.name in failed for t in op.inputs):
            failed.update(t.name for t in op.outputs)
            continue
        try:
            conv.convert(op)
        except Unsupported as exc:
            problems.append((op.type, op.name, str(exc)))
            failed.update(t.name for t in op.outputs)
    if not problems:
        for t in fn.outputs:
            try:
                graph.outputs.append(conv.ctx.tf(t))
            except Unsupported as exc:
                problems.append(("output", t.name, str(exc)))
    return Converted(graph, problems)


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


def import_model(model: Any, example_inputs: tuple[Any, ...], options: dict[str, Any]) -> Graph:
    """Trace and convert ``model``; see the module doc for unsupported ops."""
    _passive_openmp()
    traced = trace(model, example_inputs)
    converted = convert(traced)
    graph = converted.graph
    if converted.problems:
        kinds = sorted({t for t, _, _ in converted.problems})
        text = (f"sol cannot compile {len(converted.problems)} TensorFlow operation(s) of {traced.name} "
                f"({', '.join(kinds)}):\n" + "\n".join(converted.lines()))
        if options.get("fallback", True) is False:
            first = converted.problems[0]
            raise UnsupportedOpError(text + "\nsol_tensorflow.supported_ops() lists the TensorFlow ops sol "
                                     "compiles; with fallback=True (the default) TensorFlow runs them and sol "
                                     "the rest.", op=first[0], source=first[1])
        from sol_tensorflow import fallback

        cut = fallback.split(traced)
        warnings.warn(cut.warning(), SolFallbackWarning, stacklevel=_user_stacklevel())
        parts = cut.parts
        graph = parts[0].graph if parts else _stand_in(traced)
        graph.meta[SPLIT_KEY] = cut
        graph.meta[OPTIONS_KEY] = {k: v for k, v in options.items() if k != "training"}
        graph.meta[FALLBACK_KEY] = cut.op_types()
    graph.meta[TRACED_KEY] = traced
    graph.meta["tensorflow.train_options"] = dict(options)  # sol_tensorflow.training.TRAIN_KEY
    return graph


def _passive_openmp() -> None:
    """Let compiled programs' OpenMP threads sleep when idle (``OMP_WAIT_POLICY=PASSIVE``) unless
    the user chose otherwise. Why: TensorFlow's own thread pools keep spinning between ops, and
    OpenMP threads spinning beside them starve each other. Measured on a 2-core machine: a Keras
    MobileNetV2 (batch 1, 32x32) took 750-1100 ms per sol call right after a TensorFlow call with
    spinning threads, 4-10 ms with sleeping ones (and no slower alone). libgomp reads the variable
    when it loads, i.e. with the first compiled program of the process: set it before that."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _stand_in(traced: Traced) -> Graph:
    """What core compiles when TensorFlow runs the whole model: the smallest valid program (the
    wrapper never calls it). Keeps the frontend contract (a graph to compile) without a special
    case in core."""
    graph = Graph(name=f"{traced.name}_fallback")
    x = graph.add_input("x", TensorType((1,), "float32"))
    graph.outputs.append(graph.add_node("relu", [x]).output)
    return graph


def _user_stacklevel() -> int:
    level, frame = 1, sys._getframe(1)
    while frame is not None and frame.f_globals.get("__name__", "").split(".")[0] in (
            "sol", "sol_tensorflow", "contextlib", "tensorflow", "keras"):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level
