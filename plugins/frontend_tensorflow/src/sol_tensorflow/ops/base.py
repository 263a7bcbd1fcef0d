"""What every family of TensorFlow converters uses: the :class:`Context` (the graph being built
and each TensorFlow tensor's IR values, in TensorFlow and/or NCHW layout), the converter table
(:data:`CONVERTERS`, :func:`converts`), :class:`Unsupported`, attribute and padding helpers, and
the element-wise scaffolding (which layout to compute in) that several families share.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from sol.plugin_api import ConversionContext, ConverterTable, TensorType, Value

TO_NCHW = (0, 3, 1, 2)
TO_NHWC = (0, 2, 3, 1)


class Unsupported(Exception):
    """A converter cannot express this use of its op; the importer adds the op and layer."""


@dataclass(frozen=True)
class NCHW:
    """A converter's result held in NCHW layout (the TensorFlow tensor is its NHWC transpose)."""

    value: Value


Result = Value | NCHW | np.ndarray
Converter = Callable[["Context", Any], Sequence[Result]]
CONVERTERS: ConverterTable[Converter] = ConverterTable("TensorFlow")
converts = CONVERTERS.converts
"""Registers a converter for op names (core's :class:`~sol.converters.ConverterTable`)."""


def supported_ops() -> list[str]:
    """The TensorFlow op types sol's TensorFlow frontend compiles."""
    return sorted(CONVERTERS)


def dtype_name(dtype: Any) -> str:
    return str(getattr(dtype, "name", dtype))


@dataclass
class Entry:
    """What one TensorFlow tensor is in the IR: a static array, or a value in TF layout and/or
    NCHW layout (whichever were needed so far)."""

    static: np.ndarray | None = None
    tf: Value | None = None
    nchw: Value | None = None


class Context(ConversionContext[Entry]):
    """The graph being built and the TensorFlow tensors converted so far (keyed by tensor name)."""

    unsupported = Unsupported

    def key(self, t: Any) -> str:
        return str(t.name)

    def label(self, t: Any) -> str:
        return str(t.name)

    # --- reading operands (entry, static, need_static: ConversionContext) -----------------
    def is_nchw(self, t: Any) -> bool:
        e = self.entry(t)
        return e.nchw is not None and e.tf is None

    def tf(self, t: Any) -> Value:
        """The tensor in TensorFlow's layout."""
        e = self.entry(t)
        if e.tf is None:
            if e.static is not None:
                e.tf = self.const(e.static)
            else:
                assert e.nchw is not None
                e.tf = self.emit("transpose", [e.nchw], perm=TO_NHWC)
        return e.tf

    def nchw(self, t: Any) -> Value:
        """A rank-4 NHWC tensor as NCHW."""
        e = self.entry(t)
        if e.nchw is None:
            if len(t.shape) != 4:
                raise Unsupported(f"expected a rank-4 NHWC tensor, got shape {t.shape}")
            e.nchw = self.emit("transpose", [self.tf(t)], perm=TO_NCHW)
        return e.nchw

    def operand(self, t: Any, nchw: bool, rank: int) -> Value:
        """An element-wise operand in the layout of a rank-``rank`` result: in NCHW, a smaller
        operand (a bias of shape (C,)) is right-aligned to rank 4, then transposed."""
        if not nchw:
            return self.tf(t)
        if len(t.shape) == 4:
            return self.nchw(t)
        v = self.tf(t)
        v = self.reshape(v, (1,) * (rank - len(t.shape)) + tuple(v.shape))
        return self.emit("transpose", [v], perm=TO_NCHW)

    # --- building (emit, const, reshape: ConversionContext) -------------------------------

    def transpose(self, v: Value, perm: Sequence[int]) -> Value:
        perm = tuple(int(p) % max(v.type.rank, 1) for p in perm)
        return v if perm == tuple(range(len(perm))) else self.emit("transpose", [v], perm=perm)


def out_type(op: Any, i: int = 0) -> TensorType:
    t = op.outputs[i]
    return TensorType(tuple(int(d) for d in t.shape), dtype_name(t.dtype))


def attr(op: Any, name: str, default: Any = None) -> Any:
    try:
        value = op.get_attr(name)
    except ValueError:
        return default
    return value.decode() if isinstance(value, bytes) else value


def _check_nhwc(op: Any) -> None:
    fmt = attr(op, "data_format", "NHWC")
    if fmt != "NHWC":
        raise Unsupported(f"data_format {fmt} (sol's TensorFlow frontend reads NHWC graphs)")


def same_padding(size: int, k: int, s: int, d: int) -> tuple[int, int]:
    """TensorFlow's SAME rule: output ceil(size / s); the odd pixel of padding goes after."""
    out = -(-size // s)
    total = max((out - 1) * s + (k - 1) * d + 1 - size, 0)
    return (total // 2, total - total // 2)


def window_padding(op: Any, hw: tuple[int, int], k: tuple[int, int], s: tuple[int, int],
                   d: tuple[int, int]) -> tuple[tuple[int, int], tuple[int, int]]:
    padding = attr(op, "padding")
    if padding == "VALID":
        return ((0, 0), (0, 0))
    if padding == "SAME":
        return (same_padding(hw[0], k[0], s[0], d[0]), same_padding(hw[1], k[1], s[1], d[1]))
    if padding == "EXPLICIT":
        p = list(attr(op, "explicit_paddings"))
        return ((p[2], p[3]), (p[4], p[5]))
    raise Unsupported(f"padding {padding!r}")



# --- shared by several families ------------------------------------------------------------------


def _layout_of(ctx: Context, op: Any) -> bool:
    """Compute in NCHW when the result is rank 4 and an operand is only held in NCHW."""
    return len(op.outputs[0].shape) == 4 and any(
        len(t.shape) == 4 and ctx.is_nchw(t) for t in op.inputs)


def _wrap(v: Value, nchw: bool) -> Result:
    return NCHW(v) if nchw else v


def _elementwise(ctx: Context, op: Any, build: Callable[[list[Value]], Value]) -> list[Result]:
    nchw = _layout_of(ctx, op)
    rank = len(op.outputs[0].shape)
    dtype = dtype_name(op.outputs[0].dtype)
    ins = []
    for t in op.inputs:
        v = ctx.operand(t, nchw, rank)
        if v.dtype != dtype:
            raise Unsupported(f"operand dtype {v.dtype}, result dtype {dtype}")
        ins.append(v)
    return [_wrap(build(ins), nchw)]


def _hw(op: Any, name: str) -> tuple[int, int]:
    v = list(attr(op, name, [1, 1, 1, 1]))
    if len(v) != 4 or v[0] != 1 or v[3] != 1:
        raise Unsupported(f"{name} {v} across batch or channels")
    return (int(v[1]), int(v[2]))

