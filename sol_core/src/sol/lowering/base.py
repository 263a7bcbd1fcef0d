"""Element types and index arithmetic shared by every part of :mod:`sol.lowering`."""

from __future__ import annotations

from sol.errors import SolError
from sol.ir import Value

# C element types of sol's dtypes.
CTYPES = {"float32": "float", "float64": "double", "int64": "int64_t", "int32": "int32_t", "int8": "int8_t",
          "uint8": "uint8_t", "bool": "bool"}


def ctype(v: Value) -> str:
    try:
        return CTYPES[v.dtype]
    except KeyError:
        raise SolError(f"generated code does not support dtype {v.dtype} (value {v.name})") from None


def contiguous_strides(shape: tuple[int, ...], rank: int) -> list[int]:
    """Strides of a row-major ``shape`` right-aligned to ``rank`` dims; broadcast dims get 0."""
    padded = (1,) * (rank - len(shape)) + tuple(shape)
    strides = [0] * rank
    acc = 1
    for k in range(rank - 1, -1, -1):
        strides[k] = 0 if padded[k] == 1 else acc
        acc *= padded[k]
    return strides


def numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def linear(strides: list[int]) -> str:
    """``i0 * s0 + i1 * s1 + ...`` over the loop counters ``i<j>``, zero strides left out."""
    terms = [f"i{j} * {s}" if s != 1 else f"i{j}" for j, s in enumerate(strides) if s]
    return " + ".join(terms) or "0"
