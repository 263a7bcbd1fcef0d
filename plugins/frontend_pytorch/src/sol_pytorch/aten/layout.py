"""Data-movement ATen converters: views and reshapes, permutations, concatenation and stacking,
slicing, splitting and padding (``F.pad``'s constant, reflect, replicate and circular modes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sol.plugin_api import Value
from sol_pytorch.aten.base import Args, Emitter, Unsupported, _slice, _swap, _tensor, converts

# --- shapes and data movement -----------------------------------------------------------------


@converts("aten.view.default", "aten._unsafe_view.default", "aten.reshape.default", "aten.flatten.using_ints",
          "aten.unflatten.int", "aten.squeeze.default", "aten.squeeze.dim", "aten.squeeze.dims",
          "aten.unsqueeze.default", "aten.reshape_as.default")
def _reshape(em: Emitter, a: Args) -> Value:
    """All of these keep the element order: a reshape to the shape PyTorch computed."""
    return em.reshape(_tensor(a, "self"), em.out.shape)


@converts("aten.expand.default", "aten.expand_as.default")
def _expand(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "self")
    t = em.out
    if x.type.numel == t.numel:
        return em.reshape(x, t.shape)
    # Broadcasting is NumPy's rule, as for expand; multiplying by ones is exact (also for
    # -0.0, inf and nan), and the planner fuses it into the consumer's loop.
    return em.emit("mul", [x, em.graph.add_const(np.ones(t.shape, dtype=t.dtype), hint="ones")])


@converts("aten.permute.default")
def _permute(em: Emitter, a: Args) -> Value:
    return em.transpose(_tensor(a, "self"), a["dims"])


@converts("aten.transpose.int", "aten.swapaxes.default", "aten.swapdims.default")
def _transpose(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "self")
    d0, d1 = (a["dim0"], a["dim1"]) if "dim0" in a else (a["axis0"], a["axis1"])
    return em.transpose(x, _swap(x.type.rank, int(d0), int(d1)))


@converts("aten.t.default")
def _t(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "self")
    return x if x.type.rank < 2 else em.transpose(x, (1, 0))


@converts("aten.numpy_T.default")
def _numpy_t(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "self")
    return em.transpose(x, tuple(reversed(range(x.type.rank))))


@converts("aten.mT.default")
def _mt(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "self")
    return em.transpose(x, _swap(x.type.rank, -2, -1))


@converts("aten.cat.default", "aten.concat.default", "aten.concatenate.default")
def _cat(em: Emitter, a: Args) -> Value:
    t = em.out
    parts = [em.operand(v, t.dtype) for v in a["tensors"]]
    # PyTorch still accepts legacy empty 1-D tensors beside tensors of any rank; they add nothing.
    parts = [v for v in parts if not (v.shape == (0,) and t.rank != 1)]
    if len(parts) == 1:
        return em.reshape(parts[0], t.shape)
    return em.emit("concat", parts, axis=a["dim"])


@converts("aten.stack.default")
def _stack(em: Emitter, a: Args) -> Value:
    t = em.out
    dim = a["dim"] % t.rank
    parts = []
    for v in a["tensors"]:
        v = em.operand(v, t.dtype)
        parts.append(em.reshape(v, v.shape[:dim] + (1,) + v.shape[dim:]))
    return parts[0] if len(parts) == 1 else em.emit("concat", parts, axis=dim)


# --- slicing, splitting and padding -----------------------------------------------------------

_END = 1 << 62  # "to the end": any bound past the axis clamps to it (Python slice rules)


def _dim(x: Value, dim: Any) -> int:
    rank = x.type.rank
    d = int(dim)
    if not -rank <= d < rank:
        raise Unsupported(f"dim {d} of a rank-{rank} tensor")
    return d % rank


@converts("aten.slice.Tensor")
def _slice_tensor(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "self")
    return _slice(em, x, _dim(x, a["dim"]), a["start"], a["end"], a["step"])


def _index(x: Value, dim: int, index: Any) -> int:
    i, n = int(index), x.shape[dim]
    if not -n <= i < n:
        raise Unsupported(f"index {i} out of range for dim {dim} of size {n}")
    return i % n


@converts("aten.select.int")
def _select(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "self")
    dim = _dim(x, a["dim"])
    i = _index(x, dim, a["index"])
    return em.reshape(_slice(em, x, dim, i, i + 1), em.out.shape)


@converts("aten.narrow.default")
def _narrow(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "self")
    dim = _dim(x, a["dim"])
    start = int(a["start"])
    start = start + x.shape[dim] if start < 0 else start
    return _slice(em, x, dim, start, start + int(a["length"]))


def _pieces(em: Emitter, x: Value, dim: int, bounds: Sequence[tuple[int, int]]) -> tuple[Value, ...]:
    return tuple(_slice(em, x, dim, s, e) for s, e in bounds)


def _consecutive(sizes: Sequence[int]) -> list[tuple[int, int]]:
    bounds, start = [], 0
    for size in sizes:
        bounds.append((start, start + int(size)))
        start += int(size)
    return bounds


def _even_sizes(n: int, size: int) -> list[int]:
    """``split(size)``: pieces of ``size``, the last one smaller (one empty piece if n == 0)."""
    if size <= 0:
        raise Unsupported(f"split size {size}")
    return [min(size, n - s) for s in range(0, n, size)] or [0]


@converts("aten.split.Tensor", "aten.unsafe_split.Tensor")
def _split(em: Emitter, a: Args) -> tuple[Value, ...]:
    x = _tensor(a, "self")
    dim = _dim(x, a["dim"])
    return _pieces(em, x, dim, _consecutive(_even_sizes(x.shape[dim], int(a["split_size"]))))


@converts("aten.split_with_sizes.default", "aten.unsafe_split_with_sizes.default", "aten.split.sizes")
def _split_with_sizes(em: Emitter, a: Args) -> tuple[Value, ...]:
    x = _tensor(a, "self")
    dim = _dim(x, a["dim"])
    sizes = a["split_sizes"] if "split_sizes" in a else a["split_size"]
    return _pieces(em, x, dim, _consecutive(sizes))


@converts("aten.chunk.default", "aten.unsafe_chunk.default")
def _chunk(em: Emitter, a: Args) -> tuple[Value, ...]:
    x = _tensor(a, "self")
    dim = _dim(x, a["dim"])
    n, chunks = x.shape[dim], int(a["chunks"])
    if chunks < 1:
        raise Unsupported(f"chunk into {chunks} pieces")
    sizes = [0] * chunks if n == 0 else _even_sizes(n, -(-n // chunks))  # PyTorch: ceil(n / chunks) each
    return _pieces(em, x, dim, _consecutive(sizes))


@converts("aten.tensor_split.sections")
def _tensor_split_sections(em: Emitter, a: Args) -> tuple[Value, ...]:
    x = _tensor(a, "self")
    dim = _dim(x, a["dim"])
    n, k = x.shape[dim], int(a["sections"])
    if k < 1:
        raise Unsupported(f"tensor_split into {k} sections")
    return _pieces(em, x, dim, _consecutive([n // k + (1 if i < n % k else 0) for i in range(k)]))


@converts("aten.tensor_split.indices")
def _tensor_split_indices(em: Emitter, a: Args) -> tuple[Value, ...]:
    x = _tensor(a, "self")
    dim = _dim(x, a["dim"])
    cuts = [0] + [int(i) for i in a["indices"]] + [_END]
    return _pieces(em, x, dim, list(zip(cuts[:-1], cuts[1:])))


@converts("aten.unbind.int")
def _unbind(em: Emitter, a: Args) -> tuple[Value, ...]:
    x = _tensor(a, "self")
    dim = _dim(x, a["dim"])
    shape = x.shape[:dim] + x.shape[dim + 1:]
    return tuple(em.reshape(_slice(em, x, dim, i, i + 1), shape) for i in range(x.shape[dim]))


def _pad_pairs(x: Value, pad: Sequence[Any]) -> list[tuple[int, int]]:
    """PyTorch's pad list (last dim first: (left, right, top, bottom, ...)) as one (before,
    after) pair per axis of ``x``."""
    pad = [int(p) for p in pad]
    rank = x.type.rank
    if len(pad) % 2 or len(pad) // 2 > rank:
        raise Unsupported(f"pad list {pad} for a rank-{rank} tensor")
    pairs = [(0, 0)] * rank
    for i in range(len(pad) // 2):
        pairs[rank - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return pairs


def _constant_pad(em: Emitter, x: Value, pairs: list[tuple[int, int]], value: Any) -> Value:
    """Negative amounts crop (one ``slice`` node); the non-negative rest is one ``pad`` node."""
    crop = [(d, max(-lo, 0), x.shape[d] - max(-hi, 0)) for d, (lo, hi) in enumerate(pairs) if lo < 0 or hi < 0]
    if any(s >= e for _, s, e in crop):
        raise Unsupported(f"padding {pairs} crops {x.type} to nothing")
    if crop:
        x = em.emit("slice", [x], axes=tuple(d for d, _, _ in crop), starts=tuple(s for _, s, _ in crop),
                    stops=tuple(e for _, _, e in crop))
    rest = tuple((max(lo, 0), max(hi, 0)) for lo, hi in pairs)
    if not any(lo or hi for lo, hi in rest):
        return x
    return em.emit("pad", [x], pads=rest, value=float(value))


def _edge(em: Emitter, x: Value, dim: int, lo: int, hi: int, mode: str) -> Value:
    """``x`` padded along ``dim`` by ``lo`` / ``hi`` elements as a concat of slices of it."""
    n = x.shape[dim]

    def at(i: int) -> Value:
        return _slice(em, x, dim, i, i + 1)

    if mode == "reflect":  # x[lo], ..., x[1] | x | x[n-2], ..., x[n-1-hi]
        if lo >= n or hi >= n:
            raise Unsupported(f"reflect padding by {max(lo, hi)} of a dim of size {n}")
        parts = [at(i) for i in range(lo, 0, -1)] + [x] + [at(n - 2 - i) for i in range(hi)]
    elif mode == "replicate":  # x[0] lo times | x | x[n-1] hi times
        parts = [at(0)] * lo + [x] + [at(n - 1)] * hi
    else:  # circular: x[n-lo:] | x | x[:hi]
        if lo > n or hi > n:
            raise Unsupported(f"circular padding by {max(lo, hi)} of a dim of size {n}")
        parts = ([_slice(em, x, dim, n - lo, n)] if lo else []) + [x] + ([_slice(em, x, dim, 0, hi)] if hi else [])
    return x if len(parts) == 1 else em.emit("concat", parts, axis=dim)


_PAD_MODES = ("constant", "reflect", "replicate", "circular")
_EDGE_PAD_LIMIT = 64  # reflect/replicate take one slice per padded element


@converts("aten.constant_pad_nd.default")
def _constant_pad_nd(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "self")
    return _constant_pad(em, x, _pad_pairs(x, a["pad"]), a["value"])


@converts("aten.pad.default")
def _pad(em: Emitter, a: Args) -> Value:
    """``F.pad``: constant padding (negative amounts crop); reflect, replicate and circular
    padding as concatenations of slices of the input, one axis after the other (exact: these
    modes are separable)."""
    x = _tensor(a, "self")
    mode = a["mode"]
    pairs = _pad_pairs(x, a["pad"])
    if mode == "constant":
        value = a["value"]
        return _constant_pad(em, x, pairs, 0.0 if value is None else value)
    if mode not in _PAD_MODES:
        raise Unsupported(f"padding mode {mode!r}")
    if any(lo < 0 or hi < 0 for lo, hi in pairs):
        raise Unsupported(f"{mode} padding by negative amounts")
    if mode != "circular" and sum(lo + hi for lo, hi in pairs) > _EDGE_PAD_LIMIT:
        raise Unsupported(f"{mode} padding by more than {_EDGE_PAD_LIMIT} elements in all")
    for d in reversed(range(x.type.rank)):  # last dim first, as PyTorch pads
        lo, hi = pairs[d]
        if lo or hi:
            x = _edge(em, x, d, lo, hi, mode)
    return x
