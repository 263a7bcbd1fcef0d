"""Ops on memory layout and run-time positions in static shapes (issue #22 item 3): as_strided,
as_strided_copy, as_strided_scatter, resize_ / resize_as_ (the layout the trace records: a gather or
scatter of constant positions), nonzero_static and _segment_reduce (lengths or offsets given at run
time), against eager with overlapping windows, zero strides, transposed inputs and intermediates,
empty results, empty segments, NaN and infinities.

``test_reference`` imports each case and runs sol's NumPy references; ``test_device`` compiles each
family as one model per device. What cannot be exact is refused by name: memory outside the tensor's
own elements (another view's, or what resize_ leaves uninitialized), overlapping as_strided_scatter
writes (eager raises), an explicit storage offset while a graph input is a partial view, and training
through segment max/min/prod (no gradient in sol) or as_strided_scatter (PyTorch's own gradient for its
input fails gradcheck). Gradients of as_strided and segment sum/mean are checked against torch.autograd.
"""

from __future__ import annotations

import copy
import math
from typing import Any

import pytest
import torch
from test_special_values import _close, special
from torch import nn

import sol
from sol.errors import UnsupportedOpError

from op_cases import Cases, Fn, case_tests

nan, inf = math.nan, math.inf
torch.manual_seed(0)

CASES = Cases()
case = CASES.add

X = special(8, 8)  # NaN, +inf, -inf, -0.0 among ordinary values

# --- as_strided, as_strided_copy: reads at constant storage positions ------------------------------
case("layout", "windows-and-offsets", lambda x: (torch.as_strided(x, (7, 4), (8, 1)),  # overlapping rows
                                                 torch.as_strided(x, (3, 3), (9, 2), 5),  # explicit offset
                                                 torch.as_strided(x, (2, 3), (0, 7), 1),  # a zero stride
                                                 torch.as_strided(x, (4, 2), (1, 8)),  # a transposed read
                                                 torch.as_strided(x, (), (), 63),  # 0-d
                                                 torch.as_strided(x, (0, 3), (1, 1)),  # empty
                                                 torch.ops.aten.as_strided_copy(x, (5,), (3,), 2)), X)
case("layout", "intermediates", lambda x: (torch.as_strided((x * 2).t(), (3, 4), (1, 3), 2),  # a transposed result
                                           torch.as_strided(x.t() + 1, (2, 5), (4, 1)),  # the sum keeps the layout
                                           torch.as_strided(x[2:], (3, 2), (2, 5)),  # a slice: its own offset
                                           torch.as_strided(x[:, 1:].exp(), (4,), (5,))), torch.randn(4, 6))

# --- as_strided_scatter: writes into the clone's own storage ----------------------------------------
case("layout", "as_strided_scatter", lambda x, s: (torch.as_strided_scatter(x, s, (3, 4), (8, 2)),
                                                   torch.as_strided_scatter(x, s.t(), (4, 3), (2, 8), 9),
                                                   torch.as_strided_scatter(x, s[0, 0], (), (), 63),
                                                   torch.as_strided_scatter(x, s[:0], (0, 4), (1, 1)),
                                                   torch.as_strided_scatter(x.t(), s, (3, 4), (1, 16))),
     X, special(4, 16, seed=1)[:3, :4].contiguous())

case("layout", "transposed-input", lambda x: (torch.as_strided(x, (4, 3), (1, 4)),  # x's storage order, as eager
                                              torch.as_strided(x, (6,), (3,), 1),
                                              torch.as_strided_scatter(x, torch.ones(2, 2), (2, 2), (5, 1))),
     torch.randn(5, 4).t())

# --- resize_, resize_as_: the same storage under a new shape ----------------------------------------
case("layout", "resize_", lambda x, y: (x.clone().resize_(5, 3), x.clone().resize_(24), x.clone().resize_(2, 0),
                                        x.t().clone().resize_(4, 5),  # the clone keeps the transposed layout
                                        x.clone().resize_as_(y), x.clone().resize_(x.shape)), torch.randn(4, 6),
     torch.randn(3, 2))

# --- nonzero_static --------------------------------------------------------------------------------
Z = torch.tensor([[0.0, -0.0, nan, 1.5], [0.0, inf, 0.0, -2.0], [-inf, 0.0, 0.0, 0.0]])
case("segments", "nonzero_static", lambda z, b, e: (torch.nonzero_static(z, size=8),  # more rows than nonzeros
                                                    torch.nonzero_static(z, size=3, fill_value=9),  # fewer
                                                    torch.nonzero_static(z.reshape(2, 3, 2), size=6),
                                                    torch.nonzero_static(b, size=4, fill_value=-5),
                                                    torch.nonzero_static(z[0, 0], size=2),  # 0-d
                                                    torch.nonzero_static(e, size=3),  # no elements
                                                    torch.nonzero_static(z, size=0)),
     Z, torch.tensor([False, True, True, False, True, True]), torch.zeros(2, 0))

BIG = torch.randn(37, 29)
BIG[BIG.abs() < 0.7] = 0.0  # the running count crosses many vector blocks
BIG_COUNT = int((BIG != 0).sum())
case("segments", "nonzero_static-long", lambda z: (torch.nonzero_static(z, size=BIG_COUNT + 5),
                                                   torch.nonzero_static(z, size=BIG_COUNT // 2)), BIG)

# --- _segment_reduce -------------------------------------------------------------------------------
D = torch.tensor([1.0, nan, 3.0, -2.0, 5.0, 4.0, -inf, 0.5, 2.0])
LENGTHS = torch.tensor([0, 2, 1, 3, 0, 3])  # empty segments, one with a NaN, one with -inf
OFFSETS = torch.tensor([1, 1, 4, 6, 9])  # element 0 in no segment (offsets start at 1), an empty first one
for _r in ("sum", "mean", "max", "min", "prod"):
    case("segments", _r, lambda d, lengths, offsets, r=_r: (torch._segment_reduce(d, r, lengths=lengths),
                                                            torch._segment_reduce(d, r, lengths=lengths, initial=2.0),
                                                            torch._segment_reduce(d, r, offsets=offsets),
                                                            torch._segment_reduce(d, r, offsets=offsets, initial=-1.0)),
         D, LENGTHS, OFFSETS)
case("segments", "rows-and-axis-1", lambda d, lengths, lengths2: (
    torch._segment_reduce(d, "sum", lengths=lengths),  # rows of a 2-D input (axis 0)
    torch._segment_reduce(d, "mean", lengths=lengths),
    torch._segment_reduce(d.t().contiguous(), "max", lengths=lengths2, axis=1),  # per-row segments
    torch._segment_reduce(d.t().contiguous(), "mean", lengths=lengths2, axis=1, initial=1.0)),
    torch.randn(6, 3), torch.tensor([2, 0, 4]), torch.tensor([[1, 5, 0], [3, 3, 0], [0, 0, 6]]))



test_reference, test_device = case_tests(CASES, _close)


# --- refusals -------------------------------------------------------------------------------------


@pytest.mark.parametrize("fn, inputs, match", [
    (lambda x: torch.as_strided(x, (3,), (5,), 0), (torch.randn(8),), "as_strided.*outside the tensor"),
    (lambda x: torch.as_strided(x[2:], (2,), (1,), 0), (torch.randn(8),), "as_strided.*outside the tensor"),
    (lambda x: torch.as_strided(x, (2, 2), (1, 2), 0), (torch.randn(15)[5:],), "as_strided.*partial|larger storage"),
    (lambda x, s: torch.as_strided_scatter(x, s, (2, 2), (0, 1)), (torch.randn(6), torch.randn(2, 2)),
     "as_strided_scatter.*overlapping"),
    (lambda x: x.clone().resize_(4, 4), (torch.randn(3, 4),), "resize.*outside the tensor"),
], ids=["beyond-the-end", "another-view", "partial-view-input", "overlapping-scatter", "resize-grows"])
def test_what_cannot_be_exact_is_refused(fn: Any, inputs: tuple[torch.Tensor, ...], match: str) -> None:
    """Memory the graph does not own, overlapping writes: an UnsupportedOpError naming the op,
    never a guess (with fallback, PyTorch runs them)."""
    with pytest.raises(UnsupportedOpError, match=match):
        sol.optimize(Fn(fn).eval(), *inputs, fallback=False)


def test_training_through_as_strided_scatter_is_refused() -> None:
    """PyTorch's gradient of as_strided_scatter for ``self`` fails its own gradcheck (it flows into
    the overwritten positions): sol refuses training through it rather than differ from eager."""

    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.x = nn.Parameter(torch.randn(2, 3))

        def forward(self, s: torch.Tensor) -> torch.Tensor:
            return torch.as_strided_scatter(self.x, s, (2,), (2,), 1)

    s = torch.randn(2)
    with pytest.raises(UnsupportedOpError, match="as_strided_scatter.*training"):
        sol.optimize(Model().train(), s, fallback=False)
    fast = sol.optimize(Model().eval(), s, fallback=False)  # inference compiles
    torch.testing.assert_close(fast(s), fast.model(s))


@pytest.mark.parametrize("reduce", ["max", "min", "prod"])
def test_training_through_segment_max_min_prod_is_refused(reduce: str) -> None:
    class Model(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.d = nn.Parameter(torch.randn(5))

        def forward(self, lengths: torch.Tensor) -> torch.Tensor:
            return torch._segment_reduce(self.d, reduce, lengths=lengths)

    lengths = torch.tensor([2, 0, 3])
    with pytest.raises(UnsupportedOpError, match="segment_reduce"):
        sol.optimize(Model().train(), lengths, fallback=False)


# --- gradients ----------------------------------------------------------------------------------------


class Layouts(nn.Module):
    """The differentiable ops of this file, their tensors as parameters."""

    def __init__(self) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.x = nn.Parameter(torch.randn(4, 6, generator=g))
        self.d = nn.Parameter(torch.randn(7, 2, generator=g))

    def forward(self, lengths: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x = self.x
        return (torch.as_strided(x, (3, 4), (6, 1), 1),  # overlapping: gradients add up
                torch.as_strided(x.t() * 2, (5, 2), (1, 4)),
                torch._segment_reduce(self.d, "sum", lengths=lengths, initial=0.5),
                torch._segment_reduce(self.d, "mean", lengths=lengths))


def test_gradients_match_autograd(device: str) -> None:
    model = Layouts().train()
    eager = copy.deepcopy(model)
    lengths = torch.tensor([3, 0, 4])
    fast = sol.optimize(model, lengths, device=device, fallback=False)
    probe = torch.Generator().manual_seed(9)
    outs_fast, outs_eager = fast(lengths), eager(lengths)
    weights = [torch.randn(o.shape, generator=probe) for o in outs_eager]
    sum((o * w).sum() for o, w in zip(outs_fast, weights)).backward()
    sum((o * w).sum() for o, w in zip(outs_eager, weights)).backward()
    for k, (a, b) in enumerate(zip(outs_fast, outs_eager)):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, equal_nan=True,  # the empty segment's mean
                                   msg=lambda m, k=k: f"output {k}: {m}")
    for (name, p), (_, q) in zip(model.named_parameters(), eager.named_parameters(), strict=True):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-5, msg=lambda m, name=name: f"{name}.grad: {m}")


class Windows(nn.Module):
    """Overlapping windows read through as_strided: the result depends on x's memory layout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.as_strided(x, (3, 4), (2, 1)) * 2


def test_a_call_with_another_memory_layout_runs_in_pytorch_not_the_compiled_layout() -> None:
    """The program reads the example's strides; a tensor of the same shape laid out otherwise (a
    transposed one) would read other elements in eager: that call runs in PyTorch, with one
    warning, and the compiled program serves calls laid out as the example again."""
    import warnings

    from sol.plugin_api import SolFallbackWarning

    model = Windows().eval()
    x = torch.randn(4, 4)
    fast = sol.optimize(model, x, device="x86", fallback=False)
    torch.testing.assert_close(fast(x), model(x))
    other = torch.randn(4, 4).t()  # same shape and dtype, other strides
    assert not torch.equal(model(other), model(other.contiguous()))  # eager reads the layout
    with pytest.warns(SolFallbackWarning, match="lie in memory otherwise"):
        torch.testing.assert_close(fast(other), model(other))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SolFallbackWarning)
        torch.testing.assert_close(fast(x + 1), model(x + 1))
    assert len(fast.variants) == 1
