"""Core's own frontend: networks built in sol's IR, optimized like any framework's model.

``sol.optimize(graph, *example_inputs, device="ve")`` takes a :class:`sol.ir.Graph` and returns
a :class:`CompiledGraph`: NumPy arrays in (one per graph input, in ``graph.inputs`` order), a list
of NumPy arrays out (one per graph output, in ``graph.outputs`` order, also when there is only
one). So ``pip install sol-core sol-device-<x>`` alone is a working install: no framework needed.

A list even for one output, as :class:`sol.program.Program`, ``compile_graph`` and
``sol.debug.run_reference`` return: code moving from ``compile_graph(g, dev)(x)[0]`` to
``sol.optimize(g, device=dev)(x)[0]`` must not silently get the first row of a lone array.

The user's graph is never changed: passes rewrite graphs in place, so the compiled graph is built
from a copy, parameters included (a snapshot taken at ``optimize``: changing the graph or its
arrays afterwards changes nothing compiled; optimize again for that).

Operations sol has no op for can still be part of such a network: a framework node
(:func:`sol.fallback.mark`) whose handle is a Python callable over NumPy arrays; sol compiles
the rest in as few parts as those nodes allow and calls the callables between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from sol.errors import SolError
from sol.fallback import FrameworkStep, PartitionedProgram, call_of, is_framework, is_partitioned, validate_partitioned
from sol.ir import Graph, TensorType, Value, ValueKind
from sol.program import check_arrays
from sol.roles import Frontend

if TYPE_CHECKING:
    from sol.program import Program


class IRFrontend(Frontend):
    """Frontend "ir": :class:`sol.ir.Graph` in, :class:`CompiledGraph` out."""

    name = "ir"
    module = "sol"  # `import sol.ir` is core's IR module itself

    def accepts(self, model: Any) -> bool:
        return isinstance(model, Graph)

    def import_graph(self, model: Any, example_inputs: tuple[Any, ...], options: dict[str, Any]) -> Graph:
        from sol.passes.validate import validate

        graph: Graph = model
        if options.get("training"):
            raise SolError(
                f"sol.optimize(graph, training=True): a sol IR graph has no framework autograd for sol to plug "
                f"into; sol.autodiff.compile_training(graph, wrt, device=...) compiles its forward and backward "
                f"programs (graph {graph.name!r})")
        if not graph.outputs:
            raise SolError(f"graph {graph.name!r} has no outputs: set graph.outputs to the values it computes")
        if is_partitioned(graph):  # nodes NumPy runs (see the module doc)
            validate_partitioned(graph, "building it (before sol changed anything)")
            for n in graph.nodes:
                if is_framework(n) and not callable(call_of(n).handle):
                    raise SolError(f"graph {graph.name!r}: framework node {n.name} has a {type(call_of(n).handle)}"
                                   f" handle; in a sol IR graph it is a Python callable over NumPy arrays")
        else:
            validate(graph, "building it (before sol changed anything)")
        check_examples(graph, example_inputs)
        return _snapshot(graph)

    def wrap(self, program: Program | PartitionedProgram, model: Any, graph: Graph) -> CompiledGraph:
        return CompiledGraph(program, [v.name for v in graph.inputs])


class CompiledGraph:
    """A sol IR graph compiled for one device: ``compiled(*arrays) -> list of arrays``.

    Each input must have exactly the shape and dtype of its graph input (no casts, no
    broadcasting: a wrong one is a TypeError/ValueError naming both); the result is a new list of
    arrays the caller owns, one per graph output, also for a single output."""

    def __init__(self, program: Program | PartitionedProgram, input_names: Sequence[str]) -> None:
        self.program = program
        self.input_names = list(input_names)

    @property
    def device(self) -> str:
        return self.program.device

    @property
    def input_types(self) -> list[TensorType]:
        return list(self.program.input_types)

    @property
    def output_types(self) -> list[TensorType]:
        return list(self.program.output_types)

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        program = self.program
        if isinstance(program, PartitionedProgram):
            check_arrays(program.name, self.input_names, program.input_types, inputs)
            outs = program.run(list(inputs), _NumpySteps())
            # fresh arrays the caller owns, also where an output is an input, a weight or a
            # callable's result that is (a view of) what it was given
            return [np.array(o, copy=True) if v.kind is not ValueKind.NODE or any(
                np.may_share_memory(o, x) for x in inputs) else o for o, v in zip(outs, program.graph.outputs)]
        return list(program(*inputs))

    def __repr__(self) -> str:
        ins = ", ".join(f"{n}: {t}" for n, t in zip(self.input_names, self.input_types))
        outs = ", ".join(map(str, self.output_types))
        return f"<sol CompiledGraph {self.program.name} on {self.device}: ({ins}) -> [{outs}]>"


class _NumpySteps:
    """How a sol IR graph's steps run: programs on NumPy arrays; a framework node's handle is a
    Python callable, called with its inputs' arrays, returning one array per output (one array
    alone for a single output), each checked against the declared type: never a wrong result."""

    def sol(self, index: int, program: Program, values: list[Any]) -> list[np.ndarray]:
        return list(program(*values))

    def framework(self, step: FrameworkStep, values: list[Any]) -> list[np.ndarray]:
        env: dict[Value, Any] = dict(zip(step.inputs, values))
        for node in step.nodes:
            got = call_of(node).handle(*(env[v] for v in node.inputs))
            outs = [got] if len(node.outputs) == 1 and not isinstance(got, (list, tuple)) else list(got or [])
            if len(outs) != len(node.outputs):
                raise SolError(f"framework node {node.name} returned {len(outs)} array(s) for "
                               f"{len(node.outputs)} declared output(s)")
            for v, o in zip(node.outputs, outs):
                a = np.asarray(o)
                if a.shape != v.shape or str(a.dtype) != v.dtype:
                    raise SolError(f"framework node {node.name} returned {a.dtype}{list(a.shape)} for its output "
                                   f"{v.name}, declared {v.type}")
                env[v] = a
        return [env[v] for v in step.outputs]


def check_examples(graph: Graph, examples: Sequence[Any]) -> None:
    """Example inputs are optional (a graph's inputs carry their types); given, they must be one
    per graph input, each an array of exactly that shape and dtype or a shape: a graph's shapes are
    fixed when it is built, so a different one is an error, not a re-specialization."""
    if not examples:
        return
    if len(examples) != len(graph.inputs):
        raise TypeError(f"graph {graph.name!r} has {len(graph.inputs)} input(s) ({_describe(graph.inputs)}); "
                        f"got {len(examples)} example input(s)")
    for i, (example, v) in enumerate(zip(examples, graph.inputs)):
        label = f"graph {graph.name!r} input {i} ({v.name}: {v.type})"
        if hasattr(example, "shape") and hasattr(example, "dtype"):
            dtype = str(example.dtype).rsplit(".", 1)[-1]  # "float32", also from a framework's "torch.float32"
            if dtype != v.dtype:
                raise TypeError(f"{label}: the example has dtype {dtype}; sol casts nothing, pass {v.dtype}")
            shape = tuple(int(d) for d in example.shape)
        elif _is_shape(example):
            shape = tuple(int(d) for d in example)
        else:
            raise TypeError(f"{label}: an example input is an array or a shape (a tuple of ints), "
                            f"got {type(example).__name__}")
        if shape != v.shape:
            raise ValueError(f"{label}: the example has shape {shape}; a graph's shapes are fixed when it is "
                             f"built (build it for {shape} to run that shape)")


def _is_shape(x: Any) -> bool:
    return isinstance(x, (tuple, list)) and all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) for d in x)


def _describe(values: Sequence[Value]) -> str:
    return ", ".join(f"{v.name}: {v.type}" for v in values) or "none"


def _snapshot(graph: Graph) -> Graph:
    """A copy sol may rewrite: new nodes and values, and parameter and constant arrays copied, so
    that neither sol's passes nor the user's later changes reach the other side."""
    from sol.autodiff.graphs import clone_graph

    copy, _ = clone_graph(graph)
    for v in copy.params + copy.consts:
        assert v.data is not None  # validated: PARAM and CONST values carry their data
        v.data = np.array(v.data, copy=True, order="C")
    return copy
