"""Compute-bound and parameter-bound ATen converters: convolution, linear, matrix products and
scaled dot-product attention (written with matmul and softmax, which the planner fuses)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from sol.plugin_api import Value, ValueKind
from sol_pytorch.aten.base import WEIGHT_VALUES, Args, Emitter, Unsupported, _scaled, _swap, _tensor, converts
from sol_pytorch.aten.spatial import conv_transpose
from sol_pytorch.aten.training import training_dropout

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
