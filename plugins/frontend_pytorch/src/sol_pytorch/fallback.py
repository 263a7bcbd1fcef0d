"""PyTorch's side of a model sol compiles in parts: the nodes PyTorch runs between them.

Why this shape. :func:`~sol_pytorch.importer.classify` converts every node it can; the nodes it
cannot (``torch.cumsum``, ``torch.fft``, a custom op) are run by PyTorch, and everything else
should still be compiled, in as few programs as possible (each is a compile and a call). With
``mark`` the classification makes them framework nodes of the one converted graph; core cuts
that graph (:mod:`sol.fallback`: the epoch cut, why it gives the fewest parts, parts that only
move data run on the host), compiles the parts and runs the steps in order, and PyTorch runs its
own nodes (:class:`sol_pytorch.variants.SplitVariant`).

Values cross as they are: a part's inputs are NumPy views of PyTorch's tensors and its outputs
become tensors over the program's result arrays (no copy either way where the memory is
contiguous). Weights stay parameters of each part that reads them (by reference), and shape
arithmetic stays Python numbers; what only PyTorch holds (a complex tensor, a tuple) passes
between its nodes on PyTorch's side.
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

from torch import fx
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind

from sol.plugin_api import Graph, Partition, SolFallbackWarning, SolStep, Value, call_of, partition
from sol_pytorch.importer import Constant, TorchCall, classify, is_static, out_spec, state_tensors, user_outputs

__all__ = ["Part", "SolFallbackWarning", "Split", "split"]

_ATTEMPTS = 16


@dataclass
class Part:
    """A step sol runs: ``sources[i]`` feeds ``graph.inputs[i]``; ``graph.outputs[j]`` gives
    ``results[j]`` (the fx nodes the values stand for; None for a value inside a conversion).
    ``compiled``: False where it only moves data (run on the host)."""

    graph: Graph
    sources: list[fx.Node | None]
    results: list[fx.Node | None]
    compiled: bool = True


Leaf = Constant | tuple[str, Any]
"""An output leaf: a Python value; ``("out", i)``, the marked graph's output i; ``("env", node)``,
a node's value on PyTorch's side (``copy``: an input or a weight, cloned when returned)."""


@dataclass
class Split:
    """A model marked for core's cut: the marked graph, its steps (parts and fx nodes) in run
    order, and what running it on PyTorch's side needs."""

    name: str
    ep: ExportedProgram
    graph: Graph
    steps: list[Part | fx.Node]
    statics: dict[fx.Node, Any]  # weights (the model's tensors) and Python values known at import
    inputs: list[fx.Node]  # the forward arguments' placeholders, in order
    leaves: list[Leaf]
    spec: Any  # torch's pytree spec of the output structure
    fresh: set[fx.Node] = field(default_factory=set)  # leaves returned as copies (inputs, weights)
    fallen: list[str] = field(default_factory=list)  # one line per op PyTorch runs, with its place

    @property
    def parts(self) -> list[Part]:
        """The compiled parts."""
        return [s for s in self.steps if isinstance(s, Part) and s.compiled]

    def warning(self) -> str:
        parts = len(self.parts)
        return (f"sol cannot compile {len(self.fallen)} operation(s) of {self.name}; PyTorch runs them and sol "
                f"compiles the rest ({parts} part{'s' if parts != 1 else ''}):\n" + "\n".join(self.fallen)
                + "\nsol_pytorch.supported_ops() lists what sol compiles; pass fallback=False to make this an error.")


def split(ep: ExportedProgram, model: Any, found: Any = None) -> Split:
    """Classify with framework nodes and let core cut. A node whose PyTorch consumer needs a
    result sol does not keep (a training-only output such as pooling indices) is moved to
    PyTorch and the classification made again. ``found``: a classification without marks,
    whose forced nodes are kept."""
    forced: dict[fx.Node, str] = {}
    for _ in range(_ATTEMPTS):
        found = classify(ep, model, forced, mark=True)
        sources = {n.args[0]: f"{why}, read by PyTorch" for _, n, why in found.problems
                   if n.target is operator.getitem and n.args[0] not in found.failed}
        if not sources:
            return _split(ep, model, found)
        forced.update(sources)  # type: ignore[arg-type]
    raise AssertionError(f"sol_pytorch could not cut {type(model).__name__} into compiled parts")


def _split(ep: ExportedProgram, model: Any, found: Any) -> Split:
    name = type(model).__name__
    graph: Graph = found.graph
    statics: dict[fx.Node, Any] = {}
    inputs: list[fx.Node] = []
    specs = {s.arg.name: s for s in ep.graph_signature.input_specs}
    tensors = state_tensors(ep, model)
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            spec = specs[node.name]
            if spec.kind is InputKind.USER_INPUT:
                inputs.append(node)
            else:
                statics[node] = tensors[str(spec.target)]
        elif node.op == "get_attr":  # a subgraph of a higher-order op PyTorch runs
            statics[node] = getattr(ep.graph_module, str(node.target))
        elif node.op == "call_function" and is_static(node) and node not in found.failed:
            statics[node] = dict.get(found.env, node)

    leaves: list[Leaf] = []
    fresh: set[fx.Node] = set()
    index: dict[Value, int] = {}
    for leaf in user_outputs(ep, name):
        value = dict.get(found.env, leaf) if isinstance(leaf, fx.Node) else None
        if not isinstance(leaf, fx.Node):
            leaves.append(Constant(leaf))
        elif leaf in found.failed or leaf in statics or leaf in inputs:
            leaves.append(("env", leaf))
            if leaf in statics or leaf in inputs:
                fresh.add(leaf)  # returned as is, it would alias the caller's tensor
        elif isinstance(value, Value):
            if value not in index:
                index[value] = len(graph.outputs)
                graph.outputs.append(found.own_buffer(value, leaf))
            leaves.append(("out", index[value]))
        else:
            leaves.append(Constant(value))
    graph.prune_unused()
    cut = partition(graph)
    return Split(name, ep, graph, _steps(cut, found), statics, inputs, leaves, out_spec(ep), fresh,
                 found.problem_lines())


def _steps(cut: Partition, found: Any) -> list[Part | fx.Node]:
    """Core's steps as parts and fx nodes (for reading; core runs them)."""
    nodes: dict[Value, fx.Node] = {}
    for n, v in dict.items(found.env):
        if isinstance(v, Value):
            nodes.setdefault(v, n)
    steps: list[Part | fx.Node] = []
    for step in cut.steps:
        if isinstance(step, SolStep):
            steps.append(Part(step.graph, [nodes.get(v) for v in step.inputs], [nodes.get(v) for v in step.outputs],
                              step.compiled))
        else:
            steps.extend(_handle(n).node for n in step.nodes)
    return steps


def _handle(node: Any) -> TorchCall:
    handle: TorchCall = call_of(node).handle
    return handle
