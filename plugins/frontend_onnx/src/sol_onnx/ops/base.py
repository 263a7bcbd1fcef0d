"""What every family of ONNX converters uses: the :class:`Context` (the graph being built and
each ONNX tensor's IR value or the array it is known to be), the converter table
(:data:`CONVERTERS`, :func:`converts`), :class:`Unsupported` and attribute helpers.

A converter gets the context and the ``NodeProto`` and returns one result per node output: a
:class:`~sol.plugin_api.Value`, a NumPy array (a value known at optimize time: shape arithmetic,
``Constant``), or None for an optional output it does not produce. The importer checks each
result against the type ONNX's shape inference gives (where it gives one), so a wrong mapping
becomes a fallback at import, never a wrong number at run time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from onnx import helper

from sol.plugin_api import ConversionContext, ConverterTable, Graph, TensorType, Value

ONNX_DTYPES = {1: "float32", 2: "uint8", 3: "int8", 6: "int32", 7: "int64", 9: "bool", 10: "float16",
               11: "float64"}
"""ONNX ``TensorProto.DataType`` -> sol dtype; the other types (strings, bfloat16, uint16/32/64,
int16, complex, float8) have no sol dtype: nodes reading them run in ONNX Runtime."""


class Unsupported(Exception):
    """A converter cannot express this use of its op; the importer adds the node's name and type."""


Result = Value | np.ndarray | None
Converter = Callable[["Context", Any], Sequence[Result]]
CONVERTERS: ConverterTable[Converter] = ConverterTable("ONNX")
converts = CONVERTERS.converts
"""Registers a converter for ONNX op types (core's :class:`ConverterTable`)."""


def supported_ops() -> list[str]:
    """The ONNX operator types (default domain) sol's ONNX frontend converts."""
    return CONVERTERS.names()


@dataclass
class Entry:
    """What one ONNX tensor is in the IR: an array known now (``static``; ``initializer``: a
    weight, which becomes a parameter where a node computes with it), and/or an IR value."""

    static: np.ndarray | None = None
    value: Value | None = None
    initializer: bool = False


class Context(ConversionContext[Entry]):
    """The graph being built and the ONNX tensors converted so far (keyed by tensor name)."""

    unsupported = Unsupported

    def __init__(self, graph: Graph, opset: int) -> None:
        super().__init__(graph)
        self.opset = opset
        self._params = 0

    # --- reading operands -----------------------------------------------------------------
    def has(self, node: Any, i: int) -> bool:
        """Whether optional input ``i`` of ``node`` is given (ONNX marks an absent one with '')."""
        return len(node.input) > i and node.input[i] != ""

    def value(self, name: str) -> Value:
        """The tensor as an IR value: a weight becomes a parameter (by reference), another known
        array a constant."""
        e = self.entry(name)
        if e.value is None:
            assert e.static is not None
            if e.initializer:
                self._params += 1
                e.value = self.graph.add_param(f"{name}#{self._params}", e.static)
            else:
                e.value = self.const(e.static)
        return e.value

    def inputs(self, node: Any) -> list[Value]:
        return [self.value(n) for n in node.input if n]

    # --- building (emit, const, reshape: ConversionContext) -------------------------------
    def cast(self, v: Value, dtype: str) -> Value:
        return v if v.dtype == dtype else self.emit("cast", [v], dtype=dtype)

    def scalar(self, x: float, like: Value) -> Value:
        return self.const(np.asarray(x, dtype=like.dtype))


def attrs(node: Any) -> dict[str, Any]:
    """The node's attributes as Python values (strings decoded)."""
    out = {}
    for a in node.attribute:
        v = helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def attr(node: Any, name: str, default: Any = None) -> Any:
    for a in node.attribute:
        if a.name == name:
            v = helper.get_attribute_value(a)
            return v.decode() if isinstance(v, bytes) else v
    return default


def axis_of(a: int, rank: int) -> int:
    if not -rank <= a < max(rank, 1):
        raise Unsupported(f"axis {a} out of range for rank {rank}")
    return a % max(rank, 1)


def axes_input(ctx: Context, node: Any, index: int, attr_name: str = "axes") -> list[int] | None:
    """Axes given as an attribute (older opsets) or as input ``index`` (newer): None when absent."""
    if ctx.has(node, index):
        return [int(a) for a in ctx.need_static(node.input[index], attr_name).reshape(-1)]
    value = attr(node, attr_name)
    return None if value is None else [int(a) for a in value]


def out_shape(v: Value) -> tuple[int, ...]:
    return tuple(v.shape)


def require_dtype(v: Value, allowed: Sequence[str], what: str) -> None:
    if v.dtype not in allowed:
        raise Unsupported(f"{what} in {v.dtype} (sol converts it for {', '.join(allowed)})")


def typed(shape: Sequence[int], dtype: str) -> TensorType:
    return TensorType(tuple(int(d) for d in shape), dtype)
