"""Index and selection ATen operations (sol_pytorch/aten/index.py) against PyTorch eager: embedding
and index_select (gather), comparisons, logical ops, where / masked_fill, max/min/argmax/argmin,
dtype conversions, integer and bool graph inputs; torch.gather, cumsum, advanced indexing and
attention with masks computed at run time (what transformers' models use).

As in test_ops.py: ``test_reference`` runs each imported case with the ops' NumPy references,
``test_device`` compiles each family as one model on every device and compares with PyTorch
(fp32: rtol 1e-4, atol 1e-5 scaled by the output; integer and bool results exactly).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sol

from op_cases import Cases, Fn, check_device, check_reference, checked_arrays, r

torch.manual_seed(0)

CASES = Cases()
case = CASES.add


def ints(high: int, *shape: int, low: int = 0, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    return torch.randint(low, high, shape, dtype=dtype)


def ties(*shape: int) -> torch.Tensor:
    """Floats with many equal values: max/argmax must pick the first, as PyTorch does."""
    return torch.randint(0, 3, shape).float()


def coin(*shape: int) -> torch.Tensor:
    return torch.rand(*shape) < 0.5


# --- gather: embedding, index_select ---------------------------------------------------------------
case("gather", "embedding", nn.Embedding(20, 6), ints(20, 2, 5))
case("gather", "embedding-padding-idx", nn.Embedding(20, 6, padding_idx=0), ints(20, 3, 4))
case("gather", "embedding-int32-ids", nn.Embedding(11, 5), ints(11, 7, dtype=torch.int32))
case("gather", "embedding-then-add", lambda t, i, p: F.embedding(i, t) + p, r(9, 8), ints(9, 2, 3), r(3, 8))
case("gather", "embedding-computed-table", lambda t, i: F.embedding(i, torch.tanh(t)), r(9, 8), ints(9, 4))
case("gather", "index_select-dim1", lambda x, i: x.index_select(1, i), r(2, 7, 3), ints(7, 5))
case("gather", "index_select-dim0-negative-free", lambda x, i: torch.index_select(x, 0, i) * 2, r(6, 4), ints(6, 6))
case("gather", "position-ids-arange", lambda e, i: F.embedding(i, e) + F.embedding(torch.arange(i.shape[1]), e),
     r(12, 4), ints(12, 2, 6))

# --- comparisons ------------------------------------------------------------------------------------
for _op in ("eq", "ne", "lt", "le", "gt", "ge"):
    _fn = getattr(torch, _op)
    case("compare", f"{_op}-tensor", lambda a, b, f=_fn: f(a, b), ties(2, 3, 4), ties(3, 4))
    case("compare", f"{_op}-scalar", lambda a, f=_fn: f(a, 1.0), ties(3, 5))
    case("compare", f"{_op}-int-scalar", lambda a, f=_fn: f(a, 3), ints(6, 4, 5))
case("compare", "int-vs-float-promotes", lambda i, x: i < x, ints(4, 3, 4), r(3, 4) * 3)
case("compare", "float-vs-int-scalar", lambda x: x >= 0, r(4, 6))

# --- logical ops --------------------------------------------------------------------------------------
case("logical", "not", lambda x: torch.logical_not(x > 0), r(3, 5))
case("logical", "not-of-float", lambda x: torch.logical_not(x), ties(3, 5))
case("logical", "and", lambda a, b: torch.logical_and(a, b), coin(3, 5), coin(3, 5))
case("logical", "or-broadcast", lambda a, b: torch.logical_or(a, b), coin(3, 1), coin(1, 5))
case("logical", "bitwise-not-bool", lambda a: ~a, coin(4, 4))
case("logical", "bitwise-and-or-bool", lambda a, b: (a & b) | ~b, coin(4, 4), coin(4, 4))

# --- where, masked_fill ---------------------------------------------------------------------------------
case("where", "tensors", lambda c, a, b: torch.where(c, a, b), coin(2, 3, 4), r(2, 3, 4), r(3, 4))
case("where", "scalar-other", lambda x: torch.where(x > 0, x, 0.0), r(3, 6))
case("where", "scalar-self", lambda x: torch.where(x > 0, -1.0, x), r(3, 6))
case("where", "int-values", lambda c, i: torch.where(c, i, -i), coin(3, 4), ints(9, 3, 4))
case("where", "masked_fill-scalar", lambda x, m: x.masked_fill(m, -1e4), r(2, 4, 6), coin(2, 1, 6))
case("where", "masked_fill-neg-inf-softmax",
     lambda x, m: torch.softmax(x.masked_fill(m == 0, float("-inf")), dim=-1), r(2, 3, 5),
     torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 1, 0, 1]]))
case("where", "masked_fill-0d-tensor", lambda x, m: x.masked_fill(m, torch.tensor(2.5)), r(3, 4), coin(3, 4))
case("where", "extended-attention-mask",
     lambda s, m: s + (1.0 - m[:, None, None, :].to(s.dtype)) * torch.finfo(s.dtype).min, r(2, 2, 4, 4),
     torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]))

# --- max / min / argmax / argmin ---------------------------------------------------------------------------
case("select", "max-dim", lambda x: x.max(dim=1), ties(3, 5, 4))
case("select", "min-dim-keepdim", lambda x: torch.min(x, dim=-1, keepdim=True), ties(3, 5, 4))
case("select", "max-all", lambda x: x.max(), r(4, 6))
case("select", "min-all-int", lambda x: x.min(), ints(50, 4, 6, low=-50))
case("select", "amax-dims", lambda x: x.amax(dim=(0, 2)), r(3, 4, 5))
case("select", "amin-keepdim", lambda x: torch.amin(x, dim=1, keepdim=True), r(3, 4, 5))
case("select", "argmax-all", lambda x: x.argmax(), ties(4, 6))
case("select", "argmax-dim", lambda x: torch.argmax(x, dim=1), ties(3, 7, 2))
case("select", "argmin-dim-keepdim", lambda x: x.argmin(dim=-1, keepdim=True), ties(3, 4, 6))
case("select", "argmin-all-keepdim", lambda x: torch.argmin(x, keepdim=True), r(3, 4))
case("select", "argmax-int", lambda x: x.argmax(dim=0), ints(4, 5, 3))
case("select", "max-nan", lambda x: (x.max(dim=1), x.amin(dim=1), x.argmax(dim=1), x.argmin(dim=1)),
     torch.tensor([[1.0, float("nan"), 3.0], [2.0, 0.5, 2.0]]))

# --- dtype conversions, integer arithmetic, bool sums ------------------------------------------------------
case("convert", "int-to-float", lambda i: i.to(torch.float32) * 0.5, ints(9, 3, 4))
case("convert", "float-to-int", lambda x: (x * 4).long(), r(3, 4))
case("convert", "bool-to-float", lambda m: m.float() + 1, coin(3, 4))
case("convert", "float-to-bool", lambda x, y: x.bool() | ~y.bool(), ties(3, 4), r(3, 4))
case("convert", "int-to-int32", lambda i: i.int() + 1, ints(100, 5))
case("convert", "sum-of-bool", lambda x: (x > 0).sum(dim=1), r(3, 7))
case("convert", "int-arithmetic", lambda i, j: (i + j * 3 - 1, i * j), ints(9, 3, 4), ints(9, 4))
case("convert", "arange-plus-ids", lambda i: i + torch.arange(i.shape[-1]), ints(9, 2, 5))

# --- torch.gather, cumsum, advanced indexing, attention masks: what transformers' models use --------------
case("gather_elements", "dim1", lambda x, i: torch.gather(x, 1, i), r(3, 5), ints(5, 3, 4))
case("gather_elements", "dim0-smaller-index", lambda x, i: torch.gather(x, 0, i) * 2, r(6, 4), ints(6, 2, 3))
case("gather_elements", "last-dim-3d-computed", lambda x, i: torch.gather(torch.tanh(x), -1, i), r(2, 3, 4),
     ints(4, 2, 3, 7))
case("gather_elements", "token-type-ids", lambda t, p: torch.gather(t.expand(p.shape[0], -1), 1, p),  # BERT's
     ints(2, 1, 8), ints(8, 3, 5))
case("cumsum", "last-dim", lambda x: torch.cumsum(x, -1), r(2, 3, 9))
case("cumsum", "middle-dim", lambda x: x.cumsum(1) + 1, r(2, 5, 3))
case("cumsum", "position-ids-int32",  # RoBERTa's create_position_ids_from_input_ids
     lambda ids: (torch.cumsum(ids.ne(1).int(), dim=1).type_as(ids) * ids.ne(1)) + 1, ints(5, 3, 7))
case("cumsum", "bool-gives-int64", lambda m: m.cumsum(0), coin(5, 3))


def _set_columns(x: torch.Tensor, i: torch.Tensor, v: Any) -> torch.Tensor:
    y = x.clone()
    y[:, i] = v  # aten.index_put with (None, i)
    return y


def _kv_update(keys: torch.Tensor, new: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
    """transformers' StaticLayer.update: the new positions written at the run-time length."""
    return keys.index_copy(2, torch.arange(new.shape[2]) + length, new)


case("scatter", "index_copy-dim1", lambda x, i, s: x.index_copy(1, i, s), r(2, 5, 3), torch.randperm(5)[:3],
     r(2, 3, 3))
case("scatter", "setitem-negative-positions", _set_columns, r(3, 6, 2), torch.tensor([-1, 2, -6]), r(3, 3, 2))
case("scatter", "setitem-broadcast-value", lambda x, i: _set_columns(x, i, 0.5) * 2, r(4, 5), torch.tensor([4, 0]))
case("scatter", "index_put-dim0-computed", lambda x, i, v: torch.tanh(x).index_put((i,), v), r(6, 4),
     torch.tensor([5, 1, 3]), r(3, 4))
case("scatter", "kv-cache-update", _kv_update, r(1, 2, 8, 4), r(1, 2, 1, 4), torch.tensor(3))
case("index", "arange-grid-mask",  # transformers' padding mask: mask[batch_idx, kv_idx]
     lambda m: m[torch.arange(m.shape[0])[:, None, None, None], torch.arange(m.shape[1])[None, None, None, :]],
     coin(3, 6))
case("index", "one-runtime-negative", lambda x, i: x[:, i], r(3, 6, 2), ints(6, 4, low=-6))
case("index", "arange-and-runtime", lambda h, ids: h[torch.arange(h.shape[0]), ids.argmax(-1)],  # CLIP's pooling
     r(3, 5, 4), ints(9, 3, 5))
case("index", "two-runtime-negative", lambda x, i, j: x[i, j] + 1, r(4, 5, 3), ints(4, 2, 3, low=-4),
     ints(5, 3, low=-5))
case("attention", "runtime-bool-mask",
     lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=(m > 0)[:, None, None, :]),
     r(2, 2, 4, 8), r(2, 2, 6, 8), r(2, 2, 6, 8), torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]]))
case("attention", "runtime-bool-mask-hidden-row",  # a query that sees nothing: zeros, as PyTorch gives
     lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m), r(1, 2, 3, 4), r(1, 2, 5, 4),
     r(1, 2, 5, 4), torch.tensor([[True] * 5, [False] * 5, [True, False, True, False, True]]))
case("attention", "runtime-additive-mask",
     lambda q, k, v, m: F.scaled_dot_product_attention(q, k, v, attn_mask=m * -3.0), r(2, 2, 4, 8), r(2, 2, 4, 8),
     r(2, 2, 4, 8), r(2, 1, 4, 4))
case("attention", "grouped-query-causal",
     lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True), r(2, 4, 5, 8),
     r(2, 2, 5, 8), r(2, 2, 5, 8))

BY_ID = CASES.by_id()
FAMILIES = CASES.families()


def _close(got: Any, want: torch.Tensor, what: str) -> None:
    got, w = checked_arrays(got, want, what)
    if w.dtype.kind in "biu":
        np.testing.assert_array_equal(got, w, err_msg=what)
        return
    finite = np.abs(w[np.isfinite(w)])
    scale = float(finite.max()) if finite.size else 1.0
    np.testing.assert_allclose(got, w, rtol=1e-4, atol=1e-5 * max(1.0, scale), err_msg=what)


@pytest.mark.parametrize("case_id", list(BY_ID))
def test_reference(case_id: str) -> None:
    """The imported graph, run with sol's NumPy references, computes what PyTorch computes."""
    check_reference(BY_ID[case_id], _close)


@pytest.mark.parametrize("family", FAMILIES)
def test_device(device: str, family: str) -> None:
    """All cases of one family compiled together on ``device``, against PyTorch eager."""
    check_device([c for c in CASES if c.family == family], device, _close)


@pytest.mark.parametrize("bad_id", [10, -1])
def test_embedding_index_out_of_range(device: str, bad_id: int) -> None:
    """A token id outside the table (negative ids included: PyTorch does not count them from the
    end) is an IndexError naming the op, as in PyTorch; never a read outside the table."""
    model = nn.Embedding(10, 4).eval()
    ids = ints(10, 2, 3)
    fast = sol.optimize(model, ids, device=device, fallback=False)
    torch.testing.assert_close(fast(ids), model(ids).detach())
    bad = ids.clone()
    bad[1, 2] = bad_id
    with pytest.raises(IndexError):
        model(bad)
    with pytest.raises(IndexError, match=f"index {bad_id} is out of range for axis 0 of size 10"):
        fast(bad)
    torch.testing.assert_close(fast(ids), model(ids).detach())  # the network still works afterwards


def test_torch_gather_index_out_of_range(device: str) -> None:
    """torch.gather with an index outside the axis (a negative one too) is an error naming the op
    (an IndexError; eager raises a RuntimeError), never a read of a neighbouring element."""
    model = Fn(lambda x, i: torch.gather(x, 1, i))
    x, i = r(3, 5), ints(5, 3, 2)
    fast = sol.optimize(model, x, i, device=device, fallback=False)
    torch.testing.assert_close(fast(x, i), model(x, i))
    for bad_value in (5, -1):
        bad = i.clone()
        bad[2, 1] = bad_value
        with pytest.raises(RuntimeError):
            model(x, bad)
        with pytest.raises(IndexError, match=f"gather_elements.*index {bad_value} is out of range for axis 1 of "
                                             f"size 5"):
            fast(x, bad)
    torch.testing.assert_close(fast(x, i), model(x, i))


def test_advanced_index_out_of_range_in_one_dim(device: str) -> None:
    """``x[i, j]`` with j out of range while i * 5 + j is inside x: an error, not x's next row."""
    model = Fn(lambda x, i, j: x[i, j])
    x, i, j = r(4, 5), ints(4, 3), ints(5, 3)
    fast = sol.optimize(model, x, i, j, device=device, fallback=False)
    torch.testing.assert_close(fast(x, i, j), model(x, i, j))
    bad = torch.tensor([0, 5, 1])
    with pytest.raises(IndexError):
        model(x, i, bad)
    with pytest.raises(IndexError, match="out of range"):
        fast(x, i, bad)


def test_index_put_position_out_of_range(device: str) -> None:
    """``y[:, i] = v`` with a position outside the axis is an IndexError naming the op, as in
    PyTorch; nothing is written outside the tensor, and the network still works afterwards."""
    model = Fn(lambda x, i, v: _set_columns(x, i, v))
    x, i, v = r(3, 5), torch.tensor([1, 4]), r(3, 2)
    fast = sol.optimize(model, x, i, v, device=device, fallback=False)
    torch.testing.assert_close(fast(x, i, v), model(x, i, v))
    for bad_value in (5, -6):
        bad = torch.tensor([1, bad_value])
        with pytest.raises(IndexError):
            model(x, bad, v)
        with pytest.raises(IndexError, match=f"scatter.*index {bad_value} is out of range for axis 1 of size 5"):
            fast(x, bad, v)
    torch.testing.assert_close(fast(x, i, v), model(x, i, v))
