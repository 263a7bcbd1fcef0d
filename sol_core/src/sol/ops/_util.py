"""Shape helpers shared by the op definitions."""

from __future__ import annotations

from typing import Any

import numpy as np

from sol.errors import SolError
from sol.ir import TensorType


def broadcast_shape(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    try:
        return tuple(np.broadcast_shapes(*shapes))
    except ValueError:
        raise SolError(f"shapes {', '.join(map(str, shapes))} do not broadcast") from None


def pair(v: Any) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        return (int(v), int(v))
    t = tuple(int(x) for x in v)
    if len(t) != 2:
        raise SolError(f"expected an int or a pair, got {v!r}")
    return t  # type: ignore[return-value]


def padding2d(v: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    """1 -> ((1,1),(1,1)); (1,2) -> ((1,1),(2,2)); ((t,b),(l,r)) stays."""
    if isinstance(v, (int, np.integer)):
        return ((int(v), int(v)), (int(v), int(v)))
    v = tuple(v)
    if len(v) == 2 and all(isinstance(x, (int, np.integer)) for x in v):
        return ((int(v[0]), int(v[0])), (int(v[1]), int(v[1])))
    if len(v) == 2:
        return (pair(v[0]), pair(v[1]))
    raise SolError(f"cannot read 2-D padding {v!r}")


def axis(a: int, rank: int) -> int:
    if not -rank <= a < max(rank, 1):
        raise SolError(f"axis {a} is out of range for rank {rank}")
    return a % rank if rank else 0


def expect_rank(t: TensorType, rank: int, what: str) -> None:
    if t.rank != rank:
        raise SolError(f"{what}: expected rank {rank}, got {t} ")


def same_dtype(types: list[TensorType]) -> str:
    dtypes = {t.dtype for t in types}
    if len(dtypes) != 1:
        raise SolError(f"operands have different dtypes: {', '.join(sorted(dtypes))}")
    return types[0].dtype


def f64(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64)
