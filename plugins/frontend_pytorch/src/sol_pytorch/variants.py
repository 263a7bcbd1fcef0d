"""Compiled variants of a model: one per call signature (input shapes and dtypes, non-tensor
argument values), each the result of one import and compile.

Why variants and not shape-generic code: sol's planner and code generators specialize every loop
bound and memory offset on static shapes, which is where its speed comes from. A call with new
shapes (batch 3 after batch 8) is imported and compiled again, once, and kept; the compile cache
makes a shape seen before in any process cheap. Non-tensor arguments (a flag, a count) select
Python branches while tracing, so they are part of the signature too.

A variant is either *whole* (the model is one sol program) or *split* (core's parts with PyTorch
running the operations sol cannot compile between them; see :mod:`sol.fallback` and
:mod:`sol_pytorch.fallback`).
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import fx
from torch.utils import _pytree as pytree

from sol.plugin_api import (
    Buffer,
    FrameworkStep,
    Graph,
    PartitionedProgram,
    Program,
    SolFallbackWarning,
    UnsupportedOpError,
    Value,
    call_of,
    compile_partitioned,
    is_partitioned,
)
from sol_pytorch import fallback, trace_cache
from sol_pytorch.aten.base import LAYOUT_DEPENDENT
from sol_pytorch.importer import (
    IN_PLACE,
    Constant,
    NotExportable,
    OutputLayout,
    TorchCall,
    classify,
    example_values,
    output_layout,
    trace,
    user_stacklevel,
    warn_training_mode,
)
from sol_pytorch.structure import Restructured, unflatten

KEY = "pytorch.signature"
OPTIONS = "pytorch.options"
SPLIT = "pytorch.split"
LAYOUTS = "pytorch.memory_layouts"
"""``Graph.meta`` keys the frontend records on what it imports (core never reads them)."""

Signature = tuple[tuple[Any, Any], ...]
"""Per argument: ``(shape, torch dtype)`` for a tensor, ``(type, value)`` for anything else."""

MAX_VARIANTS = 8
"""Default of the ``max_variants`` option: variants of each kind an optimized module keeps."""


def max_variants(options: dict[str, Any]) -> int:
    """The ``max_variants`` option, checked: a positive int (a ValueError names a wrong value)."""
    value = options.get("max_variants", MAX_VARIANTS)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"max_variants must be a positive int (variants kept per optimized module), got {value!r}")
    return value


def memory_layouts(values: Sequence[Any]) -> tuple[tuple[tuple[int, ...], int] | None, ...]:
    """Each tensor's strides and storage offset: what a layout-dependent variant is made for."""
    return tuple((tuple(v.stride()), int(v.storage_offset())) if isinstance(v, torch.Tensor) else None for v in values)


def signature(values: Sequence[Any]) -> Signature:
    """What a compiled variant is specialized on: each tensor's shape and dtype, each other
    argument's type and value."""
    return tuple((tuple(v.shape), v.dtype) if isinstance(v, torch.Tensor) else (type(v), v) for v in values)


# --- import and compile -----------------------------------------------------------------------


def import_model(model: torch.nn.Module, example_inputs: Sequence[Any], options: dict[str, Any],
                 warned: set[str] | None = None) -> Graph:
    """The graph ``sol.optimize`` compiles: the whole model, or where PyTorch must run some
    operations (``fallback``, on by default) the first compiled part, with the whole cut in
    ``graph.meta`` for :func:`make_variant`. Warns once listing the operations PyTorch runs
    (lines already in ``warned`` are not warned about again). ``options["training"]``: the
    training import instead (:func:`sol_pytorch.training.import_training`).

    A whole inference graph is kept in the trace cache (:mod:`sol_pytorch.trace_cache`) and
    taken from there, not traced, when the same model is imported for the same arguments again,
    in any process (``trace_cache=False`` or ``SOL_TRACE_CACHE=0``: always traced)."""
    if options.get("training"):
        from sol_pytorch.training import import_training

        return import_training(model, example_inputs, options, warned)
    values = example_values(model, example_inputs)
    key = trace_cache.model_key(model, values, options) if trace_cache.enabled(options) else None
    cached = trace_cache.load(key, model) if key else None
    if cached is not None:
        warn_training_mode(model)  # as tracing would
        graph = cached
    else:
        graph = _import_traced(model, values, options, warned)
        layout = output_layout(graph)
        # whole graphs only: a split one holds the exported program, a rebuilt result the traced
        # objects, a layout with buffers the forward updates the model's live tensors
        # nor a graph specialized on its inputs' memory layout (the trace cache's key is not)
        if key and SPLIT not in graph.meta and DYNAMO not in graph.meta and LAYOUT_DEPENDENT not in graph.meta and not (
                layout is not None and (isinstance(layout.spec, Restructured) or layout.buffers)):
            trace_cache.store(key, graph, model)
    graph.meta[KEY] = signature(values)
    graph.meta[OPTIONS] = dict(options)
    if LAYOUT_DEPENDENT in graph.meta:
        graph.meta[LAYOUTS] = memory_layouts(values)
    return graph


def _import_traced(model: torch.nn.Module, values: tuple[Any, ...], options: dict[str, Any],
                   warned: set[str] | None) -> Graph:
    try:
        ep = trace(model, values, options)
    except NotExportable as exc:
        if not options.get("fallback", True):
            raise NotExportable(type(model).__name__, f"{exc.reason}. {NO_EXPORT_HINT}") from exc.__cause__
        return dynamo_graph(model, values, options, exc.reason, warned)
    found = classify(ep, model)
    if not found.problems:
        graph = found.finish()
    elif not options.get("fallback", True):
        raise found.unsupported()
    else:
        try:
            cut = fallback.split(ep, model, found)
        except UnsupportedOpError as exc:
            if exc.op != IN_PLACE:
                raise
            # Parts in PyTorch and in-place updates: Dynamo's graphs carry the updates themselves.
            return dynamo_graph(model, values, options, "it updates tensors in place, and PyTorch must run some of "
                                "its operations", warned, exported=True)
        graph = cut.graph
        graph.meta[SPLIT] = cut
        new = [line for line in cut.fallen if line not in (warned if warned is not None else ())]
        if new:
            if warned is not None:
                warned.update(new)
            warnings.warn(cut.warning(), SolFallbackWarning, stacklevel=user_stacklevel())
    return graph


def compile_variant(model: torch.nn.Module, values: Sequence[Any], device: str | None, options: dict[str, Any],
                    warned: set[str] | None = None) -> Variant:
    """Import ``model`` for these argument values and compile it for ``device`` (in parts where
    PyTorch runs some operations: :mod:`sol.fallback`)."""
    from sol.plugin_api import compile_graph

    graph = import_model(model, values, options, warned)
    if is_partitioned(graph):
        return make_variant(compile_partitioned(graph, device, options=options), graph)
    return make_variant(compile_graph(graph, device, options=options), graph)


def make_variant(program: Program | PartitionedProgram, graph: Graph) -> Variant:
    """The runnable variant for ``program`` (compiled from ``graph``, as :func:`import_model`
    made it)."""
    key = graph.meta.get(KEY)
    if key is None:  # a graph from elsewhere: its inputs are the forward's tensors
        key = tuple((t.shape, getattr(torch, t.dtype)) for t in program.input_types)
    variant: Variant
    if DYNAMO in graph.meta:
        variant = DynamoVariant(key, program, graph.meta[DYNAMO])
    elif isinstance(program, PartitionedProgram):
        variant = SplitVariant(key, program, graph.meta[SPLIT])
    else:
        variant = WholeVariant(key, program, output_layout(graph) or _flat_layout(len(program.output_types)))
    variant.layouts = graph.meta.get(LAYOUTS)
    return variant


# --- running ----------------------------------------------------------------------------------


class Variant:
    """One compiled variant; called with the forward arguments in order (validated)."""

    def __init__(self, key: Signature, program: Program) -> None:
        self.key = key
        self.program = program  # the (first) program: what ``SolModule.program`` shows
        # The inputs' strides and storage offsets where the program depends on them (as_strided):
        # a call whose tensors lie otherwise in memory must not run it.
        self.layouts: tuple[Any, ...] | None = None

    def fits(self, values: Sequence[Any]) -> bool:
        """Whether this call's tensors lie in memory as the variant assumes (always, but for a
        layout-dependent one)."""
        return self.layouts is None or memory_layouts(values) == self.layouts

    def __call__(self, values: Sequence[Any]) -> Any:
        raise NotImplementedError

    @property
    def programs(self) -> list[Program]:
        return [self.program]

    @property
    def fallen(self) -> list[str]:
        """The operations PyTorch runs (one line each, with their place in the model)."""
        return []


class WholeVariant(Variant):
    """The model is one program: tensors in, the output structure rebuilt around its results."""

    def __init__(self, key: Signature, program: Program, layout: OutputLayout) -> None:
        super().__init__(key, program)
        self.layout = layout
        self.updates_buffers = bool(layout.buffers)
        # The common case, one tensor returned as it is: no structure to rebuild at each call.
        self.single = (not layout.buffers and not layout.updates and layout.slots == (0,)
                       and isinstance(layout.spec, pytree.TreeSpec) and layout.spec.is_leaf())
        self.route = in_place(program) if self.single else None

    def __call__(self, values: Sequence[Any]) -> Any:
        inputs = [v for v in values if isinstance(v, torch.Tensor)]
        if self.single:
            route = self.route
            outs = route(self.program, inputs) if route is not None else None
            return outs[0] if outs is not None else run_program(self.program, inputs)[0]
        for position, buffer in self.layout.buffers:  # ascending positions: each lands where the program reads it
            inputs.insert(position, buffer)
        tensors = run_program(self.program, inputs)
        if self.layout.updates:
            tensors = self._update_inputs(inputs, tensors)
        leaves = [s.value if isinstance(s, Constant) else tensors[s] for s in self.layout.slots]
        return unflatten(leaves, self.layout.spec)

    def _update_inputs(self, inputs: list[torch.Tensor], tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        """The forward's in-place updates of its inputs, done as eager does them: the new values
        written into the caller's tensors (after the run: the program read the old ones). An
        updated input the forward also returns comes back as that very tensor (eager's alias)."""
        tensors = list(tensors)
        with torch.no_grad():
            for position, out in self.layout.updates:
                target = inputs[position]
                target.copy_(tensors[out])
                tensors[out] = target
        return tensors


# --- models torch.export cannot take: the Dynamo path -------------------------------------------

DYNAMO = "pytorch.dynamo"
"""``Graph.meta`` key of a model run through ``torch.compile(backend="sol")``: its :class:`DynamoRun`."""

NO_EXPORT_HINT = ("With fallback=True (the default) sol compiles such a model through torch.compile's Dynamo path "
                  "(torch.compile(model, backend='sol')), where Python runs what cannot be traced and sol compiles "
                  "the graphs in between.")


@dataclass(frozen=True, eq=False)
class DynamoRun:
    """A model ``torch.export`` cannot take, compiled by ``torch.compile`` with sol's backend:
    ``run`` is the compiled callable (Dynamo guards and re-specializes it by itself), ``reason``
    why ``torch.export`` failed."""

    run: Any
    reason: str
    line: str  # the fallback line (warned once per module)
    updates_buffers: bool = False  # the forward updates the model's buffers in place (not a change by the user)


_DYNAMO_RUNS: weakref.WeakKeyDictionary[torch.nn.Module, dict[str, Any]] = weakref.WeakKeyDictionary()
"""Per model and options, its one ``torch.compile`` object: every variant shares it (and
Dynamo's cache of traced frames), so a new input signature costs no new compile object."""


def _compiled(model: torch.nn.Module, options: dict[str, Any]) -> Any:
    from sol_pytorch.dynamo import sol_backend

    runs = _DYNAMO_RUNS.setdefault(model, {})
    key = repr(sorted((k, repr(v)) for k, v in options.items()))
    if key not in runs:
        backend_options = {k: v for k, v in options.items() if k != "training"}

        def backend(gm: fx.GraphModule, example_inputs: Sequence[Any]) -> Any:
            return sol_backend(gm, example_inputs, options=backend_options)

        runs[key] = torch.compile(model, backend=backend)
    return runs[key]


def dynamo_graph(model: torch.nn.Module, values: tuple[Any, ...], options: dict[str, Any], reason: str,
                 warned: set[str] | None, exported: bool = False) -> Graph:
    """The graph of a model ``torch.export`` cannot take (see :class:`DynamoVariant`), or took
    but sol cannot cut (``exported``: the reason says why): one framework node, which core cuts
    into no sol part; warned once per reason. The compiled callable runs once here (without
    gradients, with the random number generator's state restored), so Dynamo traces and sol
    compiles during ``optimize``, not at the first call; it runs on copies of the example inputs
    and the model's buffers are put back afterwards, so a forward that updates tensors in place
    changes nothing of the user's."""
    from sol.plugin_api import mark_framework_node

    name = type(model).__name__
    line = f"  {name} as a whole [{'sol' if exported else 'torch.export'}: {reason}]"
    if warned is None or line not in warned:
        if warned is not None:
            warned.add(line)
        lead = f"sol cannot compile {name} in parts ({reason})" if exported else \
            f"torch.export cannot trace {name} ({reason})"
        warnings.warn(f"{lead}; sol compiles it through torch.compile's Dynamo path instead (torch.compile(model, "
                      f"backend='sol')): Python runs what cannot be traced, sol compiles the graphs in between. Pass "
                      f"fallback=False to make this an error.", SolFallbackWarning, stacklevel=user_stacklevel())
    run = _compiled(model, options)
    with torch.no_grad(), torch.random.fork_rng(devices=[]), warnings.catch_warnings():
        warnings.simplefilter("ignore", SolFallbackWarning)  # said once above, or by each graph's own warning
        kept = [(b, b.clone()) for b in model.buffers()]
        run(*(v.clone() if isinstance(v, torch.Tensor) else v for v in values))
        for buffer, value in kept:
            buffer.copy_(value)
    graph = Graph(name=f"{name}_dynamo")
    mark_framework_node(graph, None, [], [], label="torch.compile(backend='sol') runs the model")
    graph.meta[DYNAMO] = DynamoRun(run, reason, line, updates_buffers=exported)
    return graph


class DynamoVariant(Variant):
    """A model run through ``torch.compile(model, backend="sol")`` (:mod:`sol_pytorch.dynamo`):
    Dynamo traces what it can into graphs, sol compiles each (in parts where PyTorch must run
    some operations), and Python runs what lies between them."""

    def __init__(self, key: Signature, program: Program | PartitionedProgram, run: DynamoRun) -> None:
        super().__init__(key, program)  # type: ignore[arg-type]
        self.run = run
        self.updates_buffers = run.updates_buffers

    @property
    def programs(self) -> list[Program]:
        return []  # compiled per graph by the backend, not held here

    @property
    def fallen(self) -> list[str]:
        return [self.run.line]

    def __call__(self, values: Sequence[Any]) -> Any:
        return self.run.run(*values)


class SplitVariant(Variant):
    """A model compiled in parts: core runs the steps in order (:meth:`PartitionedProgram.run`);
    PyTorch's values live in one list of slots (one per fx node), where its nodes run."""

    def __init__(self, key: Signature, program: PartitionedProgram, cut: fallback.Split) -> None:
        super().__init__(key, next(iter(program.programs), None))  # type: ignore[arg-type]
        self.partitioned = program
        self.cut = cut
        slot: dict[fx.Node, int] = {n: i for i, n in enumerate(cut.ep.graph.nodes)}
        self._template: list[Any] = [None] * len(slot)
        for node, value in cut.statics.items():
            self._template[slot[node]] = value
        self._inputs = [slot[n] for n in cut.inputs]
        self._tensors = [i for i, n in enumerate(cut.inputs) if isinstance(n.meta.get("val"), torch.Tensor)]
        self._run: dict[int, Any] = {}  # id(framework node) -> how PyTorch runs it
        self._slots: dict[Value, int] = {}  # a framework node's outputs -> their slots
        for step in program.steps:
            if isinstance(step, FrameworkStep):
                for marked in step.nodes:
                    handle: TorchCall = call_of(marked).handle
                    self._run[id(marked)] = _torch_node(handle, marked.inputs, slot)
                    self._slots.update((v, slot[handle.node]) for v in marked.outputs)
        self._leaves: list[tuple[Any, bool]] = [
            (leaf, False) if isinstance(leaf, Constant) else
            (leaf, False) if leaf[0] == "out" else (("env", slot[leaf[1]]), leaf[1] in cut.fresh)
            for leaf in cut.leaves]

    @property
    def programs(self) -> list[Program]:
        return self.partitioned.programs

    @property
    def fallen(self) -> list[str]:
        return list(self.cut.fallen)

    def __call__(self, values: Sequence[Any]) -> Any:
        env = list(self._template)
        for s, v in zip(self._inputs, values):
            env[s] = v
        with torch.no_grad():  # inference, as the compiled parts: PyTorch's nodes record no graph
            outs = self.partitioned.run([values[i] for i in self._tensors], _TorchSteps(self, env))
        leaves, copied = [], set()
        for leaf, copy in self._leaves:
            if isinstance(leaf, Constant):
                leaves.append(leaf.value)
                continue
            kind, at = leaf
            if kind == "out":
                leaves.append(_as_tensor(outs[at]))
                continue
            if copy and at not in copied and isinstance(env[at], torch.Tensor):
                env[at] = env[at].clone()  # once: a tensor returned twice is one tensor
                copied.add(at)
            leaves.append(env[at])
        return unflatten(leaves, self.cut.spec)


class _TorchSteps:
    """One call's :class:`~sol.fallback.StepRunner`: programs on NumPy views of the tensors,
    PyTorch's nodes on the call's slots."""

    def __init__(self, variant: SplitVariant, env: list[Any]) -> None:
        self.variant = variant
        self.env = env

    def sol(self, index: int, program: Program, values: list[Any]) -> list[torch.Tensor]:
        return run_program(program, [_as_tensor(v) for v in values])

    def framework(self, step: FrameworkStep, values: list[Any]) -> list[Any]:
        given = dict(zip(step.inputs, values))
        for node in step.nodes:
            self.variant._run[id(node)](self.env, given)
        slots = self.variant._slots
        return [self.env[slots[v]] for v in step.outputs]


def _torch_node(handle: TorchCall, inputs: Sequence[Value], slot: dict[fx.Node, int]) -> Any:
    """How PyTorch runs one fx node: its sol inputs put in their slots, then the op."""
    node = handle.node
    target, args, kwargs, out = node.target, node.args, node.kwargs, slot[node]
    feeds = [(v, slot[r]) for v, r in zip(inputs, handle.reads)]

    def run(env: list[Any], given: dict[Value, Any]) -> None:
        for v, s in feeds:
            if v in given:
                env[s] = _as_tensor(given[v])

        def value(n: fx.Node) -> Any:
            return env[slot[n]]

        env[out] = target(*fx.node.map_arg(args, value), **fx.node.map_arg(kwargs, value))  # type: ignore[operator]

    return run


def _as_tensor(v: Any) -> Any:
    """A value core hands over: a tensor already, or a weight's or constant's array."""
    return torch_tensor(v) if isinstance(v, np.ndarray) else v


# --- crossing between PyTorch and sol ---------------------------------------------------------


def _flat_layout(n: int) -> OutputLayout:
    """One tensor for one output, a tuple for several: for graphs not made by our importer."""
    leaves = list(range(n))
    spec = pytree.tree_flatten(leaves[0] if n == 1 else tuple(leaves))[1]
    return OutputLayout(spec, tuple(leaves))


CPU = torch.empty(0).__dlpack_device__()
"""A CPU tensor's DLPack device, ``(1, 0)``: memory with this DLPack device is PyTorch's CPU memory."""
DLPACK_CUDA = 2
"""DLPack's device type of CUDA memory (kDLCUDA): a program on such memory runs on PyTorch's CUDA
tensors in place (the GPU's id must be the tensor's). Not yet run on a GPU (no GPU was lent)."""


class InPlace:
    """How one program's calls cross from PyTorch to sol in place (see :func:`run_program`):
    per input and output, its type, shape and torch dtype, looked up once per program."""

    __slots__ = ("memory", "host", "inputs", "outputs", "allocate", "device")

    def __init__(self, program: Program) -> None:
        self.memory = program.memory
        self.host = program.memory.shares_host
        # Where the tensors must live: the CPU, or the GPU whose memory the program runs on
        # (DLPack kDLCUDA, device id); outputs are allocated there by PyTorch.
        dl = program.memory.dlpack_device
        self.device = torch.device("cpu") if dl == CPU else torch.device("cuda", dl[1])  # type: ignore[index]
        self.inputs = [(t, t.shape, getattr(torch, t.dtype)) for t in program.input_types]
        self.outputs = [(t, t.shape, getattr(torch, t.dtype)) for t in program.output_types]
        # Host memory: the outputs are PyTorch's own tensors, given to the program to write into
        # (an empty one may have no address, which the program's buffer check refuses: those
        # come from the program's memory instead).
        self.allocate = all(t.numel > 0 for t in program.output_types)

    def __call__(self, program: Program, tensors: Sequence[Any]) -> list[torch.Tensor] | None:
        """The program run on the tensors' own memory, the results written into new torch
        tensors; None where a tensor does not fit (not a contiguous CPU tensor of the compiled
        shape and dtype): then the caller takes the host-array route, which checks and says why."""
        memory = self.memory
        if len(tensors) != len(self.inputs):
            return None
        ins = []
        device = self.device
        for t, (tt, shape, dtype) in zip(tensors, self.inputs):
            if isinstance(t, torch.Tensor) and t.device != device and device.type != "cpu":
                # PyTorch's own words for a tensor on the wrong device (a module on the GPU
                # given a CPU tensor): never a silent copy.
                raise RuntimeError(f"Expected all tensors to be on the same device, but found at least two "
                                   f"devices, {device} and {t.device}!")
            if not isinstance(t, torch.Tensor) or t.device != device or t.dtype is not dtype or t.shape != shape \
                    or not t.is_contiguous() or t.is_neg():
                return None
            ins.append(Buffer(memory, t.data_ptr(), tt, None, t))
        if device.type != "cpu":
            outs = [torch.empty(shape, dtype=dtype, device=device) for _, shape, dtype in self.outputs]
            program.run(ins, [Buffer(memory, o.data_ptr(), tt, None, o) for o, (tt, _, _) in zip(outs, self.outputs)])
            return outs
        if self.host and self.allocate:
            outs = [torch.empty(shape, dtype=dtype) for _, shape, dtype in self.outputs]
            program.run(ins, [Buffer(memory, o.data_ptr(), tt, None, o) for o, (tt, _, _) in zip(outs, self.outputs)])
            return outs
        if self.host:
            return [torch.from_numpy(b.numpy()) for b in program.run(ins)]
        return [torch.from_dlpack(b) for b in program.run(ins)]  # type: ignore[arg-type]


_IN_PLACE: weakref.WeakKeyDictionary[Program, InPlace | None] = weakref.WeakKeyDictionary()


def in_place(program: Program) -> InPlace | None:
    """The in-place route for ``program``, or None where its memory is not PyTorch's CPU memory
    (its DLPack device is not the CPU's) or its device stages buffers through the host anyway."""
    try:
        return _IN_PLACE[program]
    except KeyError:
        dl = program.memory.dlpack_device
        ours = dl == CPU or (dl is not None and dl[0] == DLPACK_CUDA and torch.cuda.is_available())
        route = InPlace(program) if program.runs_in_place and ours else None
        _IN_PLACE[program] = route
        return route


def run_program(program: Program, tensors: Sequence[Any]) -> list[torch.Tensor]:
    """``program`` on PyTorch tensors, returning tensors.

    Where the program's memory is PyTorch's (x86: host memory, DLPack device CPU) and its
    device runs on buffers directly, the tensors are used in place: their pointers go to the
    device, and the outputs are new torch tensors the program writes into; no copy either way.
    Why outputs allocated by PyTorch rather than program memory wrapped through DLPack: the
    results are then ordinary tensors of PyTorch's own allocator (no NumPy base object kept
    alive, resizable, aligned as PyTorch aligns), and ``torch.empty`` costs less than exporting
    and importing a DLPack capsule per output. Elsewhere (a device with memory of its own):
    host arrays in, host arrays out, the device copying (:meth:`Program.__call__`)."""
    route = in_place(program)
    if route is not None:
        outs = route(program, tensors)
        if outs is not None:
            return outs
    return [torch_tensor(a) for a in program(*(host_array(t) for t in tensors))]


def host_array(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of the tensor's memory (a copy only when the layout needs one)."""
    t = t.detach()
    if t.is_conj() or t.is_neg():
        t = t.resolve_conj().resolve_neg()
    if not t.is_contiguous():
        t = t.contiguous()
    return t.numpy()


def torch_tensor(a: np.ndarray) -> torch.Tensor:
    a = np.asarray(a)
    if not a.flags.writeable:  # torch tensors are writable: give the caller its own memory
        a = a.copy()
    return torch.from_numpy(a)
