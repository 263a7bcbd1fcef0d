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
        if mode != "replicate":
            raise Unsupported(f"{mode} padding by negative amounts")
        return _replicate_by_gather(em, x, pairs)
    if mode != "circular" and sum(lo + hi for lo, hi in pairs) > _EDGE_PAD_LIMIT:
        raise Unsupported(f"{mode} padding by more than {_EDGE_PAD_LIMIT} elements in all")
    for d in reversed(range(x.type.rank)):  # last dim first, as PyTorch pads
        lo, hi = pairs[d]
        if lo or hi:
            x = _edge(em, x, d, lo, hi, mode)
    return x


def _replicate_by_gather(em: Emitter, x: Value, pairs: list[tuple[int, int]]) -> Value:
    """Replicate padding by amounts of any sign, as PyTorch reads it: out[i] = x[clamp(i - before,
    0, n - 1)] along each padded axis, one gather of those constant positions per axis."""
    for d, (lo, hi) in enumerate(pairs):
        n = x.shape[d]
        size = n + lo + hi
        if size < 1 or n < 1:
            raise Unsupported(f"replicate padding by {(lo, hi)} of a dim of size {n}")
        if lo or hi:
            index = np.clip(np.arange(size) - lo, 0, n - 1)
            x = em.emit("gather", [x, em.const(index, "int64")], axis=d, wrap=False)
    return x


# --- more views and copies: each one a reshape, transpose, slice, broadcast or gather ---------


@converts("aten.atleast_1d.default", "aten.atleast_2d.default", "aten.atleast_3d.default", "aten.ravel.default",
          "aten.view_copy.default")
def _reshape_like(em: Emitter, a: Args) -> Value:
    """NumPy's atleast_*d add unit axes around the data and ravel flattens it: the element order
    stays, so each is a reshape to the shape PyTorch computed."""
    return em.reshape(_tensor(a, "self"), em.out.shape)


@converts("aten.broadcast_to.default")
def _broadcast_to(em: Emitter, a: Args) -> Value:
    return _expand(em, a)


@converts("aten.permute_copy.default")
def _permute_copy(em: Emitter, a: Args) -> Value:
    return _permute(em, a)


@converts("aten.narrow_copy.default")
def _narrow_copy(em: Emitter, a: Args) -> Value:
    return _narrow(em, a)


@converts("aten.unbind_copy.int")
def _unbind_copy(em: Emitter, a: Args) -> tuple[Value, ...]:
    return _unbind(em, a)


@converts("aten.movedim.int", "aten.movedim.intlist")
def _movedim(em: Emitter, a: Args) -> Value:
    """The source axes to the destination positions, the others in their order around them."""
    x = _tensor(a, "self")
    rank = x.type.rank
    src, dst = a["source"], a["destination"]
    src = [src] if isinstance(src, int) else list(src)
    dst = [dst] if isinstance(dst, int) else list(dst)
    src, dst = [_dim(x, d) for d in src], [_dim(x, d) for d in dst]
    rest = iter(d for d in range(rank) if d not in src)
    placed = dict(zip(dst, src))
    return em.transpose(x, [placed[i] if i in placed else next(rest) for i in range(rank)])


def _split_dim(x: Value, kind: str) -> int:
    """hsplit splits dim 1 (dim 0 of a vector), vsplit dim 0, dsplit dim 2."""
    if kind == "h":
        return 1 if x.type.rank > 1 else 0
    return {"v": 0, "d": 2}[kind]


def _directional_split(kind: str) -> Any:
    def convert(em: Emitter, a: Args) -> tuple[Value, ...]:
        x = _tensor(a, "self")
        dim = _split_dim(x, kind)
        if dim >= x.type.rank:
            raise Unsupported(f"{kind}split of a rank-{x.type.rank} tensor")
        if "sections" in a:
            n, k = x.shape[dim], int(a["sections"])
            if k < 1 or n % k:  # PyTorch requires an even split
                raise Unsupported(f"{kind}split of {n} into {k} sections")
            return _pieces(em, x, dim, _consecutive([n // k] * k))
        cuts = [0] + [int(i) for i in a["indices"]] + [_END]
        return _pieces(em, x, dim, list(zip(cuts[:-1], cuts[1:])))

    return convert


for _kind in ("h", "v", "d"):
    converts(f"aten.{_kind}split.int", f"aten.{_kind}split.array")(_directional_split(_kind))


@converts("aten.flip.default")
def _flip(em: Emitter, a: Args) -> Value:
    """Each flipped axis is a gather of its positions in reverse order (a constant index)."""
    x = _tensor(a, "self")
    for d in sorted({_dim(x, d) for d in a["dims"]}) if x.type.rank else []:
        n = x.shape[d]
        if n > 1:
            x = em.emit("gather", [x, em.const(np.arange(n - 1, -1, -1), "int64")], axis=d, wrap=False)
    return x


def _diagonal_geometry(x: Value, a: Args) -> tuple[list[int], int, int, int, int]:
    """(the other axes, dim1, dim2, the diagonal's first flat position in the (dim1, dim2) plane,
    its length) for ``diagonal``'s arguments (``offset`` > 0: above the main diagonal)."""
    d1, d2 = _dim(x, a["dim1"]), _dim(x, a["dim2"])
    if d1 == d2:
        raise Unsupported("diagonal of one axis with itself")
    offset = int(a["offset"])
    rest = [d for d in range(x.type.rank) if d not in (d1, d2)]
    n, m = x.shape[d1], x.shape[d2]
    start, length = (offset, min(n, m - offset)) if offset >= 0 else (-offset * m, min(n + offset, m))
    return rest, d1, d2, start, max(length, 0)


@converts("aten.diagonal.default", "aten.linalg_diagonal.default", "aten.diagonal_copy.default")
def _diagonal(em: Emitter, a: Args) -> Value:
    """The two axes moved to the end and flattened: the diagonal is then every (m + 1)-th element
    from the offset's start, one strided slice; the result has it as its last axis, as PyTorch."""
    x = _tensor(a, "self" if "self" in a else "A")
    rest, d1, d2, start, length = _diagonal_geometry(x, a)
    n, m = x.shape[d1], x.shape[d2]
    lead = tuple(x.shape[d] for d in rest)
    if length == 0:
        return em.graph.add_const(np.zeros(lead + (0,), dtype=x.dtype), hint="empty")
    flat = em.reshape(em.transpose(x, rest + [d1, d2]), lead + (n * m,))
    diag = _slice(em, flat, len(rest), start, start + (length - 1) * (m + 1) + 1, m + 1)
    return em.reshape(diag, em.out.shape)


@converts("aten.repeat.default")
def _repeat(em: Emitter, a: Args) -> Value:
    """``x.repeat(r0, r1, ...)``: x with a unit axis before each of its axes, broadcast there to
    the repeat count, and the pairs merged (the repeats vary slowest, as PyTorch tiles)."""
    x = _tensor(a, "self")
    reps = [int(r) for r in a["repeats"]]
    if len(reps) < x.type.rank:
        raise Unsupported(f"repeat with {len(reps)} counts for a rank-{x.type.rank} tensor")
    shape = (1,) * (len(reps) - x.type.rank) + x.shape
    t = em.out
    if t.numel == 0:
        return em.graph.add_const(np.zeros(t.shape, dtype=t.dtype), hint="empty")
    inter = tuple(d for s in shape for d in (1, s))
    wide = tuple(d for r, s in zip(reps, shape) for d in (r, s))
    y = em.reshape(x, inter)
    if wide != inter:
        y = em.emit("broadcast_to", [y], shape=wide)
    return em.reshape(y, t.shape)


@converts("aten.mH.default", "aten.matrix_H.default", "aten.adjoint.default")
def _conjugate_transpose(em: Emitter, a: Args) -> Value:
    """The conjugate transpose: for real tensors the transpose of the last two axes."""
    x = _tensor(a, "self")
    if x.dtype.startswith("complex"):
        raise Unsupported(f"{x.dtype} tensors")
    return em.transpose(x, _swap(x.type.rank, -2, -1)) if x.type.rank >= 2 else x


@converts("aten.unfold.default")
def _unfold(em: Emitter, a: Args) -> Value:
    """Windows of ``size`` every ``step`` along ``dimension``: one gather of a constant
    (windows, size) index table, the window axis then moved to the end, as PyTorch has it."""
    x = _tensor(a, "self")
    t = em.out
    if x.type.rank == 0:
        return em.reshape(x, t.shape)
    dim, size, step = _dim(x, a["dimension"]), int(a["size"]), int(a["step"])
    windows = t.shape[dim]
    if t.numel == 0:
        return em.graph.add_const(np.zeros(t.shape, dtype=t.dtype), hint="empty")
    index = np.arange(windows)[:, None] * step + np.arange(size)[None, :]
    y = em.emit("gather", [x, em.const(index, "int64")], axis=dim, wrap=False)
    perm = [d for d in range(y.type.rank) if d != dim + 1] + [dim + 1]
    return em.transpose(y, perm)


@converts("aten.cartesian_prod.default")
def _cartesian_prod(em: Emitter, a: Args) -> Value:
    """Every combination of the vectors' elements, the last varying fastest: each vector
    broadcast along the others' axes, flattened, as one column."""
    t = em.out
    parts = [em.operand(v, t.dtype) for v in a["tensors"]]
    if len(parts) == 1:
        return em.reshape(parts[0], t.shape)
    grid = tuple(v.shape[0] for v in parts)
    if t.numel == 0:
        return em.graph.add_const(np.zeros(t.shape, dtype=t.dtype), hint="empty")
    columns = []
    for i, v in enumerate(parts):
        shaped = em.reshape(v, tuple(n if j == i else 1 for j, n in enumerate(grid)))
        full = em.emit("broadcast_to", [shaped], shape=grid) if shaped.shape != grid else shaped
        columns.append(em.reshape(full, (t.shape[0], 1)))
    return em.emit("concat", columns, axis=1)


def _placed(em: Emitter, x: Value, src: Value, axis: int, positions: np.ndarray) -> Value:
    """``x`` with ``src``'s elements along ``axis`` written at ``positions`` of that axis (one
    per src element, distinct): a gather spreads src over the axis, a constant mask selects."""
    n = x.shape[axis]
    if positions.size == 0:
        return em.emit("identity", [x])
    index = np.zeros(n, dtype=np.int64)
    index[positions] = np.arange(positions.size)
    mask = np.zeros(n, dtype=bool)
    mask[positions] = True
    spread = em.emit("gather", [src, em.const(index, "int64")], axis=axis, wrap=False)
    mask_shape = (n,) + (1,) * (x.type.rank - axis - 1)
    return em.emit("where", [em.const(mask.reshape(mask_shape), "bool"), spread, x])


@converts("aten.slice_scatter.default")
def _slice_scatter(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "self")
    src = em.operand(a["src"], x.dtype)
    dim = _dim(x, a["dim"])
    start, end, step = a.get("start"), a.get("end"), a.get("step", 1)
    s, e, st = slice(None if start is None else int(start), None if end is None else int(end),
                     int(step)).indices(x.shape[dim])
    positions = np.arange(s, e, st)
    if positions.size != src.shape[dim]:
        raise Unsupported(f"slice_scatter of {src.shape[dim]} elements into a slice of {positions.size}")
    return _placed(em, x, src, dim, positions)


@converts("aten.diagonal_scatter.default")
def _diagonal_scatter(em: Emitter, a: Args) -> Value:
    """``src`` written on a diagonal: the two axes moved to the end and flattened (as
    :func:`_diagonal` reads it), the diagonal's flat positions placed, and moved back."""
    x = _tensor(a, "self")
    src = em.operand(a["src"], x.dtype)
    rank = x.type.rank
    rest, d1, d2, start, length = _diagonal_geometry(x, a)
    n, m = x.shape[d1], x.shape[d2]
    if length != src.shape[-1]:
        raise Unsupported(f"diagonal_scatter of {src.shape[-1]} elements onto a diagonal of {length}")
    perm = rest + [d1, d2]
    lead = tuple(x.shape[d] for d in rest)
    flat = em.reshape(em.transpose(x, perm), lead + (n * m,))
    placed = _placed(em, flat, src, len(rest), start + np.arange(length) * (m + 1))
    back = em.reshape(placed, lead + (n, m))
    return em.transpose(back, [perm.index(d) for d in range(rank)])
