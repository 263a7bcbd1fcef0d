"""Data movement: concat, transpose (I/O-memory bound) and reshape (no computation)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sol.errors import SolError
from sol.ir import Node, TensorType
from sol.ops._util import axis, same_dtype
from sol.ops.registry import REQUIRED, LayerClass, OpDef


def _concat_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    ax = a["axis"]
    first = types[0]
    for t in types[1:]:
        if t.rank != first.rank or any(d != e for i, (d, e) in enumerate(zip(t.shape, first.shape)) if i != ax):
            raise SolError(f"concat along axis {ax}: shapes {', '.join(str(t) for t in types)} do not match")
    shape = list(first.shape)
    shape[ax] = sum(t.shape[ax] for t in types)
    return [TensorType(tuple(shape), same_dtype(types))]


def _transpose_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    rank = types[0].rank
    perm = tuple(axis(int(p), rank) for p in attrs["perm"])
    if sorted(perm) != list(range(rank)):
        raise SolError(f"transpose perm {attrs['perm']} is not a permutation of {rank} axes")
    return {"perm": perm}


def _transpose_core(node: Node) -> int:
    perm = node.attrs["perm"]
    moved = [i for i, p in enumerate(perm) if p != i]
    return len(perm) - moved[0] if moved else 0


def _reshape_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    shape = [int(d) for d in attrs["shape"]]
    numel = types[0].numel
    if shape.count(-1) > 1:
        raise SolError(f"reshape to {tuple(shape)}: at most one -1")
    if -1 in shape:
        known = int(np.prod([d for d in shape if d != -1]))
        if known == 0 or numel % known:
            raise SolError(f"cannot reshape {types[0]} to {tuple(shape)}")
        shape[shape.index(-1)] = numel // known
    if int(np.prod(shape)) != numel:
        raise SolError(f"cannot reshape {types[0]} ({numel} elements) to {tuple(shape)}")
    return {"shape": tuple(shape)}


def ops() -> list[OpDef]:
    return [
        OpDef("concat", LayerClass.IO_BOUND, _concat_infer,
              lambda xs, a: [np.concatenate(xs, axis=a["axis"])], (1, 1 << 16), {"axis": REQUIRED},
              normalize=lambda at, t: {"axis": axis(int(at["axis"]), t[0].rank)},
              core_dims=lambda n: n.outputs[0].type.rank - n.attrs["axis"]),
        OpDef("transpose", LayerClass.IO_BOUND,
              lambda t, a: [TensorType(tuple(t[0].shape[p] for p in a["perm"]), t[0].dtype)],
              lambda xs, a: [np.ascontiguousarray(np.transpose(xs[0], a["perm"]))], (1, 1),
              {"perm": REQUIRED}, normalize=_transpose_normalize, core_dims=_transpose_core),
        OpDef("reshape", LayerClass.SHAPE, lambda t, a: [TensorType(a["shape"], t[0].dtype)],
              lambda xs, a: [xs[0].reshape(a["shape"])], (1, 1), {"shape": REQUIRED},
              normalize=_reshape_normalize),
    ]
