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
and its Keras layer (``fallback=False``), or (the default) the whole model runs in TensorFlow with
one warning listing them: never a wrong result.
"""

from __future__ import annotations

import sys
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import tensorflow as tf

from sol.errors import SolError, UnsupportedOpError
from sol.ir import Graph, TensorType, Value
from sol_tensorflow.ops import CONVERTERS, NCHW, Context, Entry, Unsupported, dtype_name

TRACED_KEY = "tensorflow.traced"
FALLBACK_KEY = "tensorflow.fallback"
_SKIP = frozenset({"NoOp", "Assert"})


class SolFallbackWarning(UserWarning):
    """The model runs in TensorFlow because sol cannot compile some of its operations."""


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


def trace(model: Any, example_inputs: tuple[Any, ...]) -> Traced:
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
            return model(list(xs) if keras_inputs else xs[0], training=False)

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


def convert(traced: Traced) -> Converted:
    fn = traced.fn
    graph = Graph(name=traced.name)
    ctx = Context(graph)
    handles = {id(v.handle): v for v in traced.variables}
    resources: dict[str, Any] = {}
    params: dict[int, Value] = {}
    captured = dict((internal.name, ext) for ext, internal in fn.graph.captures)
    user_inputs = fn.inputs[:len(fn.inputs) - len(fn.captured_inputs)]
    for i, t in enumerate(user_inputs):
        ctx.env[t.name] = Entry(tf=graph.add_input(f"input_{i}", TensorType(tuple(int(d) for d in t.shape),
                                                                             dtype_name(t.dtype))))
    failed: set[str] = set()
    problems: list[tuple[str, str, str]] = []
    for op in fn.graph.get_operations():
        if op.type in _SKIP or not op.outputs:
            continue
        if any(t.name in failed for t in op.inputs):
            failed.update(t.name for t in op.outputs)
            continue
        ctx.source = f"{op.name} ({op.type})"
        try:
            if op.type == "Placeholder":
                t = op.outputs[0]
                if t.name in ctx.env:
                    continue
                ext = captured.get(t.name)
                if ext is None:
                    raise Unsupported("a placeholder that is neither an input nor a captured value")
                if t.dtype == tf.resource:
                    var = handles.get(id(ext))
                    if var is None:
                        raise Unsupported("a captured resource that is not a variable of the model")
                    resources[t.name] = var
                else:
                    ctx.env[t.name] = Entry(static=np.asarray(ext.numpy()))
                continue
            if op.type == "ReadVariableOp":
                var = resources.get(op.inputs[0].name)
                if var is None:
                    raise Unsupported("reads a resource that is not a captured variable")
                if id(var) not in params:
                    data = np.asarray(var.value())  # zero-copy; see the module doc
                    params[id(var)] = graph.add_param(f"{var.name}#{len(params)}", data)
                ctx.env[op.outputs[0].name] = Entry(tf=params[id(var)])
                continue
            if op.type == "Const":
                ctx.env[op.outputs[0].name] = Entry(static=tf.make_ndarray(op.get_attr("value")))
                continue
            if op.inputs and all(ctx.env.get(t.name, Entry()).static is not None for t in op.inputs):
                values = [tf.get_static_value(t) for t in op.outputs]
                if all(v is not None for v in values):
                    for t, v in zip(op.outputs, values):
                        ctx.env[t.name] = Entry(static=np.asarray(v))
                    continue
            converter = CONVERTERS.get(op.type)
            if converter is None:
                raise Unsupported("")
            results = converter(ctx, op)
            for t, r in zip(op.outputs, results):
                ctx.env[t.name] = _entry(t, r)
        except Unsupported as exc:
            problems.append((op.type, op.name, str(exc)))
            failed.update(t.name for t in op.outputs)
    if not problems:
        for t in fn.outputs:
            try:
                graph.outputs.append(ctx.tf(t))
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
    if options.get("training"):
        raise SolError("sol's TensorFlow frontend compiles inference only (training=True was given); "
                       "training support comes in a later version")
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
                                     "compiles; with fallback=True (the default) TensorFlow runs the model.",
                                     op=first[0], source=first[1])
        warnings.warn(text + "\nTensorFlow runs the whole model; pass fallback=False to make this an error.",
                      SolFallbackWarning, stacklevel=_user_stacklevel())
        graph = _stand_in(traced)
        graph.meta[FALLBACK_KEY] = [t for t, _, _ in converted.problems]
    graph.meta[TRACED_KEY] = traced
    return graph


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
