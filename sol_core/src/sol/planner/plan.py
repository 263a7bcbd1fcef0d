"""The planner's result: groups of nodes, how each runs, and where every value lives.

This is the contract between core's planner and a device's renderer. A device never walks the
graph to decide fusion; it renders the groups it is given.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sol.ops.registry import LayerClass

if TYPE_CHECKING:
    from sol.ir import Graph, Node, Value


class GroupKind(enum.Enum):
    LIBRARY = "library"  # one anchor op run by a vendor library, plus absorbed epilogue ops
    FUSED = "fused"  # depth-first fused loop nest generated from templates
    ALIAS = "alias"  # reshape/flatten/identity of a contiguous buffer: no code, shares memory
    RECURRENT = "recurrent"  # one order-constrained op: a sequential loop over time (RecurrentKernel)


@dataclass
class Stage:
    """One step inside a fused group, run once per outer iteration.

    ``kind == "pointwise"``: ``nodes`` are element-wise ops over the iteration space ``shape``
    (the output's dims after the group's depth), computed in registers; ``stores`` are the values
    written to memory (local scratch or global), ``loads`` those read from memory.
    ``kind == "op"``: ``nodes == [node]``, one I/O-bound op (pooling, softmax, reduction, ...)
    reading its input sub-tensor and writing its output sub-tensor.
    """

    kind: str
    nodes: list[Node]
    shape: tuple[int, ...]
    loads: list[Value] = field(default_factory=list)
    stores: list[Value] = field(default_factory=list)


@dataclass
class FusedKernel:
    """A depth-first fused loop nest: ``for o in outer_shape (parallel): stages...``.

    ``locals`` maps values kept in per-iteration scratch (never written to global memory) to
    their element count per outer iteration, i.e. prod(shape[depth:]).
    """

    depth: int
    outer_shape: tuple[int, ...]
    stages: list[Stage]
    locals: dict[Value, int] = field(default_factory=dict)

    @property
    def outer_size(self) -> int:
        n = 1
        for d in self.outer_shape:
            n *= d
        return n

    def local_bytes(self) -> int:
        return sum(n * v.type.itemsize for v, n in self.locals.items())


@dataclass
class RecurrentKernel:
    """An execution-order-constrained group: a sequential loop over time around per-step work.

    What a device renders (``cell`` is "lstm" or "gru"; ``gates`` G = 4 or 3; ``H`` = ``hidden``)::

        for s in 0 .. steps-1:                     # strictly in order: step s reads step s-1
            t = steps-1-s if reverse else s
            h_prev = h0 if s == 0 else y[t -/+ 1]  # the previous step's row of y
            c_prev = c0 if s == 0 else c_n         # LSTM: c_n is the running cell state
            gh = h_prev @ w_hh^T (+ b_hh)          # step "matmul": (batch, H) x (H, G*H)
            cell(gx[t], gh, h_prev, c_prev) -> y[t] (and c_n)   # step "cell": ONE fused pass
        h_n = y[last t]

    The cell is one pass over (batch, H): each unit j reads its G gate columns (j, H+j, ...) of
    ``gx[t]`` and ``gh``, applies the non-linearities and the state update of
    :mod:`sol.ops.recurrent` in registers and writes h (and c) once: no per-gate passes over
    memory. The input projection ``gx`` was hoisted out of the loop by the planner's passes (one
    ``dense`` over all steps, run by a library), so only ``h @ w_hh^T`` is per step.

    ``gh`` (``gh_elements`` = batch * G * H values) lives in the arena at byte offset
    ``plan.memory.scratch[group.id]``, reserved by the memory plan for this group alone; every
    output of the node (``y``, ``h_n``, ``c_n``) has a planned buffer, read by others or not.
    ``step_work`` names the per-step stages in order, for reports.
    """

    cell: str
    steps: int
    batch: int
    hidden: int
    gates: int
    reverse: bool
    gx: Value
    h0: Value
    c0: Value | None
    w_hh: Value
    b_hh: Value | None
    y: Value
    h_n: Value
    c_n: Value | None
    step_work: tuple[str, ...] = ("matmul", "cell")

    @property
    def gh_elements(self) -> int:
        return self.batch * self.gates * self.hidden


@dataclass(eq=False)
class Group:
    id: int
    kind: GroupKind
    nodes: list[Node]
    layer_class: LayerClass
    inputs: list[Value] = field(default_factory=list)  # read from outside the group
    outputs: list[Value] = field(default_factory=list)  # written to memory for outside readers
    backend: str | None = None  # LIBRARY: the backend's name
    kernel: FusedKernel | None = None  # FUSED
    recurrent: RecurrentKernel | None = None  # RECURRENT

    @property
    def anchor(self) -> Node:
        """LIBRARY: the op the library runs."""
        return self.nodes[0]

    @property
    def epilogue(self) -> list[Node]:
        """LIBRARY: element-wise ops fused into the library call, in order."""
        return self.nodes[1:]

    @property
    def label(self) -> str:
        return f"G{self.id}"


class Storage(enum.Enum):
    INPUT = "input"  # caller's input buffer
    OUTPUT = "output"  # caller's output buffer
    PARAM = "param"  # placed on the device at load time
    CONST = "const"  # baked into the program
    ARENA = "arena"  # intermediate, at an offset in one reused workspace
    ALIAS = "alias"  # same memory as another value (reshape)


@dataclass
class Slot:
    storage: Storage
    index: int = 0  # INPUT/OUTPUT/PARAM/CONST: position; ARENA: byte offset
    alias_of: Value | None = None  # ALIAS: the value whose memory this is


@dataclass
class MemoryPlan:
    slots: dict[Value, Slot]
    arena_bytes: int
    naive_bytes: int  # what one buffer per intermediate would need (for reports)
    scratch: dict[int, int] = field(default_factory=dict)  # group id -> arena byte offset of its scratch

    def resolve(self, value: Value) -> tuple[Value, Slot]:
        """Follow aliases to the value that owns the memory."""
        slot = self.slots[value]
        while slot.storage is Storage.ALIAS:
            assert slot.alias_of is not None
            value = slot.alias_of
            slot = self.slots[value]
        return value, slot


@dataclass
class Plan:
    graph: Graph
    device: str
    groups: list[Group]
    memory: MemoryPlan
    options: dict = field(default_factory=dict)

    def group_of(self, node: Node) -> Group:
        for g in self.groups:
            if node in g.nodes:
                return g
        raise KeyError(node)
