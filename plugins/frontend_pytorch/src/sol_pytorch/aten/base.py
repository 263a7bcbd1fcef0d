"""What every family of ATen converters uses: the :class:`Emitter` converters build the graph
with, the converter table (:data:`CONVERTERS`, :func:`converts`), :class:`Unsupported`, the
argument helpers, and the few building blocks more than one family needs (a scaled operand, a
slice, an axis swap, inference BatchNorm).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from sol.plugin_api import ConverterTable, Graph, TensorType, Value

Args = dict[str, Any]
Result = Any  # a Value, or a tuple of Values / None for multi-output overloads
Converter = Callable[["Emitter", Args], Result]

CONVERTERS: ConverterTable[Converter] = ConverterTable("PyTorch")
converts = CONVERTERS.converts
"""Registers a converter for op names (core's :class:`~sol.converters.ConverterTable`)."""
WEIGHT_VALUES = "pytorch.weight_values"
"""``Graph.meta`` flag: a converter folded a weight's or buffer's values into the graph (an
attention mask buffer), so the graph holds for these values only (the trace cache keeps none)."""


DATA_DEPENDENT = "its result's shape depends on the values (known only at run time; sol compiles static shapes)"

LAYOUT_DEPENDENT = "pytorch.layout_dependent"
"""``Graph.meta`` key set by a converter whose result depends on how a tensor lies in memory
(``as_strided``, ``resize_``): the compiled graph holds the example inputs' strides, so a call with
other strides or storage offsets must not run it (:mod:`sol_pytorch.variants`)."""


class Unsupported(Exception):
    """A converter cannot express this use of its op (e.g. a transposed convolution). The
    importer adds the op's name and where it came from in the model."""


def supported_ops() -> list[str]:
    """The ATen overloads sol's PyTorch frontend compiles (others are decomposed when PyTorch
    knows how, or reported as unsupported)."""
    return sorted(CONVERTERS)


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def tensor_type(val: Any) -> TensorType:
    """The sol type of a (fake) tensor; raises Unsupported for dtypes sol does not have and for
    shapes known only at run time (``nonzero``, ``masked_select``, ``unique``: a size that depends
    on the values, which sol's shape-specialized code cannot have)."""
    if any(not isinstance(d, int) for d in val.shape):
        raise Unsupported(DATA_DEPENDENT)
    try:
        return TensorType(tuple(int(d) for d in val.shape), dtype_name(val.dtype))
    except ValueError as exc:
        raise Unsupported(str(exc)) from None


class Emitter:
    """What converters use to build the graph: node creation with the current source location,
    constants, casts, and the result type PyTorch computed for the node being converted."""

    def __init__(self, graph: Graph) -> None:
        self.graph = graph
        self.source: str | None = None
        self.val: Any = None  # meta["val"] of the node being converted
        self.node: Any = None  # the fx node being converted (its inputs' fake tensors: their memory layout)

    # --- expected result ----------------------------------------------------------------------
    @property
    def out(self) -> TensorType:
        """Type of the node's (first) tensor result."""
        val = self.val[0] if isinstance(self.val, (tuple, list)) else self.val
        return tensor_type(val)

    # --- building -----------------------------------------------------------------------------
    def emit(self, op: str, inputs: Sequence[Value], **attrs: Any) -> Value:
        return self.graph.add_node(op, list(inputs), attrs, source=self.source).output

    def const(self, value: Any, dtype: str) -> Value:
        return self.graph.add_const(np.asarray(value, dtype=dtype), hint="k")

    def cast(self, v: Value, dtype: str) -> Value:
        return v if v.dtype == dtype else self.emit("cast", [v], dtype=dtype)

    def operand(self, x: Any, dtype: str) -> Value:
        """A tensor operand cast to ``dtype`` (PyTorch's promoted type), or a Python scalar as
        a constant of that dtype."""
        if isinstance(x, Value):
            return self.cast(x, dtype)
        if isinstance(x, (bool, int, float)):
            return self.const(x, dtype)
        raise Unsupported(f"cannot use {type(x).__name__} {x!r} as a tensor operand")

    def reshape(self, v: Value, shape: Sequence[int]) -> Value:
        shape = tuple(int(d) for d in shape)
        return v if v.shape == shape else self.emit("reshape", [v], shape=shape)

    def transpose(self, v: Value, perm: Sequence[int]) -> Value:
        perm = tuple(p % v.type.rank for p in perm) if v.type.rank else ()
        return v if perm == tuple(range(len(perm))) else self.emit("transpose", [v], perm=perm)


# --- argument helpers -------------------------------------------------------------------------


def pair(v: Any, name: str = "value") -> tuple[int, int]:
    """PyTorch's int-or-list window arguments (``3``, ``[3]``, ``[3, 2]``) as a pair."""
    if isinstance(v, int):
        return (v, v)
    items = [int(x) for x in v]
    if len(items) == 1:
        return (items[0], items[0])
    if len(items) == 2:
        return (items[0], items[1])
    raise Unsupported(f"{name} {list(v)} is not 2-D")


def symmetric(p: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    return ((p[0], p[0]), (p[1], p[1]))


def _tensor(a: Args, key: str) -> Value:
    v = a[key]
    if not isinstance(v, Value):
        raise Unsupported(f"argument {key!r} must be a tensor of the model, got {type(v).__name__}")
    return v


# --- building blocks more than one family uses ------------------------------------------------


def _scaled(em: Emitter, x: Any, alpha: Any, dtype: str) -> Value:
    """``alpha * x`` for add/sub's ``alpha`` argument (folded when ``x`` is a scalar)."""
    if alpha == 1:
        return em.operand(x, dtype)
    if isinstance(x, Value):
        return em.emit("mul", [em.cast(x, dtype), em.const(alpha, dtype)])
    return em.const(x * alpha, dtype)


def _swap(rank: int, d0: int, d1: int) -> list[int]:
    perm = list(range(rank))
    if rank:
        d0, d1 = d0 % rank, d1 % rank
        perm[d0], perm[d1] = perm[d1], perm[d0]
    return perm


def _slice(em: Emitter, x: Value, dim: int, start: Any, stop: Any, step: Any = 1) -> Value:
    """``x[start:stop:step]`` along ``dim`` (None bounds, negative and out-of-range ones as in
    Python); no node when it keeps everything; an empty result is an empty constant."""
    step = 1 if step is None else int(step)
    if step < 1:
        raise Unsupported(f"slice step {step} (PyTorch only allows positive steps)")
    n = x.shape[dim]
    s, e, st = slice(None if start is None else int(start), None if stop is None else int(stop), step).indices(n)
    size = len(range(s, e, st))
    if size == n:
        return x
    if size == 0:
        shape = x.shape[:dim] + (0,) + x.shape[dim + 1:]
        return em.graph.add_const(np.zeros(shape, dtype=x.dtype), hint="empty")
    return em.emit("slice", [x], axes=(dim,), starts=(s,), stops=(e,), steps=(st,))


def _batch_norm(em: Emitter, x: Value, weight: Any, bias: Any, mean: Any, var: Any, eps: float) -> Value:
    if mean is None or var is None:
        raise Unsupported("batch_norm with batch statistics (track_running_stats=False)")
    if x.type.rank < 2:
        raise Unsupported(f"batch_norm of a rank-{x.type.rank} tensor")
    c, dt = x.shape[1], x.dtype
    weight = weight if weight is not None else em.const(np.ones(c), dt)
    bias = bias if bias is not None else em.const(np.zeros(c), dt)
    return em.emit("batch_norm", [x, mean, var, weight, bias], eps=float(eps), axis=1)
