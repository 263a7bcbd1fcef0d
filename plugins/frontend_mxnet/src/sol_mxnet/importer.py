"""A Gluon ``HybridBlock`` (or a Symbol with its parameters) -> sol IR, for one set of input shapes.

The block's symbol graph is what its hybridized form runs: the block is called once with MXNet
``Symbol`` variables (``data0``, ``data1``, ...), which builds the graph without running it and
without changing the block (no cached graph is kept). The graph's JSON (``Symbol.tojson()``) lists
every node with its op, name and string attributes; each node is converted by the converter of
its op (:mod:`sol_mxnet.ops`). MXNet's own shape and type inference (on the graph's internals, for
the example shapes) is the ground truth every converted result is checked against: a mismatch is
a fallback, never a wrong number.

Parameters: every MXNet variable that is not a data input is a ``Parameter`` of the block (weights,
BatchNorm's running statistics). Two ways to hand them over:

* as graph *parameters* holding host copies (``weights=``): the inference program gets them
  compiled in (BatchNorm folded into the convolutions, weights in the library's layout, once).
  The wrapper watches MXNet's write counters (:mod:`sol_mxnet.versions`) and builds the program
  again from new copies when a weight changed, so it never computes with stale weights;
* as graph *inputs* read at every call (the wrapper hands the parameters' own arrays over
  through DLPack, without a copy): training, differentiable calls, and inference where MXNet's
  write counters cannot be read or the user asked for ``live_weights=True``.

Nodes sol cannot convert (no converter, an attribute combination the converter refuses, a dtype
the device cannot compile) make the import fail with :class:`UnsupportedOpError` naming every one
(``fallback=False``), or are marked for MXNet (:func:`sol.plugin_api.mark_framework_node`): core
cuts the graph and the wrapper runs those nodes in MXNet between the compiled parts, with one
warning naming them and their blocks.
"""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from typing import Any

import mxnet as mx
import numpy as np

from sol.plugin_api import (
    DTYPES,
    FallbackWording,
    Graph,
    Node,
    SolError,
    SolFallbackWarning,
    TensorType,
    UnsupportedOpError,
    Value,
    ValueKind,
    mark_framework_node,
    partition,
    user_stacklevel,
)
from sol_mxnet.ops import CONVERTERS, Attrs, Context, Entry, Key, MXNode, Unsupported

IMPORT_KEY = "mxnet.import"
_DTYPES = {"float32", "float64", "int32", "int64", "int8", "uint8"}


@dataclass
class SymbolModel:
    """What the importer reads: the symbol graph of a block, its data inputs and its parameters."""

    name: str
    symbol: Any  # mx.sym.Symbol (grouped outputs)
    data_names: list[str]
    params: dict[str, Any]  # variable name -> gluon Parameter
    single: bool  # the block returns one array (not a list)
    structure: Any = None  # how the outputs nest (see :func:`nest`); None: a flat list


@dataclass(frozen=True, eq=False)
class MXCall:
    """The handle of a framework node: the MXNet node (as its JSON) and what it reads."""

    node: dict[str, Any]  # the JSON node
    reads: tuple[Key, ...]  # tensors read, in order of the node's inputs
    params: tuple[tuple[int, str], ...]  # (input position, parameter name) the wrapper fills in
    num_outputs: int


@dataclass
class Imported:
    """What the wrapper needs beside the compiled program (``graph.meta[IMPORT_KEY]``)."""

    model: SymbolModel
    input_types: list[TensorType]
    feeds: list[tuple[str, Any]]  # per graph input: ("data", i), ("param", name) or ("mask", (p, shape))
    updates: list[str]  # the parameters whose new values follow the outputs (BatchNorm's running statistics)
    num_outputs: int
    training: bool
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (op, node name, why)
    wrt: list[int] = field(default_factory=list)  # graph inputs that take a gradient
    # the generation (sol_mxnet.versions.WeightsWatch) of the weights compiled in; None: the
    # parameters are graph inputs, read at every call
    weights_generation: int | None = None


# --- the symbol graph ---------------------------------------------------------------------------


def symbol_model(block: Any, count: int) -> SymbolModel:
    """The symbol graph of ``block`` called on ``count`` data inputs (see the module doc)."""
    if not isinstance(block, mx.gluon.HybridBlock):
        raise TypeError(f"sol's MXNet frontend takes a gluon.HybridBlock, got {type(block).__name__}")
    inputs = [mx.sym.var(f"data{i}") for i in range(count)]
    out = block(*inputs)
    flat = _flatten(out)
    if not all(isinstance(s, mx.sym.Symbol) for s in flat):
        raise TypeError(f"{block.name}: a symbolic call returned {type(out).__name__}, not Symbols")
    single = isinstance(out, mx.sym.Symbol) and len(out.list_outputs()) == 1
    symbol = flat[0] if len(flat) == 1 else mx.sym.Group(flat)
    params = dict(block.collect_params().items())
    data = [s.name for s in inputs]
    return SymbolModel(block.name, symbol, data, params, single, _structure(out))


def _structure(out: Any) -> Any:
    """How a block's outputs nest: a Symbol is the number of outputs it has; a list or tuple is
    (its type, the structures of its items). Gluon's RNN layers return ``(out, [h, c])``."""
    if isinstance(out, (list, tuple)):
        return (type(out), [_structure(o) for o in out])
    return len(out.list_outputs())


def nest(structure: Any, flat: list[Any]) -> Any:
    """``flat`` (the outputs in order) nested as ``structure`` says; a multi-output Symbol is a
    list, as MXNet's imperative call of such an op returns."""
    items = iter(flat)

    def build(s: Any) -> Any:
        if isinstance(s, tuple):
            kind, parts = s
            return kind(build(p) for p in parts)
        got = [next(items) for _ in range(s)]
        return got[0] if s == 1 else got

    return build(structure)


def param_shape(p: Any) -> tuple[int, ...]:
    """A Parameter's shape (one loaded from a file may know it only from its array)."""
    shape = p.shape
    if shape is None or any(not d for d in shape):
        shape = p.data().shape
    return tuple(int(d) for d in shape)


def _flatten(out: Any) -> list[Any]:
    if isinstance(out, (list, tuple)):
        return [s for o in out for s in _flatten(o)]
    return [out]


def _json_graph(symbol: Any) -> dict[str, Any]:
    return json.loads(symbol.tojson())  # type: ignore[no-any-return]


def inferred_types(model: SymbolModel, shapes: dict[str, tuple[int, ...]],
                   dtypes: dict[str, Any]) -> dict[str, TensorType]:
    """MXNet's inference on the graph's internals: internal output name -> type (empty where it fails)."""
    internals = model.symbol.get_internals()
    try:
        _, out_shapes, _ = internals.infer_shape(**shapes)
        _, out_types, _ = internals.infer_type(**dtypes)
    except Exception:  # inference is a check, not a requirement  # noqa: BLE001
        return {}
    if out_shapes is None or out_types is None:
        return {}
    found = {}
    for name, shape, dtype in zip(internals.list_outputs(), out_shapes, out_types):
        dt = np.dtype(dtype).name
        if shape is not None and dt in DTYPES:
            found[name] = TensorType(tuple(int(d) for d in shape), dt)
    return found


def output_names(node: dict[str, Any], internal: set[str]) -> list[str]:
    """The internal names of a node's visible outputs (``name_output`` or ``name_output0``, ...)."""
    name = node["name"]
    if f"{name}_output" in internal:
        return [f"{name}_output"]
    found, i = [], 0
    while f"{name}_output{i}" in internal:
        found.append(f"{name}_output{i}")
        i += 1
    return found


# --- conversion ---------------------------------------------------------------------------------


class Converter:
    """Converts one symbol graph for one set of input types (see the module doc)."""

    def __init__(self, model: SymbolModel, input_types: list[TensorType], training: bool,
                 support: Any = None, weights: dict[str, np.ndarray] | None = None) -> None:
        self.model = model
        self.weights = weights  # parameter name -> host copy (graph parameters); None: graph inputs
        self.graph = Graph(name=_graph_name(model.name))
        self.ctx = Context(self.graph, training)
        self.support = support
        self.json = _json_graph(model.symbol)
        self.feeds: list[tuple[str, Any]] = []
        self.problems: list[tuple[str, str, str]] = []
        self.failed: set[Key] = set()  # tensors sol cannot hold (read by nothing sol compiles)
        self.params_used: dict[str, Value] = {}
        self._data: dict[str, Value] = {}
        shapes = {n: t.shape for n, t in zip(model.data_names, input_types)}
        dtypes = {n: np.dtype(t.dtype) for n, t in zip(model.data_names, input_types)}
        for name, p in model.params.items():
            shapes.setdefault(name, param_shape(p))
            dtypes.setdefault(name, np.dtype(p.dtype))
        self.types = inferred_types(model, shapes, dtypes)
        self.input_types = input_types
        for i, (name, t) in enumerate(zip(model.data_names, input_types)):
            v = self.graph.add_input(f"input_{i}", t)
            self.feeds.append(("data", i))
            self._data[name] = v

    def run(self) -> None:
        nodes = self.json["nodes"]
        internal = set(self.types)
        for index, raw in enumerate(nodes):
            if raw["op"] == "null":
                self._variable(index, raw)
                continue
            node = MXNode(index, raw["op"], raw["name"], Attrs(dict(raw.get("attrs") or raw.get("param") or {})),
                          [(int(i[0]), int(i[1])) for i in raw["inputs"]])
            self.ctx.source = node.label
            names = output_names(raw, internal) if internal else []
            node.extra["types"] = [self.types.get(n) for n in names]  # MXNet's inference, for 0-sized dims
            why = self._convert(node, names)
            if why is not None:
                self.problems.append((node.op, node.name, why))
                self._mark(node, raw, names)

    def _variable(self, index: int, raw: dict[str, Any]) -> None:
        name = raw["name"]
        key = (index, 0)
        self.ctx.names[key] = name
        if name in self._data:
            self.ctx.env[key] = Entry(value=self._data[name])
            return
        param = self.model.params.get(name)
        if param is None:
            raise SolError(f"{self.model.name}: the symbol graph reads {name!r}, which is neither a data input nor a "
                           f"parameter of the block")
        held = None if self.weights is None else self.weights.get(name)
        dtype = np.dtype(param.dtype if held is None else held.dtype).name
        if dtype not in _DTYPES:
            self.failed.add(key)  # only MXNet can hold it
            return
        if held is not None:
            v = self.graph.add_param(f"param_{len(self.params_used)}", held)
        else:
            v = self.graph.add_input(f"param_{len(self.params_used)}", TensorType(param_shape(param), dtype))
            self.feeds.append(("param", name))
        self.params_used[name] = v
        self.ctx.env[key] = Entry(value=v)

    def _convert(self, node: MXNode, names: list[str]) -> str | None:
        """None when converted, else why not."""
        blocked = next((k for k in node.inputs if k in self.failed or k not in self.ctx.env), None)
        if blocked is not None:
            return f"reads {self.ctx.label(blocked)}, which only MXNet computes"
        converter = CONVERTERS.lookup(node.op)
        if converter is None:
            return "sol has no converter for this operator"
        start = len(self.graph.nodes)
        masks, updates = len(self.ctx.masks), len(self.ctx.updates)
        try:
            results = list(converter(self.ctx, node))
            self._check(node, names, results, self.graph.nodes[start:])
        except (Unsupported, SolError) as exc:
            del self.ctx.masks[masks:], self.ctx.updates[updates:]  # a mask input stays, unread: pruned later
            return str(exc)
        for i, r in enumerate(results):
            self.ctx.env[(node.index, i)] = Entry(value=r) if isinstance(r, Value) else Entry(static=r)
        return None

    def _check(self, node: MXNode, names: list[str], results: list[Any], added: list[Node]) -> None:
        if names and len(results) < len(names):
            raise Unsupported(f"{len(results)} result(s) for {len(names)} output(s)")
        for name, r in zip(names, results):
            got = r.type if isinstance(r, Value) else TensorType(r.shape, str(r.dtype))
            want = self.types.get(name)
            if want is not None and want != got:
                raise Unsupported(f"sol computed {got} where MXNet infers {want}; please report this")
        for n in added if self.support is not None else []:
            why = self.support.why_not(n, self.graph)
            if why is not None:
                raise Unsupported(why)

    def _mark(self, node: MXNode, raw: dict[str, Any], names: list[str]) -> None:
        """``node`` as a framework node: it reads what sol holds and the parameters it names; its
        results whose types MXNet infers are values sol nodes may read."""
        reads, inputs, params = [], [], []
        for pos, key in enumerate(node.inputs):
            name = self.ctx.names.get(key)
            if name in self.model.params:
                params.append((pos, name))
                continue
            if key in self.failed or key not in self.ctx.env:
                raise UnsupportedOpError(f"{node.label} of {self.model.name} reads a tensor that neither sol nor "
                                         f"MXNet's inference can type", op=node.op, source=node.name)
            reads.append(key)
            inputs.append(self.ctx.value(key))
        types = [self.types.get(n) for n in names]
        if not names or any(t is None for t in types):
            for i in range(max(len(names), 1)):
                self.failed.add((node.index, i))
            raise UnsupportedOpError(f"{node.label} of {self.model.name}: MXNet cannot infer its output types for "
                                     f"these input shapes, which sol needs to run it in MXNet", op=node.op,
                                     source=node.name)
        call = MXCall(raw, tuple(reads), tuple(params), len(names))
        marked = mark_framework_node(self.graph, call, inputs, types, label=node.op,  # type: ignore[arg-type]
                                     source=node.label)
        for i, v in enumerate(marked.outputs):
            self.ctx.env[(node.index, i)] = Entry(value=v)

    def outputs(self) -> list[Value]:
        out = []
        for head in self.json["heads"]:
            key = (int(head[0]), int(head[1]))
            if key in self.failed or key not in self.ctx.env:
                raise UnsupportedOpError(f"output {self.ctx.label(key)} of {self.model.name} cannot be computed",
                                         op="output", source=str(key))
            v = self.ctx.value(key)
            if v.kind is not ValueKind.NODE or v in out:
                v = self.graph.add_node("identity", [v]).output  # an output of its own buffer
            out.append(v)
        return out


def _graph_name(name: str) -> str:
    """A graph name from the block's name (untrusted: letters, digits and underscores only)."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)[:64] or "mxnet_model"


# --- entry points -------------------------------------------------------------------------------


def convert(model: SymbolModel, input_types: list[TensorType], training: bool, options: dict[str, Any],
            warned: set[str] | None = None, weights: tuple[int, dict[str, np.ndarray]] | None = None) -> Graph:
    """The graph of ``model`` for ``input_types``; ``training``: BatchNorm with batch statistics and
    Dropout with masks (new running statistics as extra outputs). ``weights``: ``(generation,
    host copies)`` to compile in (inference only); without them the parameters are graph inputs.
    See the module doc."""
    from sol_mxnet.support import DeviceSupport, target_device

    if weights is not None and training:
        raise ValueError("weights are compiled in for inference only (training updates the running statistics)")
    fallback = options.get("fallback", True) is not False
    support = DeviceSupport(target_device(options)) if fallback else None
    conv = Converter(model, input_types, training, support, None if weights is None else weights[1])
    conv.run()
    if conv.problems and not fallback:
        raise unsupported_error(model.name, conv.problems)
    graph = conv.graph
    graph.outputs = conv.outputs()
    num_outputs = len(graph.outputs)
    # where each graph input comes from at a call, in input order (data, parameters and dropout
    # masks were added as the converters met them)
    source = dict(zip([v for v in graph.inputs if v not in {m for m, _, _ in conv.ctx.masks}], conv.feeds))
    source.update({m: ("mask", (p, shape)) for m, p, shape in conv.ctx.masks})
    feeds = [source[v] for v in graph.inputs]
    for _, v in conv.ctx.updates:
        graph.outputs.append(graph.add_node("identity", [v]).output if v.kind is not ValueKind.NODE else v)
    _drop_dead(graph, feeds)
    trainable = {n for n, p in model.params.items() if p.grad_req != "null"}
    wrt = [i for i, (kind, src) in enumerate(feeds) if graph.inputs[i].dtype.startswith("float")
           and (kind == "data" or (kind == "param" and src in trainable))]
    graph.meta[IMPORT_KEY] = Imported(model, input_types, feeds, [n for n, _ in conv.ctx.updates], num_outputs,
                                      training, conv.problems, wrt, None if weights is None else weights[0])
    if conv.problems:
        lines = problem_lines(conv.problems)
        if warned is None or not set(lines) <= warned:
            parts = len(partition(graph).parts)
            warnings.warn(fallback_warning(model.name, conv.problems, parts), SolFallbackWarning,
                          stacklevel=user_stacklevel("mxnet", "sol_mxnet"))
        if warned is not None:
            warned.update(lines)
    return graph


def _drop_dead(graph: Graph, feeds: list[tuple[str, Any]]) -> None:
    """Sol nodes whose results reach no output and no framework node; the graph inputs stay (the
    wrapper feeds them by position), weights and constants only dead nodes read go."""
    needed = set(graph.outputs)
    kept = []
    for node in reversed(graph.nodes):
        if node.op == "framework" or any(v in needed for v in node.outputs):
            kept.append(node)
            needed.update(node.inputs)
    graph.nodes = kept[::-1]
    graph.prune_unused()
    assert len(graph.inputs) == len(feeds)


WORDING = FallbackWording("MXNet operator(s)", "MXNet",
                          "sol_mxnet.supported_ops() lists the MXNet operators sol converts")
# the fallback warning's lines, the warning, and the fallback=False error (naming operator, node and why)
problem_lines, fallback_warning, unsupported_error = WORDING.lines, WORDING.warning, WORDING.error


def example_type(i: int, x: Any) -> TensorType:
    """An example input's type: an NDArray, a NumPy array or a shape (float32)."""
    if isinstance(x, (tuple, list)) and all(isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in x):
        return TensorType(tuple(int(d) for d in x), "float32")
    if hasattr(x, "shape") and hasattr(x, "dtype"):
        dtype = np.dtype(x.dtype).name
        if dtype not in _DTYPES:
            raise TypeError(f"example input {i} is {dtype}; sol's MXNet frontend takes {', '.join(sorted(_DTYPES))}")
        return TensorType(tuple(int(d) for d in x.shape), dtype)
    raise TypeError(f"example input {i} must be an NDArray, a NumPy array or a shape, got {type(x).__name__}")


def as_block(model: Any, options: dict[str, Any]) -> Any:
    """``model`` as a HybridBlock: a block as it is; a Symbol with ``params=`` (a dict of name ->
    array, or the ``(arg_params, aux_params)`` pair of ``mx.model.load_checkpoint``) and
    ``data_names=`` (default: the arguments without a parameter) as a ``SymbolBlock``; a bound
    Module's symbol with its parameters."""
    if isinstance(model, mx.gluon.HybridBlock):
        return model
    if isinstance(model, mx.mod.BaseModule):
        if not (model.binded and model.params_initialized):
            raise TypeError("sol optimizes a Module after bind() and init_params() (or set_params())")
        arg_params, aux_params = model.get_params()
        return symbol_block(model.symbol, {**arg_params, **aux_params}, list(model.data_names))
    if isinstance(model, mx.sym.Symbol):
        params = options.get("params")
        if isinstance(params, tuple) and len(params) == 2:
            params = {**params[0], **params[1]}
        if not isinstance(params, dict):
            raise TypeError("a Symbol needs its parameters: optimize(symbol, x, params={name: NDArray}) or "
                            "params=(arg_params, aux_params) as mx.model.load_checkpoint returns them")
        return symbol_block(model, params, options.get("data_names"))
    raise TypeError(f"sol's MXNet frontend takes a gluon.HybridBlock, a Symbol or a Module, got {type(model).__name__}")


def symbol_block(symbol: Any, params: dict[str, Any], data_names: list[str] | None) -> Any:
    """A ``SymbolBlock`` computing ``symbol`` with ``params`` (copied into its own Parameters)."""
    names = [n for n in symbol.list_arguments() if n not in params] if data_names is None else list(data_names)
    # a training-only head's label (SoftmaxOutput's) is an argument without a parameter: not an input
    names = [n for n in names if not n.endswith("_label")] or names
    block = mx.gluon.SymbolBlock(symbol, [mx.sym.var(n) for n in names])
    block.collect_params().load_dict({k: v if isinstance(v, mx.nd.NDArray) else mx.nd.array(v)
                                      for k, v in params.items()}, ctx=mx.cpu(), allow_missing=False,
                                     ignore_extra=True)
    return block


def _finish_init(block: Any, examples: tuple[Any, ...], types: list[TensorType]) -> None:
    """Parameters whose shapes MXNet infers on the first call (deferred initialization): that first
    call, on zeros, in inference mode and without recording (it changes no value)."""
    deferred = [n for n, p in block.collect_params().items() if p._data is None]  # noqa: SLF001
    if not deferred:
        return
    if any(p._deferred_init == () for n, p in block.collect_params().items() if n in deferred):  # noqa: SLF001
        raise TypeError(f"{block.name} has uninitialized parameters ({', '.join(deferred[:4])}): call "
                        f"initialize() first")
    xs = [mx.nd.zeros(t.shape, dtype=t.dtype) for t in types]
    with mx.autograd.pause(train_mode=False):
        block(*xs)


def weights_watch(model: SymbolModel, options: dict[str, Any]) -> Any:
    """The watch of the model's weights (:class:`sol_mxnet.versions.WeightsWatch`) when inference
    programs can hold them; None where they must read them at every call (``live_weights=True``,
    or MXNet's write counters cannot be read here)."""
    if options.get("live_weights", False):
        return None
    from sol_mxnet.versions import WeightsWatch, reader

    read = reader()
    return None if read is None else WeightsWatch(list(model.params.items()), read)


def _host_context(example_inputs: tuple[Any, ...]) -> Any:
    """The CPU context the calls will come on: the first example NDArray's, else ``cpu(0)``."""
    first = example_inputs[0]
    if isinstance(first, mx.nd.NDArray) and first.context.device_type == "cpu":
        return first.context
    return mx.cpu()


def import_model(model: Any, example_inputs: tuple[Any, ...], options: dict[str, Any]) -> Graph:
    """``model`` for the example inputs' types, for inference (see the module doc)."""
    block = as_block(model, options)
    if not example_inputs:
        raise TypeError("sol needs example inputs for an MXNet block: optimize(net, x) or "
                        "optimize(net, (1, 3, 224, 224))")
    types = [example_type(i, x) for i, x in enumerate(example_inputs)]
    _finish_init(block, example_inputs, types)
    model_ = symbol_model(block, len(types))
    watch = weights_watch(model_, options)
    ctx = _host_context(example_inputs)
    weights = None if watch is None else watch.values(ctx)
    graph = convert(model_, types, False, options, weights=weights)
    graph.meta["mxnet.watch"] = watch
    graph.meta["mxnet.context"] = ctx
    graph.meta["mxnet.block"] = block
    graph.meta["mxnet.options"] = {k: v for k, v in options.items() if k not in ("training", "params", "data_names")}
    return graph
