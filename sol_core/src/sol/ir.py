"""sol's intermediate representation: plain Python data, framework-neutral.

A :class:`Graph` holds SSA :class:`Value`s and the :class:`Node`s that produce them. Layout is
logical NCHW for images (frontends transpose at the edges); every value has a static
:class:`TensorType`. Parameters keep the framework's arrays by reference (a NumPy view), so nothing
is copied until a device places them.
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DTYPES = ("float32", "float64", "float16", "int64", "int32", "int8", "uint8", "bool")


@dataclass(frozen=True)
class TensorType:
    """Static shape and element type of a value."""

    shape: tuple[int, ...]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ValueError(f"unknown dtype {self.dtype!r}; sol knows {', '.join(DTYPES)}")
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))
        if any(d < 0 for d in self.shape):
            raise ValueError(f"negative dimension in shape {self.shape}")

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def itemsize(self) -> int:
        return np.dtype(self.dtype).itemsize

    @property
    def nbytes(self) -> int:
        return self.numel * self.itemsize

    def __str__(self) -> str:
        return f"{self.dtype}[{', '.join(map(str, self.shape))}]"


class ValueKind(enum.Enum):
    INPUT = "input"  # supplied at every call
    PARAM = "param"  # a model weight or buffer, supplied once at load time
    CONST = "const"  # a literal folded into the graph
    NODE = "node"  # produced by a node


class Value:
    """One SSA value. ``data`` is set for PARAM and CONST values (a NumPy array)."""

    __slots__ = ("name", "type", "kind", "producer", "data")

    def __init__(
        self,
        name: str,
        type: TensorType,
        kind: ValueKind,
        producer: Node | None = None,
        data: np.ndarray | None = None,
    ) -> None:
        self.name = name
        self.type = type
        self.kind = kind
        self.producer = producer
        self.data = data

    @property
    def shape(self) -> tuple[int, ...]:
        return self.type.shape

    @property
    def dtype(self) -> str:
        return self.type.dtype

    def __repr__(self) -> str:
        return f"%{self.name}:{self.type}"


class Node:
    """One operation. ``source`` says where it came from in the user's model (for messages)."""

    __slots__ = ("op", "inputs", "attrs", "outputs", "source", "name")

    def __init__(
        self,
        op: str,
        inputs: list[Value],
        attrs: dict[str, Any] | None = None,
        source: str | None = None,
        name: str = "",
    ) -> None:
        self.op = op
        self.inputs = list(inputs)
        self.attrs = dict(attrs or {})
        self.outputs: list[Value] = []
        self.source = source
        self.name = name

    @property
    def output(self) -> Value:
        if len(self.outputs) != 1:
            raise ValueError(f"{self.op} has {len(self.outputs)} outputs, not one")
        return self.outputs[0]

    def describe(self) -> str:
        where = f" ({self.source})" if self.source else ""
        return f"{self.op}{where}"

    def __repr__(self) -> str:
        ins = ", ".join(v.name for v in self.inputs)
        outs = ", ".join(repr(v) for v in self.outputs)
        return f"{outs} = {self.op}({ins}){self.attrs if self.attrs else ''}"


INPUT_UPDATES = "input_updates"
"""``Graph.meta`` key a frontend sets where the model updates tensors in place (a KV cache, a step
counter): ((input index, output index), ...), each output the new value of that input, which the
frontend's caller writes back after a run. The program itself stays a function of its inputs;
what cannot write back (a deployed library, whose C caller knows nothing of it) refuses such a
graph."""


@dataclass
class Graph:
    """A network: inputs, parameters, constants, nodes in topological order, outputs."""

    name: str = "network"
    inputs: list[Value] = field(default_factory=list)
    params: list[Value] = field(default_factory=list)
    consts: list[Value] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)
    outputs: list[Value] = field(default_factory=list)
    # What a frontend needs to rebuild its framework's view (e.g. the output structure); core
    # reads only the keys defined here (INPUT_UPDATES). A frontend's own keys are prefixed with
    # its name.
    meta: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)
    _names: Iterator[int] = field(default_factory=itertools.count, repr=False)

    # --- building -----------------------------------------------------------------------------
    def fresh_name(self, hint: str = "t") -> str:
        return f"{hint}{next(self._names)}"

    def add_input(self, name: str, type: TensorType) -> Value:
        v = Value(name, type, ValueKind.INPUT)
        self.inputs.append(v)
        return v

    def add_param(self, name: str, data: np.ndarray) -> Value:
        v = Value(name, TensorType(data.shape, str(data.dtype)), ValueKind.PARAM, data=data)
        self.params.append(v)
        return v

    def add_const(self, data: Any, dtype: str | None = None, hint: str = "c") -> Value:
        arr = np.asarray(data, dtype=dtype)
        v = Value(self.fresh_name(hint), TensorType(arr.shape, str(arr.dtype)), ValueKind.CONST, data=arr)
        self.consts.append(v)
        return v

    def add_node(
        self,
        op: str,
        inputs: list[Value],
        attrs: dict[str, Any] | None = None,
        source: str | None = None,
        out_types: list[TensorType] | None = None,
        after: Node | None = None,
    ) -> Node:
        """Append a node (or insert it right after ``after``); output types come from the op
        registry's shape rule unless given."""
        from sol.ops.registry import registry

        node = Node(op, inputs, attrs, source)
        opdef = registry.get(op, node)
        node.attrs = opdef.normalize_attrs(node.attrs, [v.type for v in inputs])
        types = out_types or opdef.infer([v.type for v in inputs], node.attrs)
        node.outputs = [Value(self.fresh_name(), t, ValueKind.NODE, producer=node) for t in types]
        node.name = node.outputs[0].name if node.outputs else self.fresh_name("n")
        if after is None:
            self.nodes.append(node)
        else:
            self.nodes.insert(self.nodes.index(after) + 1, node)
        return node

    # --- queries ------------------------------------------------------------------------------
    def values(self) -> Iterable[Value]:
        yield from self.inputs
        yield from self.params
        yield from self.consts
        for n in self.nodes:
            yield from n.outputs

    def users(self) -> dict[Value, list[Node]]:
        """Map each value to the nodes that read it (graph outputs are not nodes)."""
        out: dict[Value, list[Node]] = {v: [] for v in self.values()}
        for n in self.nodes:
            for v in n.inputs:
                out.setdefault(v, []).append(n)
        return out

    def replace_uses(self, old: Value, new: Value) -> None:
        for n in self.nodes:
            n.inputs = [new if v is old else v for v in n.inputs]
        self.outputs = [new if v is old else v for v in self.outputs]

    def prune_unused(self) -> None:
        """Drop parameters and constants that no node and no output reads."""
        used = {v for n in self.nodes for v in n.inputs} | set(self.outputs)
        self.params = [p for p in self.params if p in used]
        self.consts = [c for c in self.consts if c in used]

    def __str__(self) -> str:
        lines = [f"graph {self.name}("]
        lines += [f"  in    {v!r}" for v in self.inputs]
        lines += [f"  param {v!r}" for v in self.params]
        lines += [f"  const {v!r}" for v in self.consts]
        lines.append(") {")
        lines += [f"  {n!r}" for n in self.nodes]
        lines.append(f"  return {', '.join(v.name for v in self.outputs)}")
        lines.append("}")
        return "\n".join(lines)
