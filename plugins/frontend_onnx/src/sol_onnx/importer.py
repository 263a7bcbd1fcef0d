"""ONNX model -> sol IR, for one set of input shapes.

The model's inputs may leave dimensions open (a batch named ``N``, an unnamed one): every import
is for concrete shapes (the example inputs', or at run time the feeds'; :mod:`sol_onnx.session`
keeps one compiled variant per shape). With the shapes fixed, ONNX's own shape inference (with
data propagation) gives the type of every tensor it can: the ground truth each converter's
result is checked against (a mismatch is a fallback, never a wrong number), and the types of
what ONNX Runtime computes where sol cannot.

Initializers are weights: a node computing with one gets a parameter holding the array (a view
of the protobuf's bytes, no copy); a node that needs it as a value known now (a reshape target)
reads the array. Any node whose inputs are all known now is evaluated now (core's NumPy
references): the ``Shape -> Gather -> Concat -> Reshape`` chains of exported models fold away.

Nodes sol cannot convert (no converter, a use its converter does not take, another domain, an
input sol cannot hold) make the import fail with :class:`UnsupportedOpError` listing every one
(``fallback=False``), or (the default) are marked for ONNX Runtime (:func:`sol.plugin_api.mark_framework_node`):
core cuts the graph and the session runs those nodes in ONNX Runtime between the compiled parts
(:mod:`sol_onnx.fallback`), with one warning listing them.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import onnx
from onnx import helper

from sol.plugin_api import (
    CTYPES,
    DTYPES,
    FallbackWording,
    Graph,
    Node,
    SolError,
    SolFallbackWarning,
    TensorType,
    UnsupportedOpError,
    ValueKind,
    known_value,
    mark_framework_node,
    partition,
    user_stacklevel,
)
from sol_onnx.functions import function_body
from sol_onnx.loader import DEFAULT_DOMAINS, Loaded, initializer_array, load, uses_external_data
from sol_onnx.ops import CONVERTERS, ONNX_DTYPES, Context, Entry, Unsupported
from sol_onnx.support import DeviceSupport, target_device

log = logging.getLogger("sol")
IMPORT_KEY = "onnx.import"
SMALL = 4096  # initializers up to this many elements stay values for shape inference's data propagation

Spec = tuple[str, TensorType]
"""A model input: its ONNX name and the concrete type of this import."""


@dataclass(frozen=True)
class OnnxCall:
    """The handle of a framework node: the ONNX node, and the tensors its sol inputs and outputs stand for."""

    node: Any  # onnx.NodeProto
    reads: tuple[str, ...]
    writes: tuple[str, ...]


@dataclass
class Imported:
    """What the session needs beside the compiled program (``graph.meta[IMPORT_KEY]``)."""

    loaded: Loaded
    specs: list[Spec]
    outputs: list[tuple[str, Any]]  # per model output: ("sol", index into graph.outputs) or ("static", array)
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (op type, node name, why)
    statics: dict[str, np.ndarray] = field(default_factory=dict)  # known arrays framework nodes read
    types: dict[str, Any] = field(default_factory=dict)  # tensor name -> onnx TypeProto (inferred)
    device: str = ""  # the device whose support the import asked (sol_onnx.support)


# --- inputs -------------------------------------------------------------------------------------


def model_inputs(proto: Any) -> list[Any]:
    """The graph inputs the caller feeds (not initializers listed as inputs, as IR < 4 does)."""
    inits = {t.name for t in proto.graph.initializer}
    return [i for i in proto.graph.input if i.name not in inits]


def dtype_of(type_proto: Any) -> str | None:
    if not type_proto.HasField("tensor_type"):
        return None
    return ONNX_DTYPES.get(type_proto.tensor_type.elem_type)


def declared_dims(type_proto: Any) -> list[int | str | None] | None:
    """Per dimension: its size, its symbolic name, or None (unknown); None for an unknown rank."""
    t = type_proto.tensor_type
    if not t.HasField("shape"):
        return None
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in t.shape.dim]


def input_specs(loaded: Loaded, example_inputs: tuple[Any, ...]) -> list[Spec]:
    """One concrete type per model input: from the examples (arrays or shapes, in input order) or
    the declared shapes, an open dimension taken as 1 where no example says otherwise."""
    inputs = model_inputs(loaded.model)
    if example_inputs and len(example_inputs) != len(inputs):
        raise TypeError(f"{loaded.name} has {len(inputs)} input(s) ({', '.join(i.name for i in inputs)}); got "
                        f"{len(example_inputs)} example input(s)")
    specs = []
    for i, vi in enumerate(inputs):
        dtype = dtype_of(vi.type)
        if dtype is None:
            raise UnsupportedOpError(f"input {vi.name!r} of {loaded.name} is a {helper.printable_type(vi.type)}; sol "
                                     f"takes tensors of {', '.join(DTYPES)}", op="input", source=vi.name)
        dims = declared_dims(vi.type)
        if example_inputs:
            specs.append((vi.name, _example_type(loaded.name, vi.name, example_inputs[i], dims, dtype)))
        elif dims is None:
            raise TypeError(f"input {vi.name!r} of {loaded.name} has no declared shape: pass an example input")
        else:
            specs.append((vi.name, TensorType(tuple(d if isinstance(d, int) else 1 for d in dims), dtype)))
    return specs


def _example_type(model: str, name: str, x: Any, dims: list[Any] | None, dtype: str) -> TensorType:
    if isinstance(x, (tuple, list)) and all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in x):
        shape, given = tuple(int(d) for d in x), dtype
    elif hasattr(x, "shape") and hasattr(x, "dtype"):
        shape, given = tuple(int(d) for d in x.shape), str(np.dtype(x.dtype))
    else:
        raise TypeError(f"example input for {name!r} must be a NumPy array or a shape, got {type(x).__name__}")
    check_shape(model, name, shape, given, dims, dtype)
    return TensorType(shape, dtype)


def check_shape(model: str, name: str, shape: tuple[int, ...], dtype: str, dims: list[Any] | None,
                want: str) -> None:
    """A TypeError/ValueError naming the input, the declared and the given type where they disagree."""
    if dtype != want:
        raise TypeError(f"input {name!r} of {model} is {want}, got {dtype}")
    if dims is None:
        return
    declared = "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"
    if len(shape) != len(dims) or any(isinstance(d, int) and d != s for d, s in zip(dims, shape)):
        raise ValueError(f"input {name!r} of {model} has shape {declared}, got {list(shape)}")


# --- shape inference ----------------------------------------------------------------------------


def infer_types(loaded: Loaded, specs: list[Spec]) -> dict[str, Any]:
    """Tensor name -> TypeProto, from ONNX's shape inference on a shell of the model with the
    inputs' shapes fixed (large weights enter as typed inputs: no copy of their bytes)."""
    proto = loaded.model
    g = onnx.GraphProto(name=proto.graph.name or "model")
    g.node.extend(proto.graph.node)
    g.input.extend(helper.make_tensor_value_info(name, _elem(t.dtype), t.shape) for name, t in specs)
    for t in proto.graph.initializer:
        if uses_external_data(t) or int(np.prod(t.dims)) > SMALL:
            g.input.append(helper.make_tensor_value_info(t.name, t.data_type, list(t.dims)))
        else:
            g.initializer.append(t)
    g.output.extend(proto.graph.output)
    shell = helper.make_model(g, opset_imports=list(proto.opset_import), ir_version=proto.ir_version)
    shell.functions.extend(proto.functions)
    try:
        inferred = onnx.shape_inference.infer_shapes(shell, check_type=False, strict_mode=False, data_prop=True)
    except Exception as exc:  # inference is a check, not a requirement
        log.debug("sol: ONNX shape inference failed for %s: %s", loaded.name, exc)
        return {}
    types = {vi.name: vi.type for vi in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]}
    return types


def _elem(dtype: str) -> int:
    return next(k for k, v in ONNX_DTYPES.items() if v == dtype)


def known_type(type_proto: Any) -> TensorType | None:
    """The concrete type, where inference knows every dimension and sol has the dtype."""
    if type_proto is None:
        return None
    dtype, dims = dtype_of(type_proto), declared_dims(type_proto)
    if dtype is None or dims is None or not all(isinstance(d, int) for d in dims):
        return None
    return TensorType(tuple(dims), dtype)  # type: ignore[arg-type]


# --- conversion ---------------------------------------------------------------------------------


def node_reads(node: Any) -> list[str]:
    """The tensors ``node`` reads: its inputs and what its subgraphs (If, Loop, Scan) read from outside."""
    names = [n for n in node.input if n]
    for a in node.attribute:
        for g in ([a.g] if a.type == onnx.AttributeProto.GRAPH else list(a.graphs)):
            names += [n for n in _outer_reads(g) if n not in names]
    return names


def _outer_reads(g: Any) -> list[str]:
    defined = {i.name for i in g.input} | {t.name for t in g.initializer}
    found: list[str] = []
    for n in g.node:
        for name in node_reads(n):
            if name not in defined and name not in found:
                found.append(name)
        defined.update(o for o in n.output if o)
    return found


class Converter:
    """Converts the nodes of one model for one set of input shapes (see the module doc)."""

    def __init__(self, loaded: Loaded, specs: list[Spec], types: dict[str, Any],
                 support: DeviceSupport | None = None) -> None:
        self.loaded = loaded
        self.types = types
        self.support = support
        self.graph = Graph(name=loaded.name)
        self.ctx = Context(self.graph, loaded.opset)
        self.problems: list[tuple[str, str, str]] = []
        self.unheld: dict[str, Node] = {}  # tensor ONNX Runtime computes that sol cannot hold -> its framework node
        self.fallback_reads: set[str] = set()
        for i, (name, t) in enumerate(specs):
            self.ctx.env[name] = Entry(value=self.graph.add_input(f"input_{i}", t))
        for t in loaded.model.graph.initializer:
            self.ctx.env.setdefault(t.name, _LazyInitializer(t, loaded.base_dir))

    def run(self) -> None:
        for node in self.loaded.model.graph.node:
            self.ctx.source = f"{node.name or node.output[0]} ({node.op_type})"
            why = self._convert(node)
            if why is not None:
                self.problems.append((node.op_type, node.name or (node.output[0] if node.output else "?"), why))
                self._mark(node)

    def _convert(self, node: Any) -> str | None:
        """None when converted, else why not."""
        reads = node_reads(node)
        blocked = next((n for n in reads if n in self.unheld), None)
        if node.domain not in DEFAULT_DOMAINS:
            return f"operator domain {node.domain!r}: sol converts the standard ONNX operators"
        if blocked is not None:
            return f"reads {blocked!r}, whose shape or type is known only when ONNX Runtime computes it"
        if any(n not in self.ctx.env for n in reads):
            return "reads a tensor sol did not convert"
        converter = CONVERTERS.lookup(node.op_type)
        why = "sol has no converter for this operator"
        if converter is not None:
            try:
                start = len(self.graph.nodes)
                results = converter(self.ctx, node)
                self._check_dtypes(node, self.graph.nodes[start:])
                self._record(node, results)
                return None
            except Unsupported as exc:
                why = str(exc)
            except SolError as exc:  # an op's shape rule refused what the converter built
                why = str(exc)
        return self._expand(node, why)

    def _expand(self, node: Any, why: str) -> str | None:
        """Convert ``node`` as ONNX's function body of its operator (:mod:`sol_onnx.functions`),
        where it has one; None when that converted, else why not (``why``: the converter's reason)."""
        body = function_body(node, self.loaded.opset, [self._type_proto(n) if n else None for n in node.input])
        if body is None:
            return why
        for inner in body:
            failed = self._convert(inner)
            if failed is not None:
                return f"{why}; its ONNX function body needs {inner.op_type}: {failed or 'no converter'}"
        return None

    def _type_proto(self, name: str) -> Any:
        """The tensor's ONNX type, for a function body that depends on its inputs' types."""
        e = self.ctx.env.get(name)
        if e is not None and e.static is not None and str(e.static.dtype) in DTYPES:
            return helper.make_tensor_type_proto(_elem(str(e.static.dtype)), e.static.shape)
        if e is not None and e.value is not None:
            return helper.make_tensor_type_proto(_elem(e.value.dtype), e.value.shape)
        return self.types.get(name)

    def _check_dtypes(self, node: Any, added: list[Node]) -> None:
        """Refuse a node sol would compute in a dtype its C-family code generators have no type for
        (float16): ONNX Runtime runs it instead of the compile failing later. A node evaluated now
        (all its inputs known) computes nothing at run time and passes."""
        if all(self.ctx.static(n) is not None for n in node.input if n):
            return
        missing = sorted({v.dtype for n in added for v in [*n.inputs, *n.outputs]} - set(CTYPES))
        if missing:
            raise Unsupported(f"sol's code generators have no {'/'.join(missing)}")
        for n in added if self.support is not None else []:
            why = self.support.why_not(n, self.graph)  # type: ignore[union-attr]
            if why is not None:
                raise Unsupported(why)

    def _record(self, node: Any, results: Any) -> None:
        folded = bool(node.input) and all(self.ctx.static(n) is not None for n in node.input if n)
        entries = {}
        for name, r in zip(node.output, results):
            if not name:
                continue
            if r is None:
                raise Unsupported(f"output {name!r} is not produced by sol's converter")
            if isinstance(r, np.ndarray):
                entry = Entry(static=r)
                got = TensorType(r.shape, str(r.dtype)) if str(r.dtype) in DTYPES else None
            else:
                value = known_value(r, params=True) if folded else None
                entry = Entry(static=value) if value is not None else Entry(value=r)
                got = r.type
            want = known_type(self.types.get(name))
            if want is not None and got is not None and want != got:
                raise Unsupported(f"sol computed {got} where ONNX infers {want}; please report this")
            entries[name] = entry
        if len(results) < len([o for o in node.output if o]):
            raise Unsupported("fewer results than outputs")
        self.ctx.env.update(entries)

    def _mark(self, node: Any) -> None:
        """``node`` as a framework node: it reads the values sol holds, runs after the framework
        nodes whose unheld results it reads, and its results sol can hold are its outputs."""
        reads, inputs, after = [], [], []
        for name in node_reads(node):
            if name in self.unheld:
                if self.unheld[name] not in after:
                    after.append(self.unheld[name])
                continue
            e = self.ctx.env.get(name)
            if e is None:
                continue  # a tensor of the subgraph's own scope
            if e.static is not None:
                self.fallback_reads.add(name)
            else:
                assert e.value is not None
                reads.append(name)
                inputs.append(e.value)
        held = [(o, known_type(self.types.get(o))) for o in node.output if o]
        writes = [(o, t) for o, t in held if t is not None]
        call = OnnxCall(node, tuple(reads), tuple(o for o, _ in writes))
        marked = mark_framework_node(self.graph, call, inputs, [t for _, t in writes], after=after,
                                     label=node.op_type, source=self.ctx.source)
        for (o, _), v in zip(writes, marked.outputs):
            self.ctx.env[o] = Entry(value=v)
        for o, t in held:
            if t is None:
                self.unheld[o] = marked
                self.ctx.env.pop(o, None)

    def outputs(self) -> list[tuple[str, Any]]:
        """The graph's outputs: a value sol computes per model output (an identity where the output
        is an input, a weight or repeated); a known array stays the session's."""
        out: list[tuple[str, Any]] = []
        for o in self.loaded.model.graph.output:
            if o.name in self.unheld:
                raise UnsupportedOpError(f"output {o.name!r} of {self.loaded.name}: its shape is known only when ONNX "
                                         f"Runtime computes it; sol needs every output's shape when optimizing",
                                         op="output", source=o.name)
            e = self.ctx.entry(o.name)
            if e.static is not None:
                out.append(("static", e.static))
                continue
            v = e.value
            assert v is not None
            if v.kind is not ValueKind.NODE or v in self.graph.outputs:
                self.ctx.source = f"output {o.name}"
                v = self.ctx.emit("identity", [v])
            out.append(("sol", len(self.graph.outputs)))
            self.graph.outputs.append(v)
        return out


class _LazyInitializer(Entry):
    """An initializer, read (external data: from its file) when a converter first asks for it."""

    def __init__(self, tensor: Any, base_dir: str | None) -> None:
        super().__init__(initializer=True)
        self._tensor, self._base_dir = tensor, base_dir
        self._array: np.ndarray | None = None

    @property  # type: ignore[override]
    def static(self) -> np.ndarray | None:
        if self._array is None:
            self._array = initializer_array(self._tensor, self._base_dir)
        return self._array

    @static.setter
    def static(self, value: np.ndarray | None) -> None:
        self._array = value




def _drop_dead(graph: Graph) -> None:
    """Sol nodes whose results reach no output and no framework node (a converter that gave up
    half way, folded shape arithmetic) and the weights only they read."""
    needed = set(graph.outputs)
    kept = []
    for node in reversed(graph.nodes):
        if node.op == "framework" or any(v in needed for v in node.outputs):
            kept.append(node)
            needed.update(node.inputs)
    graph.nodes = kept[::-1]
    graph.prune_unused()


# --- entry points -------------------------------------------------------------------------------


def import_model(model: Any, example_inputs: tuple[Any, ...], options: dict[str, Any]) -> Graph:
    """``model`` (a path or a ModelProto) for the example inputs' shapes (or the declared ones)."""
    if options.get("training"):
        raise SolError("sol's ONNX frontend compiles for inference (an ONNX model has no framework autograd to "
                       "plug into): optimize(..., training=False)")
    loaded = load(model)
    graph = import_loaded(loaded, input_specs(loaded, example_inputs), options)
    graph.meta["onnx.options"] = {k: v for k, v in options.items() if k not in ("training", "device")}
    return graph


def import_loaded(loaded: Loaded, specs: list[Spec], options: dict[str, Any],
                  warned: set[str] | None = None, warn: bool = True) -> Graph:
    """The graph of ``loaded`` for ``specs``; see the module doc for what sol cannot convert.
    Warns once, leaving out a warning whose every line is in ``warned`` already (a model compiled
    again for other shapes); ``warn=False``: not at all (a probe)."""
    types = infer_types(loaded, specs)
    device = target_device(options)
    probe = DeviceSupport(device) if options.get("fallback", True) is not False else None
    conv = Converter(loaded, specs, types, probe)
    conv.run()
    if conv.problems and options.get("fallback", True) is False:
        raise unsupported_error(loaded.name, conv.problems)
    outputs = conv.outputs()
    graph = conv.graph
    _drop_dead(graph)
    statics = {name: conv.ctx.env[name].static for name in conv.fallback_reads}
    graph.meta[IMPORT_KEY] = Imported(loaded, specs, outputs, conv.problems, statics, types, device)  # type: ignore[arg-type]
    if conv.problems:
        lines = problem_lines(conv.problems)
        if warn and (warned is None or not set(lines) <= warned):
            parts = len(partition(graph).parts)
            warnings.warn(fallback_warning(loaded.name, conv.problems, parts), SolFallbackWarning,
                          stacklevel=user_stacklevel("onnx", "onnxruntime"))
        if warned is not None:
            warned.update(lines)
    return graph


WORDING = FallbackWording("ONNX node(s)", "ONNX Runtime",
                          "sol_onnx.supported_ops() lists the ONNX operators sol converts")
# the fallback warning's lines, the warning, and the fallback=False error (naming op type, node and why)
problem_lines, fallback_warning, unsupported_error = WORDING.lines, WORDING.warning, WORDING.error
