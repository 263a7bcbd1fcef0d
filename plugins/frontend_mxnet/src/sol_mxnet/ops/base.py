"""What every family of MXNet converters uses: the :class:`Context` (the graph being built and
what each MXNet node output has become), the converter table (:data:`CONVERTERS`,
:func:`converts`), :class:`Unsupported` and the parsing of MXNet's string attributes.

An MXNet symbol graph (``Symbol.tojson()``) stores every attribute as a string: ``"(3, 3)"``,
``"True"``, ``"None"``, ``"relu"``. A converter reads them through :class:`Attrs`, which parses
each with the default's type, so a typo in a model is a clear :class:`Unsupported`, never an
``eval``. A converter gets the context and the :class:`MXNode` and returns one result per node
output (a :class:`~sol.plugin_api.Value`, or a NumPy array known at optimize time); the importer
checks each result's type against MXNet's own shape and type inference, so a wrong mapping is a
fallback at import, never a wrong number at run time.
"""

from __future__ import annotations

import ast
import builtins
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sol.plugin_api import ConversionContext, ConverterTable, Graph, Value


class Unsupported(Exception):
    """A converter cannot express this use of its op; the importer adds the node's name and op."""


Result = Value | np.ndarray
Converter = Callable[["Context", "MXNode"], Sequence[Result]]
CONVERTERS: ConverterTable[Converter] = ConverterTable("MXNet")
converts = CONVERTERS.converts
"""Registers a converter for MXNet operator names (core's :class:`~sol.plugin_api.ConverterTable`)."""

Key = tuple[int, int]
"""An MXNet tensor: (node index in the JSON graph, output index)."""


def supported_ops() -> list[str]:
    """The MXNet operators sol's MXNet frontend converts."""
    return CONVERTERS.names()


@dataclass
class Entry:
    """What one MXNet tensor is in the IR: an array known now (``static``) and/or an IR value."""

    static: np.ndarray | None = None
    value: Value | None = None


class Attrs:
    """A node's string attributes, parsed on reading (see the module doc)."""

    def __init__(self, raw: dict[builtins.str, builtins.str]) -> None:
        self.raw = raw

    def has(self, name: builtins.str) -> bool:
        return name in self.raw and self.raw[name] not in ("None", "")

    def str(self, name: builtins.str, default: builtins.str | None = None) -> builtins.str | None:
        v = self.raw.get(name)
        return default if v is None or v == "None" else v

    def bool(self, name: builtins.str, default: builtins.bool) -> bool:
        v = self.raw.get(name)
        if v is None:
            return default
        low = v.strip().lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        raise Unsupported(f"attribute {name}={v!r} is not a boolean")

    def int(self, name: builtins.str, default: builtins.int | None = None) -> int:
        v = self.raw.get(name)
        if v is None or v == "None":
            if default is None:
                raise Unsupported(f"attribute {name} is required")
            return default
        try:
            return int(float(v)) if "." not in v else _int_exact(v)
        except ValueError:
            raise Unsupported(f"attribute {name}={v!r} is not an integer") from None

    def float(self, name: builtins.str, default: builtins.float | None = None) -> float:
        v = self.raw.get(name)
        if v is None or v == "None":
            if default is None:
                raise Unsupported(f"attribute {name} is required")
            return default
        try:
            return float(v)
        except ValueError:
            raise Unsupported(f"attribute {name}={v!r} is not a number") from None

    def ints(self, name: builtins.str, default: Sequence[builtins.int] | None = None) -> tuple[builtins.int, ...]:
        """A tuple attribute (``"(3, 3)"``, ``"[1, 2]"``, ``"3"``); an empty tuple is ``()``."""
        items = self.optional_ints(name)
        if items is None:
            if default is None:
                raise Unsupported(f"attribute {name} is required")
            return tuple(default)
        return tuple(0 if i is None else i for i in items)

    def optional_ints(self, name: builtins.str) -> tuple[builtins.int | None, ...] | None:
        """A tuple whose entries may be None (``slice``'s ``begin=(None, 1)``); None where absent."""
        v = self.raw.get(name)
        if v is None or v == "None":
            return None
        try:
            parsed = ast.literal_eval(v.strip())
        except (ValueError, SyntaxError):
            raise Unsupported(f"attribute {name}={v!r} is not a tuple of integers") from None
        items = parsed if isinstance(parsed, (tuple, list)) else (parsed,)
        if not all(i is None or (isinstance(i, (int, float)) and not isinstance(i, bool) and float(i) == int(i))
                   for i in items):
            raise Unsupported(f"attribute {name}={v!r} is not a tuple of integers")
        return tuple(None if i is None else int(i) for i in items)


def _int_exact(v: str) -> int:
    f = float(v)
    if f != int(f):
        raise ValueError(v)
    return int(f)


@dataclass
class MXNode:
    """One operator node of the JSON graph: its op, name, attributes and input tensors."""

    index: int
    op: str
    name: str
    attrs: Attrs
    inputs: list[Key]
    num_outputs: int = 1
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.name} ({self.op})"


class Context(ConversionContext[Entry]):
    """The graph being built and the MXNet tensors converted so far (keyed by :data:`Key`).

    ``training``: the graph is for a training-mode call (BatchNorm with batch statistics, Dropout
    with masks the wrapper draws); ``extras`` collects what such a call computes beside the
    outputs (new running statistics) and needs beside the inputs (dropout masks)."""

    unsupported = Unsupported

    def __init__(self, graph: Graph, training: bool = False) -> None:
        super().__init__(graph)
        self.training = training
        self.updates: list[tuple[str, Value]] = []  # (aux parameter name, its new value)
        self.masks: list[tuple[Value, float, tuple[int, ...]]] = []  # (graph input, p, axes)
        self.names: dict[Key, str] = {}  # tensor -> the MXNet variable it is (parameters, inputs)

    def label(self, tensor: Any) -> str:
        return self.names.get(tensor, f"output {tensor[1]} of node {tensor[0]}")

    def value(self, key: Key) -> Value:
        e = self.entry(key)
        if e.value is None:
            assert e.static is not None
            e.value = self.const(e.static)
        return e.value

    def inputs(self, node: MXNode) -> list[Value]:
        return [self.value(k) for k in node.inputs]

    def scalar(self, x: float, like: Value) -> Value:
        return self.const(np.asarray(x, dtype=like.dtype))

    def cast(self, v: Value, dtype: str) -> Value:
        return v if v.dtype == dtype else self.emit("cast", [v], dtype=dtype)


def axis_of(a: int, rank: int) -> int:
    if not -rank <= a < max(rank, 1):
        raise Unsupported(f"axis {a} out of range for rank {rank}")
    return a % max(rank, 1)


FLOATS = ("float32", "float64")


def require_float(v: Value, what: str) -> None:
    if v.dtype not in FLOATS:
        raise Unsupported(f"{what} of {v.dtype} (sol converts it for {', '.join(FLOATS)})")
