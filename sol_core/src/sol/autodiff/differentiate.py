"""Reverse-mode differentiation of a sol graph into a forward graph and a backward graph.

Save-or-recompute policy (why the forward returns what it returns): rules read forward values
through their context; after the backward graph is built and pruned, every forward value still
read is either

* **recomputed** in the backward graph when it comes from an element-wise node whose own inputs
  are available there anyway (saved for another reason, recomputed, or parameters/constants):
  e.g. ``relu(bn(conv(x)))`` saves the convolution's result once, and the ReLU's output the next
  layer's weight gradient needs is recomputed inside the fused backward loop instead of being
  stored. Element-wise recomputation costs a few flops per element in a loop that runs anyway; a
  saved tensor costs a full activation of memory from forward to backward. Values the forward
  returns to the caller anyway (its outputs) are never recomputed, nor are nodes of ops marked
  as non-recomputable (``dropout``: a training-mode mask must not be redrawn);
* or **saved**: a forward graph input is handed over by the caller (nothing copied), any other
  value becomes an extra output of the forward graph.

Values no rule reads are never saved, so e.g. an ``add`` keeps nothing and a convolution whose
weight is frozen keeps nothing for its weight gradient.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from sol.autodiff.builder import GradBuilder, GradContext
from sol.autodiff.graphs import clone_graph, next_free_number, params_to_inputs
from sol.errors import SolError
from sol.ir import Graph, Value, ValueKind
from sol.ops.registry import LayerClass, registry

# Element-wise ops whose result must not be recomputed in the backward graph.
NOT_RECOMPUTED = frozenset({"dropout"})


def is_float(v: Value) -> bool:
    return v.dtype.startswith("float")


@dataclass(frozen=True)
class SavedSource:
    """Where backward input ``saved[i]`` comes from: forward ``input`` k or forward ``output`` k."""

    kind: str
    index: int


@dataclass
class Differentiated:
    """The result of :func:`differentiate`.

    ``forward``: the original outputs first (``num_outputs`` of them), then the saved tensors it
    adds. ``backward``: inputs are the saved tensors (``saved``: where each comes from) followed by
    one gradient per entry of ``grad_outputs`` (indices of the forward outputs that take a
    gradient: the floating-point ones); outputs are the gradients of ``wrt``, in order.
    ``wrt_inputs``: the forward input index of each ``wrt`` value (parameters given in ``wrt``
    were turned into inputs, appended after the original inputs).

    ``reached_by[j]``: the positions in ``grad_outputs`` whose gradient reaches ``wrt[j]``
    through the rules (not through a ``stop_gradient``, an integer value or a rule that gives no
    gradient). Empty: no output depends on it differentiably. The backward graph still returns
    a gradient for every ``wrt`` (zeros where nothing reaches it); frameworks read this to report
    "no gradient" as they do: PyTorch leaves ``.grad`` None and TensorFlow's tape returns None for
    a value that only outputs the loss does not use depend on (:meth:`unreached`)."""

    forward: Graph
    backward: Graph
    num_outputs: int
    saved: list[SavedSource]
    grad_outputs: list[int]
    wrt_inputs: list[int]
    recomputed: list[str] = field(default_factory=list)
    reached_by: list[tuple[int, ...]] = field(default_factory=list)

    def unreached(self, given: Sequence[bool]) -> list[bool]:
        """Per ``wrt``: True when none of the output gradients that reach it is given
        (``given[k]`` for ``grad_outputs[k]``), i.e. the framework reports no gradient."""
        if len(self.reached_by) != len(self.wrt_inputs):  # made without it: every gradient counts
            return [False] * len(self.wrt_inputs)
        return [not any(given[k] for k in ks) for ks in self.reached_by]

    def describe(self) -> str:
        saved = ", ".join(f"{v.name}:{v.type}" for v in self.backward.inputs[:len(self.saved)]) or "nothing"
        return (f"{self.forward.name}: {self.num_outputs} output(s), saves {saved}; "
                f"recomputes {', '.join(self.recomputed) or 'nothing'}")


def differentiate(graph: Graph, wrt: Sequence[Value | str], outputs: Sequence[int] | None = None) -> Differentiated:
    """Build the forward and backward graphs for the gradients of ``graph``'s outputs with respect
    to ``wrt`` (graph inputs or parameters, as values or names). ``outputs``: which outputs take a
    gradient (default: every floating-point output). ``graph`` itself is not changed."""
    fwd, vmap = clone_graph(graph, f"{graph.name}_fwd")
    by_name = {v.name: v for v in itertools.chain(graph.inputs, graph.params)}
    targets: list[Value] = []
    for w in wrt:
        v = by_name.get(w) if isinstance(w, str) else w
        if v is None or v not in vmap or v.kind not in (ValueKind.INPUT, ValueKind.PARAM):
            raise SolError(f"cannot differentiate with respect to {w!r}: not an input or parameter of "
                           f"{graph.name!r} (inputs: {', '.join(x.name for x in graph.inputs)}; "
                           f"parameters: {', '.join(x.name for x in graph.params) or 'none'})")
        if not is_float(v):
            raise SolError(f"cannot differentiate with respect to {v.name} of dtype {v.dtype}: not floating point")
        targets.append(vmap[v])
    if len(set(targets)) != len(targets):
        raise SolError("wrt names a value twice")
    params_to_inputs(fwd, [v for v in targets if v.kind is ValueKind.PARAM])
    num_outputs = len(fwd.outputs)
    grad_outputs = list(outputs) if outputs is not None else [i for i, v in enumerate(fwd.outputs) if is_float(v)]
    for i in grad_outputs:
        if not 0 <= i < num_outputs or not is_float(fwd.outputs[i]):
            raise SolError(f"output {i} cannot take a gradient (outputs: "
                           f"{', '.join(str(v.type) for v in fwd.outputs)})")

    # Values that depend on a target through floating-point values, not through a stop_gradient
    # (``f(x.detach())`` takes no gradient, so f needs no gradient rule: one that has none is fine).
    active: set[Value] = set(targets)
    for node in fwd.nodes:
        if node.op != "stop_gradient" and any(v in active for v in node.inputs):
            active.update(v for v in node.outputs if is_float(v))

    bwd = Graph(f"{graph.name}_bwd")
    bwd._names = itertools.count(next_free_number(fwd.values()))
    builder = GradBuilder(fwd, bwd)
    grads: dict[Value, Value] = {}

    # Which output gradients (positions in grad_outputs) reach each value (Differentiated.reached_by).
    reach: dict[Value, frozenset[int]] = {}

    def accumulate(v: Value, g: Value, sources: frozenset[int]) -> None:
        if g.type != v.type:
            raise SolError(f"gradient of {v!r} has type {g.type}, expected {v.type}")
        old = grads.get(v)
        grads[v] = g if old is None else builder.op("add", [old, g])
        reach[v] = reach.get(v, frozenset()) | sources

    seeds = []
    for k, i in enumerate(grad_outputs):
        v = fwd.outputs[i]
        seed = Value(f"grad_out{i}", v.type, ValueKind.INPUT)
        seeds.append(seed)
        if v in active:
            accumulate(v, seed, frozenset((k,)))

    for node in reversed(fwd.nodes):
        gouts = [grads.get(v) for v in node.outputs]
        need = [v in active for v in node.inputs]
        if all(g is None for g in gouts) or not any(need):
            continue
        rule = registry.get(node.op, node).gradient
        if rule is None:
            raise SolError(f"op {node.describe()} has no gradient rule: sol cannot train through it")
        builder.source = node.source
        gins = rule(GradContext(builder, node, need), gouts)
        if len(gins) != len(node.inputs):
            raise SolError(f"gradient rule of {node.op} returned {len(gins)} gradients for {len(node.inputs)} inputs")
        reaching = frozenset().union(*(reach.get(v, frozenset()) for v in node.outputs if v in grads))
        for v, g, n in zip(node.inputs, gins, need):
            if n and g is not None:
                accumulate(v, g, reaching)
    builder.source = None

    results = []
    for t in targets:
        g = grads.get(t)
        if g is None:  # the outputs do not depend on t
            g = builder.op("broadcast_to", [builder.const(0.0, t.dtype)], shape=t.shape)
        results.append(g)
    bwd.outputs = results
    _prune(bwd)
    saved, recomputed = _save_or_recompute(fwd, bwd, builder, num_outputs)
    bwd.inputs = [p for p, _ in saved] + seeds
    _prune(bwd)
    sources = []
    for _, v in saved:
        if v.kind is ValueKind.INPUT:
            sources.append(SavedSource("input", fwd.inputs.index(v)))
        elif v in fwd.outputs[:num_outputs]:
            sources.append(SavedSource("output", fwd.outputs.index(v)))
        else:
            fwd.outputs.append(v)
            sources.append(SavedSource("output", len(fwd.outputs) - 1))
    return Differentiated(fwd, bwd, num_outputs, sources, grad_outputs,
                          [fwd.inputs.index(t) for t in targets], recomputed,
                          [tuple(sorted(reach.get(t, ()))) for t in targets])


def _prune(g: Graph) -> None:
    """Dead backward nodes (a rule's gradient for an input that needs none) go before deciding
    what to save, so they cannot make the forward keep anything."""
    live = set(g.outputs)
    keep = []
    for node in reversed(g.nodes):
        if any(v in live for v in node.outputs):
            keep.append(node)
            live.update(node.inputs)
    g.nodes = keep[::-1]
    g.prune_unused()


_CHAIN_DEPTH = 6


def _chain(v: Value, available: set[Value], elementwise: Callable[[Value], bool], static: tuple[ValueKind, ...],
           depth: int = 0) -> tuple[list[Value], set[Value]] | None:
    """``v``'s element-wise producers back to values that are available (saved or rebuilt
    anyway), static, or not element-wise (the roots): (the values to rebuild, the roots), or
    None when ``v`` itself is not element-wise."""
    if not elementwise(v):
        return None
    n = v.producer
    assert n is not None
    chain, roots = [v], set()
    for u in n.inputs:
        if u.kind in static or u in available:
            continue
        sub = _chain(u, available, elementwise, static, depth + 1) if depth < _CHAIN_DEPTH else None
        if sub is None:
            roots.add(u)
        else:
            chain += sub[0]
            roots |= sub[1]
    return chain, roots


def _save_or_recompute(fwd: Graph, bwd: Graph, b: GradBuilder,
                       num_outputs: int) -> tuple[list[tuple[Value, Value]], list[str]]:
    read_by_bwd = {v for n in bwd.nodes for v in n.inputs} | set(bwd.outputs)
    used = {p: v for p, v in b.placeholders.items() if p in read_by_bwd}
    wanted = set(used.values())
    returned = set(fwd.outputs[:num_outputs])
    order = {n: i for i, n in enumerate(fwd.nodes)}
    static = (ValueKind.PARAM, ValueKind.CONST)
    recompute: set[Value] = set()

    def elementwise(v: Value) -> bool:
        n = v.producer
        return (n is not None and v not in returned and len(n.outputs) == 1 and n.op not in NOT_RECOMPUTED
                and registry.layer_class(n) is LayerClass.ELEMENTWISE)

    changed = True
    while changed:
        changed = False
        for v in sorted(wanted - recompute, key=lambda v: order.get(v.producer, -1)):  # type: ignore[arg-type]
            if not elementwise(v):
                continue
            n = v.producer
            assert n is not None
            if all(u.kind in static or (u in wanted and u is not v) for u in n.inputs):
                recompute.add(v)
                changed = True
    # Second round, through chains: a wanted element-wise value whose chain of element-wise
    # producers starts at values that are in memory anyway (a library op's or a reduction's
    # result, a graph input) is rebuilt from those, which are saved in its place, when they take
    # no more memory than it would. BatchNorm + ReLU after a convolution then saves the
    # convolution's result (written by the library anyway) instead of the centred input and the
    # normalized output, two more full-size writes in the forward and reads in the backward.
    for v in sorted(wanted - recompute, key=lambda v: -order.get(v.producer, -1)):  # type: ignore[arg-type]
        found = _chain(v, wanted | recompute, elementwise, static)
        if found is None:
            continue
        chain, roots = found
        # Roots that cost memory of their own: not saved already, not the caller's input or
        # output (kept by the caller anyway), not small next to v.
        big = [r for r in roots if r not in wanted and r not in returned and r.kind is not ValueKind.INPUT
               and r.type.numel * 16 > v.type.numel]
        if sum(r.type.numel for r in big) <= v.type.numel:
            recompute.update(chain)
            wanted.update(roots)
    # Rebuild the recomputed values at the top of the backward graph, in forward order.
    prologue = []
    for v in sorted(recompute, key=lambda v: order[v.producer]):  # type: ignore[index]
        n = v.producer
        assert n is not None
        node = bwd.add_node(n.op, [b.read(u) for u in n.inputs], dict(n.attrs), source=n.source,
                            out_types=[v.type])
        bwd.nodes.remove(node)
        prologue.append(node)
        placeholder = b.reads.get(v)  # none for a chain's intermediate no rule read
        if placeholder is not None:
            bwd.replace_uses(placeholder, node.output)
        b.reads[v] = node.output
    bwd.nodes = prologue + bwd.nodes
    read_by_bwd = {v for n in bwd.nodes for v in n.inputs} | set(bwd.outputs)
    saved = [(p, v) for p, v in b.placeholders.items() if p in read_by_bwd]
    saved.sort(key=lambda pv: (pv[1].kind is not ValueKind.INPUT, order.get(pv[1].producer, -1)))  # type: ignore[arg-type]
    return saved, sorted(v.name for v in recompute)
