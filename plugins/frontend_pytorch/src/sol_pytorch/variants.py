"""Compiled variants of a model: one per call signature (input shapes and dtypes, non-tensor
argument values), each the result of one import and compile.

Why variants and not shape-generic code: sol's planner and code generators specialize every loop
bound and memory offset on static shapes, which is where its speed comes from. A call with new
shapes (batch 3 after batch 8) is imported and compiled again, once, and kept; the compile cache
makes a shape seen before in any process cheap. Non-tensor arguments (a flag, a count) select
Python branches while tracing, so they are part of the signature too.

A variant is either *whole* (the model is one sol program) or *split* (sol's programs with
PyTorch running the operations sol cannot compile between them; see :mod:`sol_pytorch.fallback`).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import fx
from torch.utils import _pytree as pytree

from sol.ir import Graph
from sol.program import Program
from sol_pytorch import fallback, trace_cache
from sol_pytorch.importer import (
    Constant,
    OutputLayout,
    classify,
    example_values,
    output_layout,
    trace,
    user_stacklevel,
    warn_training_mode,
)

KEY = "pytorch.signature"
OPTIONS = "pytorch.options"
SPLIT = "pytorch.split"
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
        if key and SPLIT not in graph.meta:  # whole graphs only: a split one holds the exported program
            trace_cache.store(key, graph, model)
    graph.meta[KEY] = signature(values)
    graph.meta[OPTIONS] = dict(options)
    return graph


def _import_traced(model: torch.nn.Module, values: tuple[Any, ...], options: dict[str, Any],
                   warned: set[str] | None) -> Graph:
    ep = trace(model, values, options)
    found = classify(ep, model)
    if not found.problems:
        graph = found.finish()
    elif not options.get("fallback", True):
        raise found.unsupported()
    else:
        cut = fallback.split(ep, model, found)
        parts = cut.parts
        graph = parts[0].graph if parts else Graph(name=f"{cut.name}_empty")
        graph.meta[SPLIT] = cut
        new = [line for line in cut.fallen if line not in (warned if warned is not None else ())]
        if new:
            if warned is not None:
                warned.update(new)
            warnings.warn(cut.warning(), fallback.SolFallbackWarning, stacklevel=user_stacklevel())
    return graph


def compile_variant(model: torch.nn.Module, values: Sequence[Any], device: str | None, options: dict[str, Any],
                    warned: set[str] | None = None) -> Variant:
    """Import ``model`` for these argument values and compile it for ``device``."""
    from sol.api import compile_graph

    graph = import_model(model, values, options, warned)
    return make_variant(compile_graph(graph, device, options=options), graph)


def make_variant(program: Program, graph: Graph) -> Variant:
    """The runnable variant for ``program`` (compiled from ``graph``, as :func:`import_model`
    made it); the other parts of a split model are compiled here, for the same device."""
    from sol.api import compile_graph

    key = graph.meta.get(KEY)
    if key is None:  # a graph from elsewhere: its inputs are the forward's tensors
        key = tuple((t.shape, getattr(torch, t.dtype)) for t in program.input_types)
    cut: fallback.Split | None = graph.meta.get(SPLIT)
    if cut is None:
        layout = output_layout(graph) or _flat_layout(len(program.output_types))
        return WholeVariant(key, program, layout)
    options = graph.meta.get(OPTIONS, {})
    parts = cut.parts
    programs = [program] + [compile_graph(p.graph, program.device, options=options) for p in parts[1:]]
    return SplitVariant(key, program, cut, dict(zip(map(id, parts), programs)))


# --- running ----------------------------------------------------------------------------------


class Variant:
    """One compiled variant; called with the forward arguments in order (validated)."""

    def __init__(self, key: Signature, program: Program) -> None:
        self.key = key
        self.program = program  # the (first) program: what ``SolModule.program`` shows

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

    def __call__(self, values: Sequence[Any]) -> Any:
        arrays = [host_array(v) for v in values if isinstance(v, torch.Tensor)]
        tensors = [torch_tensor(a) for a in self.program(*arrays)]
        leaves = [s.value if isinstance(s, Constant) else tensors[s] for s in self.layout.slots]
        return pytree.tree_unflatten(leaves, self.layout.spec)


class SplitVariant(Variant):
    """Compiled parts and PyTorch nodes in run order, over one list of slots (one per fx node):
    a call fills the argument slots, runs each step and reads the output leaves."""

    def __init__(self, key: Signature, program: Program, cut: fallback.Split, programs: dict[int, Program]) -> None:
        super().__init__(key, program)
        self.cut = cut
        self._programs = [programs[id(p)] for p in cut.parts]
        slot: dict[fx.Node, int] = {n: i for i, n in enumerate(cut.ep.graph.nodes)}
        self._template: list[Any] = [None] * len(slot)
        for node, value in cut.statics.items():
            self._template[slot[node]] = value
        self._inputs = [slot[n] for n in cut.inputs]
        self._steps = [self._part_step(s, programs[id(s)], slot) if isinstance(s, fallback.Part)
                       else self._torch_step(s, slot) for s in cut.steps]
        fresh = set(cut.statics) | set(cut.inputs)  # returned as is, these would alias the caller's tensors
        self._leaves: list[tuple[Constant | int, bool]] = [
            (leaf, False) if isinstance(leaf, Constant) else (slot[leaf], leaf in fresh) for leaf in cut.leaves]

    @property
    def programs(self) -> list[Program]:
        return list(self._programs)

    @property
    def fallen(self) -> list[str]:
        return list(self.cut.fallen)

    @staticmethod
    def _part_step(part: fallback.Part, program: Program, slot: dict[fx.Node, int]) -> Any:
        sources = [slot[n] for n in part.sources]
        results = [(slot[n], i) for n, i in zip(part.results, part.index)]

        def run(env: list[Any]) -> None:
            outs = program(*(host_array(env[s]) for s in sources))
            tensors = [torch_tensor(a) for a in outs]
            for s, i in results:
                env[s] = tensors[i]

        return run

    @staticmethod
    def _torch_step(node: fx.Node, slot: dict[fx.Node, int]) -> Any:
        target, args, kwargs, out = node.target, node.args, node.kwargs, slot[node]

        def run(env: list[Any]) -> None:
            def value(n: fx.Node) -> Any:
                return env[slot[n]]

            env[out] = target(*fx.node.map_arg(args, value), **fx.node.map_arg(kwargs, value))  # type: ignore[operator]

        return run

    def __call__(self, values: Sequence[Any]) -> Any:
        env = list(self._template)
        for s, v in zip(self._inputs, values):
            env[s] = v
        with torch.no_grad():  # inference, as the compiled parts: PyTorch's nodes record no graph
            for step in self._steps:
                step(env)
        leaves, copied = [], set()
        for leaf, copy in self._leaves:
            if isinstance(leaf, Constant):
                leaves.append(leaf.value)
                continue
            if copy and leaf not in copied and isinstance(env[leaf], torch.Tensor):
                env[leaf] = env[leaf].clone()  # once: a tensor returned twice is one tensor
                copied.add(leaf)
            leaves.append(env[leaf])
        return pytree.tree_unflatten(leaves, self.cut.spec)


# --- crossing between PyTorch and sol ---------------------------------------------------------


def _flat_layout(n: int) -> OutputLayout:
    """One tensor for one output, a tuple for several: for graphs not made by our importer."""
    leaves = list(range(n))
    spec = pytree.tree_flatten(leaves[0] if n == 1 else tuple(leaves))[1]
    return OutputLayout(spec, tuple(leaves))


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
