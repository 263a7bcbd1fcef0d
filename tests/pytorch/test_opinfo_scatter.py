"""Writes at run-time positions and their lookups (issue #22 item 3, the scatter family): torch.scatter,
scatter_add and scatter_reduce (core's scatter_elements), index_add and index_reduce, index_put with
accumulate=True, several index tensors or a boolean mask, put, take, take_along_dim, masked_scatter,
embedding_bag and bilinear, against eager with repeated positions, negative indices, empty indices and
special values (NaN, infinities, -0.0: compared NaN-aware as test_special_values does).

``test_reference`` imports each case and runs sol's NumPy references; ``test_device`` compiles each
family as one model per device. Gradients (scatter, scatter_add, scatter_reduce sum, index_add, take,
put, index_put, masked_scatter, embedding_bag, bilinear) are checked against torch.autograd; prod,
amax and amin have no gradient in sol and a training import refuses them by name. A replacing scatter
with repeated positions is undefined in PyTorch; sol keeps the last update in the index's row-major
order (PyTorch's CPU kernel does the same), checked against that rule.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from test_special_values import _close, special
from torch import nn

import sol
from sol.errors import UnsupportedOpError

from op_cases import Cases, Fn, case_tests

nan, inf = math.nan, math.inf
torch.manual_seed(0)

CASES = Cases()
case = CASES.add


def ints(low: int, high: int, *shape: int) -> torch.Tensor:
    return torch.randint(low, high, shape)


X = special(8, 8)  # NaN, +inf, -inf, -0.0 among ordinary values
SRC = special(8, 8, seed=1)[:6]
DUP = ints(0, 8, 6, 8)  # repeated positions along dim 0 (6 updates into 8 rows per column)
ZEROS = torch.tensor([[0.0, -0.0, 0.0, -0.0], [1.0, 1.0, -1.0, -1.0]])

# --- torch.scatter / scatter_add / scatter_reduce ---------------------------------------------------
case("scatter", "src-dim0-unique", lambda x, i, s: x.scatter(0, i, s), torch.randn(10, 5),
     torch.stack([torch.randperm(10)[:4] for _ in range(5)], 1), torch.randn(6, 5))
case("scatter", "src-last-dim-smaller-index", lambda x, i, s: torch.scatter(x, -1, i, s), torch.randn(3, 4, 7),
     torch.stack([torch.randperm(7)[:3] for _ in range(6)]).reshape(2, 3, 3), torch.randn(3, 4, 5))
case("scatter", "value-and-reduce", lambda x, i: (x.scatter(1, i, 2.5), x.scatter(1, i, -1.5, reduce="add"),
                                                  x.scatter(1, i, 3.0, reduce="multiply")), X, ints(0, 8, 8, 5))
case("scatter", "reduce-add-multiply", lambda x, i, s: (x.scatter(0, i, s, reduce="add"),
                                                         x.scatter(0, i, s, reduce="multiply")), X, DUP, SRC)
case("scatter", "scatter_add-repeated", lambda x, i, s: (torch.scatter_add(x, 0, i, s), x.scatter_add(1, i.T, s.T)),
     X, DUP, SRC)
for _r in ("sum", "prod", "mean", "amax", "amin"):
    case("scatter", f"reduce-{_r}", lambda x, i, s, r=_r: (x.scatter_reduce(0, i, s, r),
                                                           x.scatter_reduce(0, i, s, r, include_self=False)),
         X, DUP, SRC)
case("scatter", "amax-amin-signed-zeros", lambda x, i, s: (x.scatter_reduce(1, i, s, "amax"),
                                                            x.scatter_reduce(1, i, s, "amin"),
                                                            x.scatter_reduce(1, i, s, "amax", include_self=False)),
     ZEROS, torch.tensor([[0, 1, 2, 3, 0, 1], [3, 3, 2, 2, 1, 0]]), torch.tensor([[-0.0, 0.0, -0.0, 0.0, 0.0, -0.0],
                                                                                  [1.0, -1.0, 1.0, -1.0, nan, inf]]))
case("scatter", "integers", lambda x, i, s: (x.scatter_add(1, i, s), x.scatter_reduce(1, i, s, "prod"),
                                             x.scatter_reduce(1, i, s, "amin", include_self=False)),
     ints(-50, 50, 3, 6), ints(0, 6, 3, 9), ints(-4, 5, 3, 9))
case("scatter", "0-d-and-empty", lambda x, i, s, y, e: (x.scatter(0, i, s), x.scatter_add(0, i, s),
                                                         x.scatter_reduce(0, i, s, "mean"),
                                                         y.scatter_add(1, e, torch.ones(3, 0))),
     torch.tensor(1.5), torch.tensor(0), torch.tensor(-2.0), torch.randn(3, 4), torch.zeros(3, 0, dtype=torch.int64))

# --- along one axis: index_add, index_reduce, index_put -------------------------------------------
I1 = torch.tensor([3, 0, 3, 7, 1, 3])  # repeated positions
case("index", "index_add", lambda x, i, s: (x.index_add(0, i, s), x.index_add(0, i, s, alpha=-2.0),
                                            x.index_add(1, i, s.T), torch.index_add(x.T, -1, i, s.T, alpha=0.5)),
     X, I1, SRC)
for _r in ("prod", "mean", "amax", "amin"):
    case("index", f"index_reduce-{_r}", lambda x, i, s, r=_r: (x.index_reduce(0, i, s, r),
                                                               x.index_reduce(1, i, s.T, r, include_self=False)),
         X, I1, SRC)
case("index", "index_put-accumulate", lambda x, i, v: (x.index_put((i,), v, accumulate=True),
                                                       x.index_put((i - 8,), v[:, :1], accumulate=True),
                                                       x.index_put((torch.arange(8)[:6], i), v[:, 0], accumulate=True)),
     X, I1, SRC)
case("index", "index_put-two-indices", lambda x, i, j, v: (x.index_put((i, j), v),
                                                           x.index_put((i, j), v, accumulate=True),
                                                           x.index_put((i, j), torch.tensor(7.0), accumulate=True)),
     torch.randn(5, 6), torch.tensor([[0], [4], [-1]]), torch.tensor([[1, -2, 3, 0]]), torch.randn(3, 4))
case("index", "index_put-middle-dims", lambda x, i, j, v: torch.ops.aten.index_put(x, [None, i, j], v, True),
     torch.randn(2, 4, 5, 3), torch.tensor([1, 1, 3, -4]), torch.tensor([0, 0, 4, 2]), torch.randn(2, 4, 3))
case("index", "index_put-mask", lambda x, m, v: (x.index_put((m,), v), x.index_put((m,), torch.tensor(-3.0)),
                                                 x.index_put((m,), v, accumulate=True),
                                                 x.index_put((m[:, :1].squeeze(1),), v)),
     X, torch.rand(8, 8) > 0.5, torch.tensor(2.5))
case("index", "index_put-row-mask", lambda x, m, v: (x.index_put((m,), v),
                                                    torch.ops.aten.index_put(x, [None, m], v[0, :1])),
     torch.randn(8, 8), torch.tensor([True, False, True, True, False, False, True, False]), torch.randn(1, 8))
case("index", "masked-index-put-accumulate",
     lambda x, m, i, j, v: torch.ops.aten._unsafe_masked_index_put_accumulate(x, m, [i, j], v),
     torch.randn(5, 5), torch.rand(10, 10) > 0.3, ints(0, 7, 10, 1), ints(-6, 9, 1, 10), torch.randn(10, 10))

# --- flat positions: put, take, take_along_dim; masked_scatter ------------------------------------
case("flat", "put", lambda x, i, s: (x.put(i, s, accumulate=True), x.put(i[:3], s[:3]),
                                     x.put(i - 64, s, accumulate=True)), X, torch.tensor([63, 0, 17, 0, 63, 5]),
     torch.randn(6))
case("flat", "take", lambda x, i: (torch.take(x, i), torch.take(x[:2], i[:, :1] - 16)), X, ints(0, 16, 3, 4))
case("flat", "take_along_dim", lambda x, i, j: (torch.take_along_dim(x, i, 1), torch.take_along_dim(x, j, 0),
                                                torch.take_along_dim(x, i.clamp(0, 63)),
                                                torch.take_along_dim(x, i[:1], 1)),
     X, ints(-20, 20, 8, 5), ints(-9, 9, 3, 1))
case("flat", "take_along_dim-argsort", lambda x: torch.take_along_dim(x, torch.argsort(x, dim=1, stable=True), 1),
     torch.randn(4, 9))
case("flat", "masked_scatter", lambda x, m, s: (x.masked_scatter(m, s), x.masked_scatter(m[0], s),
                                                x.masked_scatter(m & False, s), x.masked_scatter(m | True, s)),
     X, torch.rand(8, 8) > 0.5, special(16, 8, seed=2))

# --- embedding_bag, bilinear -------------------------------------------------------------------------
W = torch.randn(10, 4)
IDS = torch.tensor([4, 1, 9, 1, 0, 4, 4, 7, 2])
OFFS = torch.tensor([0, 0, 3, 3, 8])  # empty bags, a last bag of one
for _mode in ("sum", "mean", "max"):
    case("bags", f"embedding_bag-{_mode}",
         lambda w, i, o, m=_mode: (F.embedding_bag(i, w, o, mode=m), F.embedding_bag(i, w, o, mode=m, padding_idx=4),
                                   F.embedding_bag(i, w, o, mode=m, include_last_offset=True, padding_idx=-1),
                                   F.embedding_bag(i.reshape(3, 3), w, mode=m, padding_idx=1)), W, IDS, OFFS)
case("bags", "embedding_bag-weights", lambda w, i, o, p: (F.embedding_bag(i, w, o, per_sample_weights=p, mode="sum"),
                                                          F.embedding_bag(i, w, o, per_sample_weights=p, padding_idx=4,
                                                                          mode="sum")), W, IDS, OFFS, torch.randn(9))
case("bags", "bilinear", lambda a, b, w, bias: (F.bilinear(a, b, w, bias), F.bilinear(a[0], b[0], w),
                                                F.bilinear(a[:, :0], b[:, :0], w, bias)),
     torch.randn(2, 5, 3), torch.randn(2, 5, 4), torch.randn(6, 3, 4), torch.randn(6))



test_reference, test_device = case_tests(CASES, _close)


# --- repeated positions in a replacing scatter ----------------------------------------------------


def test_replacing_scatter_keeps_the_last_of_repeated_positions(device: str) -> None:
    """PyTorch leaves a replacing scatter with repeated positions undefined; sol writes the
    updates in the index's row-major order, so the last one stays (what PyTorch's CPU kernel
    gives too, here and in put and index_put)."""
    x, i, s = torch.zeros(4, 3), torch.tensor([[1, 2, 1], [1, 0, 1], [3, 2, 1]]), torch.arange(1.0, 10.0).reshape(3, 3)
    flat = torch.tensor([5, 2, 5, 5])
    model = Fn(lambda x, i, s, f: (x.scatter(0, i, s), x.put(f, s[0, :1].repeat(4) + torch.arange(4.0)),
                                   x.index_put((f - 4,), s[:1].repeat(4, 1) + torch.arange(4.0)[:, None])))
    fast = sol.optimize(model, x, i, s, flat, device=device, fallback=False)
    got = fast(x, i, s, flat)
    want = x.clone()
    for r in range(3):  # the rule, written out: every update in row-major order, the last one stays
        for c in range(3):
            want[i[r, c], c] = s[r, c]
    torch.testing.assert_close(got[0], want)
    assert got[1].flatten()[5].item() == 4.0 and got[1].flatten()[2].item() == 2.0  # 1 + 3: the last
    torch.testing.assert_close(got[2][1], torch.tensor([4.0, 5.0, 6.0]))  # row 1 (5 - 4) written 3 times: the last
    for g, e in zip(got, model(x, i, s, flat)):  # eager's CPU kernel agrees
        torch.testing.assert_close(g, e)


# --- run-time index errors --------------------------------------------------------------------------


def test_index_out_of_range_raises_and_the_network_still_works(device: str) -> None:
    """An index outside the axis is an IndexError naming the op, as eager raises (a RuntimeError or
    IndexError there); nothing is written outside the tensor, and the next call works."""
    model = Fn(lambda x, i, f: (x.scatter_add(1, i, torch.ones(i.shape)), x.put(f, torch.ones(f.shape),
                                                                                 accumulate=True)))
    x, i, f = torch.randn(3, 5), torch.tensor([[0, 4], [1, 1], [2, 3]]), torch.tensor([0, -15, 14])
    fast = sol.optimize(model, x, i, f, device=device, fallback=False)
    for g, w in zip(fast(x, i, f), model(x, i, f)):
        torch.testing.assert_close(g, w)
    for bad_i, bad_f in ((torch.tensor([[0, 5], [1, 1], [2, 3]]), f), (torch.tensor([[0, -1], [1, 1], [2, 3]]), f),
                         (i, torch.tensor([0, 15, 1])), (i, torch.tensor([0, -16, 1]))):
        with pytest.raises((IndexError, RuntimeError)):
            model(x, bad_i, bad_f)
        with pytest.raises(IndexError, match="scatter.*out of range"):
            fast(x, bad_i, bad_f)
    for g, w in zip(fast(x, i, f), model(x, i, f)):
        torch.testing.assert_close(g, w)


# --- gradients ----------------------------------------------------------------------------------------


class Writes(nn.Module):
    """Every differentiable write of this family, its values and updates as parameters."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.x = nn.Parameter(torch.randn(6, 5, generator=g))
        self.src = nn.Parameter(torch.randn(4, 5, generator=g))
        self.table = nn.Parameter(torch.randn(7, 3, generator=g))
        self.w = nn.Parameter(torch.randn(2, 3, 4, generator=g))
        self.b = nn.Parameter(torch.randn(2, generator=g))

    def forward(self, i2: torch.Tensor, i1: torch.Tensor, flat: torch.Tensor, mask: torch.Tensor,
                ids: torch.Tensor, offs: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, s = self.x, self.src
        return (x.scatter(0, i2[:3], s[:3]), x.scatter_add(0, i2, s),
                x.scatter_reduce(0, i2, s, "sum", include_self=False),
                x.scatter_reduce(0, i2, s, "mean"), x.index_add(0, i1, s, alpha=1.5), torch.take(x, flat),
                x.put(flat[:3], s[0, :3]), x.put(flat, s[:2].flatten()[:flat.numel()], accumulate=True),
                x.index_put((i1,), s, accumulate=True), x.masked_scatter(mask, s),
                F.embedding_bag(ids, self.table, offs, mode="mean"), F.embedding_bag(ids, self.table, offs),
                torch.take_along_dim(x, i2[:, :1], 0), F.bilinear(u[:, :3], u[:, 3:], self.w, self.b))


def test_gradients_match_autograd(device: str) -> None:
    """Outputs and parameter gradients of a training step against eager's autograd, repeated
    positions included (PyTorch's gradient of a replacing scatter reads every update's position)."""
    model = Writes().train()
    eager = copy.deepcopy(model)
    inputs = (torch.tensor([[0, 1, 2, 3, 4], [5, 1, 2, 0, 4], [2, 2, 2, 2, 2], [1, 0, 5, 3, 3]]),
              torch.tensor([5, 0, 5, 2]), torch.tensor([29, 0, -7, 0, 13]), torch.rand(6, 5) > 0.6,
              torch.tensor([1, 6, 6, 0, 2]), torch.tensor([0, 2, 2]), torch.randn(3, 7))
    fast = sol.optimize(model, *inputs, device=device, fallback=False)
    assert fast.training
    probe = torch.Generator().manual_seed(9)
    outs_fast, outs_eager = fast(*inputs), eager(*inputs)
    weights = [torch.randn(o.shape, generator=probe) for o in outs_eager]
    sum((o * w).sum() for o, w in zip(outs_fast, weights)).backward()
    sum((o * w).sum() for o, w in zip(outs_eager, weights)).backward()
    for k, (a, b) in enumerate(zip(outs_fast, outs_eager)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m, k=k: f"output {k}: {m}")
    for (name, p), (_, q) in zip(model.named_parameters(), eager.named_parameters(), strict=True):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}.grad: {m}")


@pytest.mark.parametrize("fn", [lambda x, i, s: x.scatter_reduce(0, i, s, "prod"),
                                lambda x, i, s: x.scatter_reduce(0, i, s, "amax", include_self=False),
                                lambda x, i, s: x.index_reduce(0, i[:, 0], s, "amin"),
                                lambda x, i, s: x.scatter(0, i, s, reduce="multiply"),
                                lambda x, i, s: F.embedding_bag(i[:, 0], x, torch.tensor([0, 1]), mode="max")],
                         ids=["scatter_reduce-prod", "scatter_reduce-amax", "index_reduce-amin", "scatter-multiply",
                              "embedding_bag-max"])
def test_training_through_prod_amax_amin_is_refused(fn: Any) -> None:
    """sol has no gradient for the multiplying and selecting reductions: a training import
    refuses them with an UnsupportedOpError naming the op, never a wrong gradient."""

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.x = nn.Parameter(torch.randn(5, 3))

        def forward(self, i: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
            return fn(self.x, i, s)

    i, s = torch.tensor([[0, 1, 2], [4, 1, 0]]), torch.randn(2, 3)
    with pytest.raises(UnsupportedOpError, match="scatter|index_reduce|embedding_bag"):
        sol.optimize(Model().train(), i, s, fallback=False)
    fast = sol.optimize(Model().eval(), i, s, fallback=False)  # inference compiles
    assert fast(i, s).shape == Model()(i, s).shape
