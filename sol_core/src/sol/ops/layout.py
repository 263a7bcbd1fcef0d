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


def _pad_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    rank = types[0].rank
    pads = tuple((int(lo), int(hi)) for lo, hi in attrs["pads"])
    if len(pads) != rank:
        raise SolError(f"pad needs one (before, after) pair per axis of {types[0]}, got {len(pads)}")
    if any(lo < 0 or hi < 0 for lo, hi in pads):
        raise SolError(f"pad amounts must not be negative (cropping is a slice), got {pads}")
    return {"pads": pads, "value": float(attrs["value"])}


def _pad_core(node: Node) -> int:
    """Dims from the first padded axis on: the loops before it are plain copies."""
    padded = [i for i, (lo, hi) in enumerate(node.attrs["pads"]) if lo or hi]
    return len(node.attrs["pads"]) - padded[0] if padded else 0


def _slice_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    """Python slice semantics per axis (negative and out-of-range bounds clamp), positive steps."""
    rank, shape = types[0].rank, types[0].shape
    axes = tuple(axis(int(a), rank) for a in attrs["axes"])
    steps = tuple(int(s) for s in (attrs["steps"] or (1,) * len(axes)))
    if not (len(axes) == len(attrs["starts"]) == len(attrs["stops"]) == len(steps)) or len(set(axes)) != len(axes):
        raise SolError(f"slice needs one start, stop and step per distinct axis, got {attrs}")
    if any(s < 1 for s in steps):
        raise SolError(f"slice steps must be positive, got {steps}")
    bounds = [slice(int(s), int(e), st).indices(shape[ax])
              for ax, s, e, st in zip(axes, attrs["starts"], attrs["stops"], steps)]
    order = sorted(range(len(axes)), key=lambda i: axes[i])
    return {"axes": tuple(axes[i] for i in order), "starts": tuple(bounds[i][0] for i in order),
            "stops": tuple(bounds[i][1] for i in order), "steps": tuple(steps[i] for i in order)}


def _slice_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    shape = list(types[0].shape)
    for ax, s, e, st in zip(a["axes"], a["starts"], a["stops"], a["steps"]):
        shape[ax] = len(range(s, e, st))
    return [TensorType(tuple(shape), types[0].dtype)]


def _slice_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    index = [slice(None)] * xs[0].ndim
    for ax, s, e, st in zip(a["axes"], a["starts"], a["stops"], a["steps"]):
        index[ax] = slice(s, e, st)
    return [np.asarray(xs[0][tuple(index)], order="C")]


def ops() -> list[OpDef]:
    # Gradient rules and loop lowerings are imported here, when the registry is
    # filled, not at import time (sol.ops.registry explains why).
    from sol.autodiff.rules import layout as grad
    from sol.lowering import loops

    # Data movement: 0 FLOPs (the default of every layer class but element-wise).
    out = [
        OpDef("concat", LayerClass.IO_BOUND, _concat_infer,
              lambda xs, a: [np.concatenate(xs, axis=a["axis"])], (1, 1 << 16), {"axis": REQUIRED},
              normalize=lambda at, t: {"axis": axis(int(at["axis"]), t[0].rank)},
              core_dims=lambda n: n.outputs[0].type.rank - n.attrs["axis"], gradient=grad.concat,
              c_loops=loops.concat),
        OpDef("transpose", LayerClass.IO_BOUND,
              lambda t, a: [TensorType(tuple(t[0].shape[p] for p in a["perm"]), t[0].dtype)],
              lambda xs, a: [np.asarray(np.transpose(xs[0], a["perm"]), order="C")], (1, 1),
              {"perm": REQUIRED}, normalize=_transpose_normalize, core_dims=_transpose_core,
              gradient=grad.transpose, c_loops=loops.transpose),
        OpDef("pad", LayerClass.IO_BOUND,
              lambda t, a: [TensorType(tuple(d + lo + hi for d, (lo, hi) in zip(t[0].shape, a["pads"])), t[0].dtype)],
              lambda xs, a: [np.pad(xs[0], a["pads"], constant_values=a["value"])], (1, 1),
              {"pads": REQUIRED, "value": 0.0}, normalize=_pad_normalize, core_dims=_pad_core,
              gradient=grad.pad, c_loops=loops.pad,
              doc="constant padding: pads is one (before, after) pair per axis"),
        OpDef("slice", LayerClass.IO_BOUND, _slice_infer, _slice_ref, (1, 1),
              {"axes": REQUIRED, "starts": REQUIRED, "stops": REQUIRED, "steps": None},
              normalize=_slice_normalize, core_dims=lambda n: n.inputs[0].type.rank - min(n.attrs["axes"]),
              gradient=grad.slice_, c_loops=loops.slice_,
              doc="x[start:stop:step] along each of axes (Python slice rules)"),
        OpDef("reshape", LayerClass.SHAPE, lambda t, a: [TensorType(a["shape"], t[0].dtype)],
              lambda xs, a: [xs[0].reshape(a["shape"])], (1, 1), {"shape": REQUIRED},
              normalize=_reshape_normalize, gradient=grad.reshape),  # an alias of its input: no code
    ]
    # Moving values makes none (sol.passes.finite); pad adds its value.
    for o in out:
        o.preserves_finite = True
    next(o for o in out if o.name == "pad").preserves_finite = lambda n: bool(np.isfinite(n.attrs["value"]))
    return out
