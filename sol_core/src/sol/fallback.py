"""Partitioned graphs: a model sol compiles in parts, with its framework running what sol cannot.

Why in core. Every frontend meets operations it cannot convert (``torch.fft``, ``tf.py_function``,
a custom op) and should still get the rest compiled, in as few programs as possible (each is a
compile and a call). The cut, the list of parts not worth compiling and the order of the steps
are the same question for every framework, so they are answered once, here; a frontend only
marks what it cannot convert and runs its own framework's steps.

Marking. A frontend converts the whole model into one :class:`~sol.ir.Graph` and, for each
operation its framework must run, adds a *framework node* (:func:`mark`, op ``"framework"``): an
opaque ``handle`` (what the frontend needs to run it: an fx node, a TensorFlow op, a Python
callable), the sol values it reads (``inputs``: those core hands over when it runs; values the
frontend holds itself, its weights, constants and Python numbers, need not be listed) and the
sol values it produces (``outputs``, with their types: what sol nodes downstream read). Values
that only the framework can hold (a complex tensor, a Python object) pass between framework
nodes on the frontend's side; ``after`` names such framework nodes, so that core orders the
steps right. The op is not in the op registry on purpose: a graph with framework nodes can only
be partitioned (:func:`compile_partitioned`); handed to the passes or the planner, the validator
refuses it instead of compiling something half understood.

The cut, by epochs. A node's epoch is the number of framework nodes on the longest path that
reaches it: a framework node takes the largest epoch of what it reads, a sol node one more than
a framework node it reads. All sol nodes of one epoch form one part, even where they are not
connected, and the run order is part 0, framework step 0, part 1, ...: a part reads only
framework steps of lower epochs, a framework step only parts of its own epoch or lower (and
framework nodes of its epoch, run in graph order), so the order needs no cycle check. It is the
fewest parts any cut can have: along a path on which sol nodes are separated by ``k`` framework
nodes, the sol nodes before and after each of them cannot share a part (the part would have to
run both before and after the framework node), so that path alone needs ``k + 1`` parts; the
longest such chain needs as many parts as there are epochs, and that is what the cut makes.

A part that would only move data (:data:`DATA_MOVEMENT`: reshape, transpose, cast, copy,
concat) is not worth a compile: core runs it on the host with the ops' NumPy references (views
where NumPy makes them; results never alias what the step read). Sol nodes nothing reads (left
by a converter that gave up half way) are dropped; framework nodes always run (they may have
effects). Nothing is compiled when nothing is left to compile.

Running. :class:`PartitionedProgram` holds the steps and the compiled programs and runs them in
order over one table of values, calling the frontend (a :class:`StepRunner`) for each step: a sol
step gets its program and the values it reads, as the frontend holds them (the frontend turns
them into arrays for the program, zero-copy where it can, or runs the program inside its own
graph); a framework step gets the step and its values, and returns the values the step's
``outputs`` list. Core never looks into a handle.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from sol.errors import SolError
from sol.ir import Graph, Node, TensorType, Value, ValueKind
from sol.program import Program

FRAMEWORK_OP = "framework"
"""The op of a node the model's framework runs (see the module doc)."""

DATA_MOVEMENT = frozenset({"reshape", "transpose", "cast", "identity", "concat"})
"""Ops of a part that the host runs as well as a compiled program would (views or plain copies)."""

HOST = "host"
"""``Program.device`` of a part run with NumPy references (nothing compiled)."""


@dataclass(frozen=True)
class FrameworkCall:
    """``attrs["call"]`` of a framework node: what core keeps for the frontend."""

    handle: Any  # opaque to core
    after: tuple[str, ...] = ()  # names of framework nodes whose framework-only results it reads
    label: str = ""  # the framework's op name, for messages


def mark(graph: Graph, handle: Any, inputs: Sequence[Value], out_types: Sequence[TensorType], *,
         after: Sequence[Node] = (), label: str = "", source: str | None = None) -> Node:
    """Append a framework node to ``graph`` (see the module doc) and return it; its ``outputs``
    are new values of ``out_types`` that sol nodes may read."""
    for n in after:
        if not is_framework(n):
            raise SolError(f"framework node {label or handle!r}: 'after' names {n.op} {n.name}, which is not a "
                           f"framework node (sol values are read through 'inputs')")
    node = Node(FRAMEWORK_OP, list(inputs), {"call": FrameworkCall(handle, tuple(n.name for n in after), label)},
                source)
    node.outputs = [Value(graph.fresh_name(), t, ValueKind.NODE, producer=node) for t in out_types]
    node.name = node.outputs[0].name if node.outputs else graph.fresh_name("n")
    graph.nodes.append(node)
    return node


def is_framework(node: Node) -> bool:
    return node.op == FRAMEWORK_OP


def call_of(node: Node) -> FrameworkCall:
    call: FrameworkCall = node.attrs["call"]
    return call


def is_partitioned(graph: Graph) -> bool:
    """Whether ``graph`` has framework nodes (then :func:`compile_partitioned` compiles it)."""
    return any(is_framework(n) for n in graph.nodes)


def validate_partitioned(graph: Graph, after: str) -> None:
    """The IR validator's checks for a graph with framework nodes: every value defined once and
    before it is read, sol nodes' types as their op's rule says, ``after`` naming earlier
    framework nodes. (A framework node's types are what the frontend declared.)"""
    from sol.ops.registry import registry
    from sol.passes.validate import InvalidGraphError

    def fail(msg: str) -> None:
        raise InvalidGraphError(f"invalid graph after {after}: {msg}")

    defined = set(graph.inputs) | set(graph.params) | set(graph.consts)
    seen: set[str] = set()
    for n in graph.nodes:
        for v in n.inputs:
            if v not in defined:
                fail(f"{n!r} reads {v!r} before it is defined (or it is not in the graph)")
        if is_framework(n):
            late = [name for name in call_of(n).after if name not in seen]
            if late:
                fail(f"framework node {n.name} runs after {', '.join(late)}, which is no earlier framework node")
            seen.add(n.name)
        else:
            want = registry.get(n.op, n).infer([v.type for v in n.inputs], n.attrs)
            if want != [v.type for v in n.outputs]:
                fail(f"{n!r}: output types {[v.type for v in n.outputs]} but the op's rule says {want}")
        for v in n.outputs:
            if v in defined or v.producer is not n:
                fail(f"{v!r} is defined twice or does not point back to {n.op}")
            defined.add(v)
    for v in graph.outputs:
        if v not in defined:
            fail(f"output {v!r} is not defined")


# --- the cut ----------------------------------------------------------------------------------


@dataclass(eq=False)
class SolStep:
    """Sol nodes of one epoch, as a graph of their own: ``inputs[i]`` (values of the partitioned
    graph) feed ``graph.inputs[i]``; ``graph.outputs[j]`` gives ``outputs[j]``. ``compiled``:
    False where it only moves data (run on the host)."""

    graph: Graph
    inputs: list[Value]
    outputs: list[Value]
    nodes: list[Node]  # the partitioned graph's nodes it holds
    compiled: bool


@dataclass(eq=False)
class FrameworkStep:
    """Framework nodes of one epoch, in graph order: the frontend runs them with ``inputs``'
    values and returns ``outputs``' (values its nodes produce that later steps or the graph's
    outputs read)."""

    nodes: list[Node]
    inputs: list[Value]
    outputs: list[Value]

    @property
    def handles(self) -> list[Any]:
        return [call_of(n).handle for n in self.nodes]


Step = SolStep | FrameworkStep


@dataclass
class Partition:
    """A partitioned graph cut into steps, in run order (nothing compiled yet)."""

    graph: Graph
    steps: list[Step] = field(default_factory=list)

    @property
    def sol_steps(self) -> list[SolStep]:
        return [s for s in self.steps if isinstance(s, SolStep)]

    @property
    def parts(self) -> list[SolStep]:
        """The steps sol compiles."""
        return [s for s in self.steps if isinstance(s, SolStep) and s.compiled]

    @property
    def framework_nodes(self) -> list[Node]:
        return [n for s in self.steps if isinstance(s, FrameworkStep) for n in s.nodes]


def partition(graph: Graph) -> Partition:
    """Cut ``graph`` (with framework nodes) into steps (see the module doc). ``graph`` is not
    changed: each sol step is a new graph holding copies of its nodes (weights by reference)."""
    live = _live_nodes(graph)
    by_name = {n.name: n for n in graph.nodes}
    epoch: dict[Node, int] = {}
    regions: dict[int, list[Node]] = defaultdict(list)
    framework: dict[int, list[Node]] = defaultdict(list)
    for node in graph.nodes:
        if node not in live:
            continue
        producers = [v.producer for v in node.inputs if v.producer is not None]
        if is_framework(node):
            producers += [by_name[name] for name in call_of(node).after]
            epoch[node] = max((epoch[p] for p in producers), default=0)
            framework[epoch[node]].append(node)
        else:
            epoch[node] = max((epoch[p] + is_framework(p) for p in producers), default=0)
            regions[epoch[node]].append(node)

    readers = _readers(graph, live)
    result = Partition(graph)
    for k in sorted(set(regions) | set(framework)):
        if regions.get(k):
            result.steps.append(_sol_step(graph, regions[k], readers, f"{graph.name}_part{len(result.parts)}"))
        if framework.get(k):
            nodes = framework[k]
            result.steps.append(FrameworkStep(nodes, _read_from_outside(nodes), _read_outside(nodes, readers)))
    return result


def _live_nodes(graph: Graph) -> set[Node]:
    """Framework nodes, and the sol nodes whose results reach a graph output or a framework node."""
    needed = set(graph.outputs)
    live: set[Node] = set()
    for node in reversed(graph.nodes):
        if is_framework(node) or any(v in needed for v in node.outputs):
            live.add(node)
            needed.update(node.inputs)
    return live


_OUTPUT = object()  # a reader standing for "a graph output"


def _readers(graph: Graph, live: set[Node]) -> dict[Value, set[Any]]:
    found: dict[Value, set[Any]] = defaultdict(set)
    for node in graph.nodes:
        if node in live:
            for v in node.inputs:
                found[v].add(node)
    for v in graph.outputs:
        found[v].add(_OUTPUT)
    return found


def _read_from_outside(nodes: list[Node]) -> list[Value]:
    """What ``nodes`` read that they do not produce, in order of first use."""
    own = {v for n in nodes for v in n.outputs}
    return list(dict.fromkeys(v for n in nodes for v in n.inputs if v not in own))


def _read_outside(nodes: list[Node], readers: dict[Value, set[Any]]) -> list[Value]:
    """What ``nodes`` produce that other nodes or the graph's outputs read."""
    members = set(nodes)
    return [v for n in nodes for v in n.outputs if readers.get(v, set()) - members]


def _sol_step(graph: Graph, nodes: list[Node], readers: dict[Value, set[Any]], name: str) -> SolStep:
    from sol.autodiff.graphs import next_free_number

    part = Graph(name=name)
    part._names = itertools.count(next_free_number(graph.values()))
    copied: dict[Value, Value] = {}
    inputs: list[Value] = []

    def value(v: Value) -> Value:
        if v not in copied:
            if v.kind is ValueKind.PARAM:
                assert v.data is not None
                copied[v] = part.add_param(v.name, v.data)  # the weight by reference
            elif v.kind is ValueKind.CONST:
                copied[v] = part.add_const(v.data, v.dtype, hint="k")
            else:  # a graph input or a value another step computes
                copied[v] = part.add_input(v.name, v.type)
                inputs.append(v)
        return copied[v]

    for node in nodes:
        copy = Node(node.op, [value(v) for v in node.inputs], dict(node.attrs), node.source, node.name)
        copy.outputs = [Value(v.name, v.type, ValueKind.NODE, producer=copy) for v in node.outputs]
        copied.update(zip(node.outputs, copy.outputs))
        part.nodes.append(copy)
    outputs = _read_outside(nodes, readers)
    part.outputs = [copied[v] for v in outputs]
    compiled = not {n.op for n in nodes} <= DATA_MOVEMENT
    return SolStep(part, inputs, outputs, list(nodes), compiled)


# --- compiling and running ----------------------------------------------------------------------


class StepRunner(Protocol):
    """What a frontend gives :meth:`PartitionedProgram.run`: how its values meet sol's programs
    and how its framework runs its own steps."""

    def sol(self, index: int, program: Program, values: list[Any]) -> Sequence[Any]:
        """Run ``program`` (the ``index``-th sol step's, :attr:`PartitionedProgram.sol_programs`)
        on ``values`` (the frontend's own, as earlier steps returned them or as given to
        :meth:`PartitionedProgram.run`); return its outputs in the frontend's form."""
        ...

    def framework(self, step: FrameworkStep, values: list[Any]) -> Sequence[Any]:
        """Run ``step``'s nodes (their handles, in order) with ``values`` for ``step.inputs``;
        return the values of ``step.outputs``."""
        ...


class PartitionedProgram:
    """A partitioned graph compiled: its steps in run order, one program per sol step
    (``sol_programs``; ``programs`` lists only the compiled ones)."""

    def __init__(self, cut: Partition, device: str, sol_programs: Sequence[Program]) -> None:
        self.partition = cut
        self.device = device
        self.name = cut.graph.name
        self.sol_programs = list(sol_programs)
        self._index = {id(s): i for i, s in enumerate(cut.sol_steps)}

    @property
    def graph(self) -> Graph:
        return self.partition.graph

    @property
    def steps(self) -> list[Step]:
        return self.partition.steps

    @property
    def programs(self) -> list[Program]:
        """The compiled programs, one per compiled part, in run order."""
        return [p for s, p in zip(self.partition.sol_steps, self.sol_programs) if s.compiled]

    @property
    def input_names(self) -> list[str]:
        return [v.name for v in self.graph.inputs]

    @property
    def input_types(self) -> list[TensorType]:
        return [v.type for v in self.graph.inputs]

    @property
    def output_types(self) -> list[TensorType]:
        return [v.type for v in self.graph.outputs]

    def program_of(self, step: SolStep) -> Program:
        return self.sol_programs[self._index[id(step)]]

    def run(self, inputs: Sequence[Any], runner: StepRunner) -> list[Any]:
        """Run every step in order; ``inputs`` are the graph inputs' values in the frontend's
        form. Returns the values of the graph's outputs (an output that is a graph input is the
        value given, one that is a weight or a constant its array: a frontend that promises fresh
        outputs copies those)."""
        graph = self.graph
        if len(inputs) != len(graph.inputs):
            raise TypeError(f"{self.name} expects {len(graph.inputs)} input(s), got {len(inputs)}")
        env: dict[Value, Any] = dict(zip(graph.inputs, inputs))

        def get(v: Value) -> Any:
            return env[v] if v in env else v.data  # a weight or a constant: its array

        for step in self.steps:
            values = [get(v) for v in step.inputs]
            if isinstance(step, SolStep):
                i = self._index[id(step)]
                outs = runner.sol(i, self.sol_programs[i], values)
            else:
                outs = runner.framework(step, values)
            outs = list(outs)
            if len(outs) != len(step.outputs):
                raise SolError(f"{self.name}: a step returned {len(outs)} value(s) for {len(step.outputs)} output(s)")
            env.update(zip(step.outputs, outs))
        return [get(v) for v in graph.outputs]

    def __repr__(self) -> str:
        frameworks = sum(isinstance(s, FrameworkStep) for s in self.steps)
        return (f"<sol PartitionedProgram {self.name} on {self.device}: {len(self.programs)} compiled part(s), "
                f"{frameworks} framework step(s)>")


def compile_partitioned(graph: Graph, device: str | None = None, training: bool = False,
                        options: dict | None = None) -> PartitionedProgram:
    """Cut ``graph`` and compile each part that computes something for ``device`` through the
    normal pipeline (:func:`sol.api.compile_graph`); the parts that only move data get a host
    program, and no part at all compiles nothing."""
    from sol.api import compile_graph, resolve_device

    cut = partition(graph)
    dev = resolve_device(device).name
    programs = [compile_graph(s.graph, dev, training=training, options=options) if s.compiled else host_program(s.graph)
                for s in cut.sol_steps]
    return PartitionedProgram(cut, dev, programs)


def host_program(graph: Graph) -> Program:
    """``graph`` (data movement only) as a :class:`Program` that runs its nodes' NumPy references
    on the host. Its results are the program's own arrays: one that would share memory with an
    input or a weight is copied, as a compiled program's outputs never alias its inputs."""
    from sol.debug import run_reference

    arrays = [v.data for v in graph.params + graph.consts]

    def run(inputs: list[np.ndarray]) -> list[np.ndarray]:
        outs = []
        for o, v in zip(run_reference(graph, inputs), graph.outputs):
            o = np.asarray(o).astype(v.dtype, copy=False).reshape(v.shape)
            if any(np.may_share_memory(o, a) for a in [*inputs, *arrays] if a is not None):
                o = o.copy()
            outs.append(o)
        return outs

    return Program(graph.name, HOST, [v.name for v in graph.inputs], [v.type for v in graph.inputs],
                   [v.type for v in graph.outputs], run)
