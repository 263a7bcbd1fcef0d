"""Cut an exported graph into parts sol compiles and nodes PyTorch runs between them.

Why this shape. :func:`~sol_pytorch.importer.classify` converts every node it can; the nodes it
cannot (``torch.cumsum``, ``torch.fft``, a custom op) are run by PyTorch, and everything else
should still be compiled, in as few programs as possible (each is a compile and a call).

Regions are formed by *epochs*: a node's epoch is the number of PyTorch nodes on the longest path
that reaches it (a PyTorch node takes the epoch of its inputs, a sol node one more than a PyTorch
input's). All sol nodes of one epoch form one region, even where they are not connected, and the
run order is: region 0, PyTorch nodes of epoch 0, region 1, ... A region only reads PyTorch nodes
of lower epochs and a PyTorch node only reads regions of its own epoch or lower, so the order
needs no cycle check and the number of programs is the smallest any cut can have along the
longest chain of PyTorch nodes.

Values cross as they are: a region's inputs are NumPy views of PyTorch's tensors and its outputs
become tensors over the program's result arrays (no copy either way where the memory is
contiguous). Weights stay parameters of each region that reads them (by reference), constants
folded during classification are folded again where they are read, and shape arithmetic stays
Python numbers. A region that would only move data (reshape, transpose, cast, copy, concat) is
not worth a compile and a host round trip: PyTorch runs its nodes, in place.
"""

from __future__ import annotations

import operator
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind

from sol.ir import Graph
from sol_pytorch.importer import (
    Constant,
    RegionError,
    RegionImporter,
    classify,
    is_ignored,
    is_static,
    state_tensors,
    user_outputs,
)

DATA_MOVEMENT = frozenset({"reshape", "transpose", "cast", "identity", "concat"})
"""Ops of a region PyTorch runs as well as sol would (views or plain copies)."""

_ATTEMPTS = 16


class SolFallbackWarning(UserWarning):
    """Some operations of the model run in PyTorch because sol cannot compile them."""


@dataclass
class Part:
    """A region sol compiles: ``sources[i]`` feeds ``graph.inputs[i]``; ``results[j]`` is set from
    ``graph.outputs[index[j]]``."""

    graph: Graph
    sources: list[fx.Node]
    results: list[fx.Node]
    index: list[int]


@dataclass
class Split:
    """A model cut into compiled parts and PyTorch nodes, in run order (``steps``)."""

    name: str
    ep: ExportedProgram
    steps: list[Part | fx.Node]
    statics: dict[fx.Node, Any]  # weights (the model's tensors) and Python values known at import
    inputs: list[fx.Node]  # the forward arguments' placeholders, in order
    leaves: list[Any]  # output leaves: fx nodes, or Constant for Python values
    spec: Any  # torch's pytree spec of the output structure
    fallen: list[str] = field(default_factory=list)  # one line per op PyTorch runs, with its place

    @property
    def parts(self) -> list[Part]:
        return [s for s in self.steps if isinstance(s, Part)]

    def warning(self) -> str:
        parts = len(self.parts)
        return (f"sol cannot compile {len(self.fallen)} operation(s) of {self.name}; PyTorch runs them and sol "
                f"compiles the rest ({parts} part{'s' if parts != 1 else ''}):\n" + "\n".join(self.fallen)
                + "\nsol_pytorch.supported_ops() lists what sol compiles; pass fallback=False to make this an error.")


def split(ep: ExportedProgram, model: torch.nn.Module, found: Any = None) -> Split:
    """Classify (unless ``found``, :func:`classify`'s result, is given), then cut. A node that
    converts in the whole graph but not in its region (which should not happen) or whose PyTorch
    consumer needs a result sol does not keep (a training-only output such as pooling indices)
    is moved to PyTorch and the cut is made again."""
    forced: dict[fx.Node, str] = {}
    for _ in range(_ATTEMPTS):
        if found is None:
            found = classify(ep, model, forced)
        sources = {n.args[0]: f"{why}, read by PyTorch" for _, n, why in found.problems
                   if n.target is operator.getitem and n.args[0] not in found.failed}
        if sources:
            forced.update(sources)  # type: ignore[arg-type]
            found = None
            continue
        try:
            return _cut(ep, model, found)
        except RegionError as exc:
            forced[exc.node] = exc.why
            found = None
    raise AssertionError(f"sol_pytorch could not cut {type(model).__name__} into compiled parts")


def _cut(ep: ExportedProgram, model: torch.nn.Module, found: Any) -> Split:
    name = type(model).__name__
    on_torch: set[fx.Node] = found.failed
    statics: dict[fx.Node, Any] = {}
    inputs: list[fx.Node] = []
    epoch: dict[fx.Node, int] = {}
    regions: dict[int, list[fx.Node]] = defaultdict(list)
    torch_steps: dict[int, list[fx.Node]] = defaultdict(list)
    specs = {s.arg.name: s for s in ep.graph_signature.input_specs}
    tensors = state_tensors(ep, model)
    for node in ep.graph.nodes:
        if node.op == "placeholder":
            spec = specs[node.name]
            if spec.kind is InputKind.USER_INPUT:
                inputs.append(node)
            else:
                statics[node] = tensors[str(spec.target)]
            epoch[node] = 0
        elif node.op == "get_attr":  # a subgraph of a higher-order op PyTorch runs
            statics[node] = getattr(ep.graph_module, str(node.target))
            epoch[node] = 0
        elif node.op != "call_function" or is_ignored(node):
            continue
        elif node in on_torch:
            epoch[node] = max((epoch[i] for i in node.all_input_nodes if i in epoch), default=0)
            torch_steps[epoch[node]].append(node)
        elif is_static(node):
            statics[node] = found.env[node]
            epoch[node] = 0
        else:
            epoch[node] = max((epoch[i] + (i in on_torch) for i in node.all_input_nodes if i in epoch), default=0)
            regions[epoch[node]].append(node)

    leaves = user_outputs(ep, name)
    returned = {leaf for leaf in leaves if isinstance(leaf, fx.Node)}
    steps: list[Part | fx.Node] = []
    parts = 0
    for k in sorted(set(regions) | set(torch_steps)):
        nodes = regions.get(k, [])
        if nodes:
            members = set(nodes)
            needed = [n for n in nodes if n in returned or any(
                u not in members and not is_ignored(u) and not is_static(u) for u in n.users if u.op != "output")]
            importer = RegionImporter(ep, model, f"{name}_part{parts}", found.env)
            outputs = importer.convert(nodes, needed)
            if {n.op for n in importer.graph.nodes} <= DATA_MOVEMENT:
                steps.extend(nodes)
            else:
                index = {v: i for i, v in enumerate(importer.graph.outputs)}
                steps.append(Part(importer.graph, importer.sources, needed, [index[v] for v in outputs]))
                parts += 1
        steps.extend(torch_steps.get(k, []))
    return Split(name, ep, steps, statics, inputs,
                 [leaf if isinstance(leaf, fx.Node) else Constant(leaf) for leaf in leaves],
                 ep.call_spec.out_spec, found.problem_lines())
