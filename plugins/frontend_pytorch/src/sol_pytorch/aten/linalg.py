"""Compute-bound and parameter-bound ATen converters: convolution, linear, matrix products and
scaled dot-product attention (written with matmul and softmax, which the planner fuses)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sol.plugin_api import Value, ValueKind
from sol_pytorch.aten.base import WEIGHT_VALUES, Args, Emitter, Unsupported, _scaled, _swap, _tensor, converts
from sol_pytorch.aten.reduce import vector_norm
from sol_pytorch.aten.spatial import conv_transpose
from sol_pytorch.aten.training import training_dropout
from sol_pytorch.aten.volume import conv3d

# --- convolution and matrix products ----------------------------------------------------------


def _same_padding(kernel: Sequence[int], dilation: Sequence[int]) -> list[tuple[int, int]]:
    """PyTorch's padding='same': the total d*(k-1) split with the odd element at the end."""
    out = []
    for k, d in zip(kernel, dilation):
        total = d * (k - 1)
        out.append((total // 2, total - total // 2))
    return out


def _conv(em: Emitter, x: Value, w: Value, b: Any, stride: Any, padding: Any, dilation: Any,
          groups: int) -> Value:
    """1-D and 2-D convolution (batched or not) as sol's conv2d: 1-D runs as H=1."""
    spatial = w.type.rank - 2
    if spatial == 3:
        return conv3d(em, x, w, b, stride, padding, dilation, groups)
    if spatial not in (1, 2):
        raise Unsupported(f"{spatial}-D convolution")
    if x.type.rank == w.type.rank - 1:
        x = em.reshape(x, (1,) + x.shape)

    def per_dim(v: Any) -> list[int]:
        items = [v] * spatial if isinstance(v, int) else [int(i) for i in v]
        return items * spatial if len(items) == 1 else items

    stride, dilation = per_dim(stride), per_dim(dilation)
    if padding == "valid":
        pads = [(0, 0)] * spatial
    elif padding == "same":
        pads = _same_padding(w.shape[2:], dilation)
    else:
        pads = [(p, p) for p in per_dim(padding)]
    if spatial == 1:
        x = em.reshape(x, x.shape[:2] + (1,) + x.shape[2:])
        w = em.reshape(w, w.shape[:2] + (1,) + w.shape[2:])
        stride, dilation, pads = [1] + stride, [1] + dilation, [(0, 0)] + pads
    inputs = [x, w] + ([b] if b is not None else [])
    y = em.emit("conv2d", inputs, stride=tuple(stride), padding=tuple(pads), dilation=tuple(dilation),
                groups=int(groups))
    return em.reshape(y, em.out.shape)


@converts("aten.conv2d.default", "aten.conv1d.default", "aten.conv2d.padding", "aten.conv1d.padding")
def _conv_nd(em: Emitter, a: Args) -> Value:
    return _conv(em, _tensor(a, "input"), _tensor(a, "weight"), a["bias"], a["stride"], a["padding"],
                 a["dilation"], a["groups"])


@converts("aten.convolution.default")
def _convolution(em: Emitter, a: Args) -> Value:
    if a["transposed"]:
        return conv_transpose(em, _tensor(a, "input"), _tensor(a, "weight"), a["bias"], a["stride"], a["padding"],
                              a["output_padding"], a["dilation"], a["groups"])
    return _conv(em, _tensor(a, "input"), _tensor(a, "weight"), a["bias"], a["stride"], a["padding"],
                 a["dilation"], a["groups"])


@converts("aten.linear.default")
def _linear(em: Emitter, a: Args) -> Value:
    w = _tensor(a, "weight")
    if w.type.rank != 2:
        raise Unsupported(f"linear with a rank-{w.type.rank} weight")
    b = a["bias"]
    return em.emit("dense", [_tensor(a, "input"), w] + ([b] if b is not None else []))


@converts("aten.mm.default", "aten.bmm.default", "aten.matmul.default")
def _matmul(em: Emitter, a: Args) -> Value:
    """torch.matmul's 1-D cases as NumPy's: a vector becomes a row/column matrix whose extra
    dimension the final reshape (to PyTorch's result shape) removes again."""
    x, y = _tensor(a, "self"), _tensor(a, "other" if "other" in a else "mat2")
    if x.type.rank == 1:
        x = em.reshape(x, (1,) + x.shape)
    if y.type.rank == 1:
        y = em.reshape(y, y.shape + (1,))
    return em.reshape(em.emit("matmul", [x, y]), em.out.shape)


@converts("aten.addmm.default")
def _addmm(em: Emitter, a: Args) -> Value:
    """beta * self + alpha * (mat1 @ mat2)."""
    dt = em.out.dtype
    y = em.emit("matmul", [_tensor(a, "mat1"), _tensor(a, "mat2")])
    if a["alpha"] != 1:
        y = em.emit("mul", [y, em.const(a["alpha"], dt)])
    if a["beta"] == 0:  # PyTorch ignores self then, even nan/inf in it
        return y
    return em.emit("add", [y, _scaled(em, a["self"], a["beta"], dt)])


def _beta_alpha(em: Emitter, a: Args, product: Value) -> Value:
    """``beta * self + alpha * product`` (addmm's family): with beta 0 PyTorch ignores self, even
    NaN and inf in it."""
    dt = em.out.dtype
    if a["alpha"] != 1:
        product = em.emit("mul", [product, em.const(a["alpha"], dt)])
    if a["beta"] == 0:
        return em.emit("broadcast_to", [product], shape=em.out.shape) if product.shape != em.out.shape else product
    return em.emit("add", [product, _scaled(em, a["self"], a["beta"], dt)])


@converts("aten.addmv.default")
def _addmv(em: Emitter, a: Args) -> Value:
    """beta * self + alpha * (mat @ vec): the vector as a column, the product's column dropped."""
    mat, vec = _tensor(a, "mat"), _tensor(a, "vec")
    product = em.reshape(em.emit("matmul", [mat, em.reshape(vec, vec.shape + (1,))]), mat.shape[:1])
    return _beta_alpha(em, a, product)


@converts("aten.addbmm.default")
def _addbmm(em: Emitter, a: Args) -> Value:
    """beta * self + alpha * sum_b(batch1[b] @ batch2[b])."""
    b1, b2 = _tensor(a, "batch1"), _tensor(a, "batch2")
    if b1.shape[0] == 0 or b1.shape[2] == 0:
        raise Unsupported("addbmm of empty batches")
    product = em.emit("sum", [em.emit("matmul", [b1, b2])], axes=(0,), keepdims=False)
    return _beta_alpha(em, a, product)


# --- pairwise distances ------------------------------------------------------------------------

_MM_ALWAYS, _MM_NEVER = 1, 2  # cdist's compute_mode (0 or None: the product form above 25 rows)


@converts("aten._cdist_forward.default")
def _cdist(em: Emitter, a: Args) -> Value:
    """p-norm distances between the rows of x1 and x2 (batched). For p = 2 PyTorch computes them
    as a matrix product where ``compute_mode`` says so (always, or above 25 rows), and so does
    this: ||a||^2 - 2 a.b + ||b||^2 rounds differently from the norm of the difference."""
    x1, x2 = _tensor(a, "x1"), _tensor(a, "x2")
    p, mode = float(a["p"]), a.get("compute_mode")
    r1, r2, m = x1.shape[-2], x2.shape[-2], x1.shape[-1]
    t = em.out
    if t.numel == 0 or m == 0:
        return em.graph.add_const(np.zeros(t.shape, dtype=t.dtype), hint="k")
    if p == 2 and (mode == _MM_ALWAYS or (mode in (None, 0) and (r1 > 25 or r2 > 25))):
        return em.reshape(_euclidean_by_product(em, x1, x2), t.shape)
    diff = em.emit("sub", [em.reshape(x1, x1.shape[:-1] + (1, m)), em.reshape(x2, x2.shape[:-2] + (1, r2, m))])
    return vector_norm(em, diff, p, -1, False)


def _euclidean_by_product(em: Emitter, x1: Value, x2: Value) -> Value:
    """PyTorch's _euclidean_dist: [-2 x1, |x1|^2, 1] @ [x2, 1, |x2|^2]^T, clamped at 0, sqrt."""
    dt = x1.dtype

    def squares(x: Value) -> Value:
        return em.emit("sum", [em.emit("mul", [x, x])], axes=(x.type.rank - 1,), keepdims=True)

    n1, n2 = squares(x1), squares(x2)
    ones1 = em.graph.add_const(np.ones(n1.shape, dtype=dt), hint="ones")
    ones2 = em.graph.add_const(np.ones(n2.shape, dtype=dt), hint="ones")
    left = em.emit("concat", [em.emit("mul", [x1, em.const(-2.0, dt)]), n1, ones1], axis=x1.type.rank - 1)
    right = em.emit("concat", [x2, ones2, n2], axis=x2.type.rank - 1)
    product = em.emit("matmul", [left, em.transpose(right, _swap(right.type.rank, -2, -1))])
    return em.emit("sqrt", [em.emit("clamp", [product], min=0.0)])


@converts("aten._pdist_forward.default")
def _pdist(em: Emitter, a: Args) -> Value:
    """The p-norm distance of every pair of rows i < j, in PyTorch's order: (0, 1), (0, 2), ...;
    the two rows of each pair gathered by constant indices."""
    x = _tensor(a, "self")
    t = em.out
    n, m = x.shape
    if t.numel == 0 or m == 0:
        return em.graph.add_const(np.zeros(t.shape, dtype=t.dtype), hint="k")
    first, second = np.triu_indices(n, 1)
    rows = [em.emit("gather", [x, em.const(i, "int64")], axis=0, wrap=False) for i in (first, second)]
    return vector_norm(em, em.emit("sub", rows), float(a["p"]), -1, False)


# --- attention --------------------------------------------------------------------------------


@converts("aten.scaled_dot_product_attention.default")
def _attention(em: Emitter, a: Args) -> Value:
    """softmax(q @ k^T * scale + mask) @ v: PyTorch's reference math, from ops the planner fuses
    (the scale and mask become epilogues of the first product, softmax a fused row loop).

    Masks: a boolean one keeps the scores where it is True and makes the others -inf (``where``,
    also for a mask computed at run time, e.g. from an attention-mask input); a float one is
    added; ``is_causal`` adds a constant upper-triangular -inf. Grouped-query attention
    (``enable_gqa``: fewer key/value heads than query heads) repeats each key/value head for its
    group of query heads, as PyTorch does.

    Dropout (``dropout_p > 0``, what transformers passes in training mode) is PyTorch's math
    path on the CPU: ``at::dropout`` of the attention weights, whose mask the training wrapper
    draws with eager's RNG call at that point (:func:`training_dropout`), so a seed gives eager's
    result. SDPA has no training flag: a mask is drawn whenever dropout_p > 0, and an inference
    import, which draws none, refuses it."""
    q, k, v = _tensor(a, "query"), _tensor(a, "key"), _tensor(a, "value")
    if a.get("enable_gqa"):
        k, v = _repeat_heads(em, k, q.shape[-3]), _repeat_heads(em, v, q.shape[-3])
    dt = em.out.dtype
    length, source, width = q.shape[-2], k.shape[-2], q.shape[-1]
    scale = a.get("scale")
    scale = 1.0 / float(np.sqrt(width)) if scale is None else float(scale)
    scores = em.emit("matmul", [q, em.transpose(k, _swap(k.type.rank, -2, -1))])
    scores = em.emit("mul", [scores, em.const(scale, dt)])
    if a.get("is_causal"):
        causal = np.triu(np.full((length, source), -np.inf), 1)
        scores = em.emit("add", [scores, em.const(causal, dt)])
    mask = a.get("attn_mask")
    if mask is not None:
        if not isinstance(mask, Value):
            raise Unsupported(f"attention mask of type {type(mask).__name__}")
        if mask.dtype == "bool" and mask.data is None:  # computed at run time: a select
            scores = em.emit("where", [mask, scores, em.const(-np.inf, dt)])
        else:
            if mask.dtype == "bool":
                if mask.kind is ValueKind.PARAM:  # a buffer's values, folded: the graph holds them
                    em.graph.meta[WEIGHT_VALUES] = True
                mask = em.const(np.where(np.asarray(mask.data), 0.0, -np.inf), dt)
            scores = em.emit("add", [scores, em.cast(mask, dt)])
    # PyTorch's attention gives zeros, not NaN, for a row its mask hides completely.
    weights = em.emit("softmax", [scores], axis=-1, masked_rows="zero")
    dropout = float(a.get("dropout_p") or 0.0)
    if dropout:
        weights = training_dropout(em, weights, dropout, feature=False)
    return em.emit("matmul", [weights, v])


def _repeat_heads(em: Emitter, x: Value, heads: int) -> Value:
    """(..., Hk, S, E) -> (..., heads, S, E), each of the Hk heads repeated heads / Hk times in a
    row (``repeat_interleave`` on the head axis: query head h reads key/value head h // group)."""
    if x.type.rank < 3:
        raise Unsupported("grouped-query attention on tensors without a head axis")
    *lead, hk, s, e = x.shape
    if hk == heads:
        return x
    if hk == 0 or heads % hk:
        raise Unsupported(f"grouped-query attention with {heads} query heads and {hk} key/value heads")
    wide = em.emit("broadcast_to", [em.reshape(x, (*lead, hk, 1, s, e))], shape=(*lead, hk, heads // hk, s, e))
    return em.reshape(wide, (*lead, heads, s, e))
