"""The sort family (issue #22 item 3): sort, argsort, msort, topk, kthvalue, median, nanmedian,
quantile, nanquantile, searchsorted, bucketize, isin, cummax, cummin, cumprod, logcumsumexp and
linalg.vander, composed by the PyTorch frontend of core's argsort, searchsorted and scan ops.

``test_reference`` runs each case's imported graph with sol's NumPy references, ``test_device``
compiles each family as one model per device; both against eager, NaN-aware (NaN exactly where
eager has NaN, infinities with their sign, the sign of zeros). Where PyTorch leaves the order of
equal values unspecified (its unstable sort, topk, kthvalue, median), the special-value cases
check the values and that the returned indices name them (``torch.gather(x, dim, indices)``);
elsewhere (unique values, ``stable=True``) the indices are compared exactly. ``test_gradients``
trains through the differentiable ones against torch.autograd (cumprod with zeros included).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import pytest
import torch
from test_special_values import _close, special

import sol
from sol.errors import UnsupportedOpError

from op_cases import Cases, case_tests

nan, inf = math.nan, math.inf
torch.manual_seed(0)

S = special(4, 16)  # NaN, infinities, -0.0 and repeated values along both dims
S3 = special(2, 4, 8, seed=3)
U = torch.randn(3, 6, 10)  # unique values: every index is defined
TIES = torch.randint(0, 4, (3, 20)).float()  # many equal values (the stable order is defined)
ZEROS = torch.tensor([[1.5, 0.0, 2.0, 0.0, 3.0], [0.0, 1.0, -2.0, 3.0, 0.5], [1.0, 2.0, -0.5, 4.0, 0.0],
                      [0.5, -1.5, 2.0, 1.25, -1.0]])

CASES = Cases()
case = CASES.add


def named(x: torch.Tensor, dim: int, res: Any, keepdim: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(values, x's elements at the returned indices): equal wherever the indices name the values
    (``keepdim``: the indices keep ``dim``, as topk's and keepdim=True results do). Plus 0.0: -0.0
    and 0.0 are equal values, either may be selected (eager's choice among ties is its own)."""
    idx = res.indices if keepdim or x.dim() == 0 else res.indices.unsqueeze(dim)
    got = torch.gather(x, dim, idx)
    return res.values + 0.0, (got if keepdim else got.squeeze(dim)) + 0.0


# --- sort ---------------------------------------------------------------------------------------------
case("sort", "stable-special", lambda x: (torch.sort(x, stable=True),
                                          torch.sort(x, dim=0, descending=True, stable=True),
                                          torch.argsort(x, dim=1, descending=True, stable=True),
                                          torch.sort(x, dim=-1, stable=True, descending=True)), S)
case("sort", "stable-rank3", lambda x: (torch.sort(x, dim=1, stable=True),
                                        torch.sort(x, dim=-3, descending=True, stable=True), torch.msort(x)), S3)
case("sort", "ties", lambda x: (torch.sort(x, stable=True), torch.sort(x, dim=0, descending=True, stable=True),
                                torch.sort(x).values, torch.argsort(x[:, :12], stable=True)), TIES)
case("sort", "unique", lambda x: (torch.sort(x), torch.sort(x, 1, descending=True), torch.argsort(x, 0),
                                  torch.msort(x), torch.sort(x.flatten())), U)
case("sort", "integers", lambda x: (torch.sort(x, stable=True), torch.argsort(x, dim=0, descending=True, stable=True),
                                    torch.sort(x > 1, stable=True)), torch.randint(-5, 5, (3, 20)))
case("sort", "long-row", lambda x: torch.sort(x, descending=True), torch.randn(1000))
case("sort", "scalar-and-empty", lambda x, e: (torch.sort(x[0, 0]), torch.argsort(x[0, 0]), torch.sort(e, 1),
                                               torch.sort(e, 0), torch.topk(e, 0, 1)), U, torch.zeros(3, 0))

# --- selection ---------------------------------------------------------------------------------------
case("select", "unique", lambda x: (torch.topk(x, 3), torch.topk(x, 2, dim=1, largest=False), torch.topk(x, 1, 0),
                                    torch.kthvalue(x, 4, 1), torch.kthvalue(x, 2, -1, keepdim=True),
                                    torch.kthvalue(x, 3, 0), torch.median(x, 1), torch.median(x, -1, keepdim=True),
                                    torch.median(x, 0), torch.median(x), torch.nanmedian(x, 0), torch.nanmedian(x)), U)
case("select", "special", lambda x: (
    named(x, 1, torch.topk(x, 5), True), named(x, 0, torch.topk(x, 2, 0, largest=False), True),
    named(x, 1, torch.kthvalue(x, 7, 1)), named(x, 1, torch.kthvalue(x, 16, 1, keepdim=True), keepdim=True),
    named(x, 1, torch.median(x, 1)), named(x, 0, torch.median(x, 0, keepdim=True), keepdim=True),
    named(x, 1, torch.nanmedian(x, 1)), named(x, 0, torch.nanmedian(x, 0)), torch.median(x), torch.nanmedian(x),
    torch.median(x, 1).indices), S)  # median: a NaN row names its first NaN, as eager
case("select", "nan-rows", lambda x: (named(x, 1, torch.nanmedian(x, 1)), torch.median(x, 1), torch.nanmedian(x[1:2]),
                                      named(x, 1, torch.kthvalue(x, 3, 1)), named(x, 1, torch.topk(x, 2, 1), True)),
     torch.tensor([[nan, nan, nan, nan], [nan, 3.0, nan, 1.0], [2.0, nan, -1.0, 5.0]]))
case("select", "quantile", lambda x, q: (
    torch.quantile(x, q, dim=1), torch.quantile(x, 0.3), torch.nanquantile(x, q, dim=0, keepdim=True),
    *(torch.quantile(x, 0.4, dim=-1, interpolation=m) for m in ("linear", "lower", "higher", "midpoint", "nearest"))),
     U, torch.tensor([0.0, 0.25, 0.5, 0.9, 1.0]))
case("select", "quantile-special", lambda x: (torch.quantile(x, 0.5, dim=1), torch.nanquantile(x, 0.7, dim=1),
                                              torch.nanquantile(x, 0.2, dim=0, interpolation="nearest")), S)

# --- searching ---------------------------------------------------------------------------------------
BOUNDS = torch.tensor([-2.0, -1.0, -1.0, 0.0, 0.5, 0.5, 0.5, 2.0, inf])
VALUES = torch.tensor([[nan, -inf, -2.0, -1.5, -1.0, 0.0, -0.0, 0.5], [0.7, 2.0, 3.0, inf, -3.0, 1e-3, 0.5, -1.0]])
case("search", "searchsorted", lambda b, v, u: (
    torch.searchsorted(b, v), torch.searchsorted(b, v, right=True), torch.searchsorted(b, v, side="right"),
    torch.searchsorted(b, v, out_int32=True), torch.searchsorted(b, 0.5), torch.searchsorted(b, 0.5, right=True),
    torch.searchsorted(torch.sort(u, 1).values, v), torch.searchsorted(u, v, sorter=torch.argsort(u, 1)),
    torch.bucketize(v, b), torch.bucketize(v, b, right=True, out_int32=True), torch.bucketize(v[0, 3], b)),
     BOUNDS, VALUES, torch.randn(2, 11))
case("search", "nan-boundaries", lambda b, v: (torch.searchsorted(b, v), torch.searchsorted(b, v, right=True)),
     torch.tensor([-1.0, 0.0, 1.0, nan, nan]), VALUES)
case("search", "integers", lambda b, v: (torch.searchsorted(b, v), torch.bucketize(v, b, right=True),
                                         torch.isin(v, b), torch.isin(v, b, invert=True)),
     torch.tensor([0, 2, 2, 5, 9]), torch.randint(-2, 11, (3, 7)))
case("search", "isin", lambda v, small, big: (torch.isin(v, small), torch.isin(v, big), torch.isin(v, big, invert=True),
                                              torch.isin(small, v)),
     VALUES, torch.tensor([0.5, nan, -1.0, inf]), torch.cat([BOUNDS, torch.randn(60), torch.tensor([-0.0, nan])]))
case("search", "empty", lambda b, v, e: (torch.searchsorted(e, v), torch.searchsorted(b, e), torch.bucketize(e, b)),
     BOUNDS, VALUES, torch.zeros(0))

# --- scans -------------------------------------------------------------------------------------------
case("scan", "cummax-cummin", lambda x: (torch.cummax(x, 1), torch.cummin(x, 1), torch.cummax(x, 0),
                                         torch.cummin(x, -1)), S)
case("scan", "cummax-ties", lambda x: (torch.cummax(x, 1), torch.cummin(x, 0), torch.cummax(x.long(), 1),
                                       torch.cummin(x[0, 0], 0)), TIES)
case("scan", "cumprod", lambda x, z: (torch.cumprod(x, 1), torch.cumprod(x, 0), torch.cumprod(z, 1),
                                      torch.cumprod(z, 0, dtype=torch.float64), torch.cumprod((z * 2).long(), 1),
                                      torch.cumprod(x[0, 0], 0)), S, ZEROS)
case("scan", "logcumsumexp", lambda x, u: (torch.logcumsumexp(x, 1), torch.logcumsumexp(x, 0),
                                           torch.logcumsumexp(u * 40, -1), torch.logcumsumexp(u[0, 0, 0], 0)),
     S, U)
case("scan", "logcumsumexp-infinities", lambda x: (torch.logcumsumexp(x, 1), torch.logcumsumexp(x, 0)),
     torch.tensor([[-inf, -inf, 1.0, inf, inf, 2.0], [nan, -inf, 0.0, -inf, inf, -inf],
                   [inf, -inf, 3.0, -inf, -inf, 1.0]]))
case("scan", "vander", lambda x: (torch.linalg.vander(x), torch.linalg.vander(x, N=4), torch.vander(x[0], 3)),
     torch.tensor([[1.5, -2.0, 0.0, 3.0], [nan, 0.5, -0.0, inf]]))



test_reference, test_device = case_tests(CASES, _close)


class Grads(torch.nn.Module):
    """Every differentiable op of the family on one input each, summed into projections."""

    def forward(self, u: torch.Tensor, z: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return (torch.sort(u, 1).values, torch.sort(u, 0, descending=True).values, torch.topk(u, 3).values,
                torch.kthvalue(u, 2, 1).values, torch.median(u, 2).values, torch.nanmedian(u, 0).values,
                torch.cummax(u, 1).values, torch.cummin(u, 2).values, torch.quantile(u, 0.3, dim=1),
                torch.cumprod(z, 1), torch.cumprod(z, 0), torch.logcumsumexp(w, 1), torch.logcumsumexp(w, 0))


def test_gradients(device: str) -> None:
    """Training through sort/topk/kthvalue/median (the gradient reaches the selected elements),
    cummax/cummin, quantile, cumprod (inputs with no, one and two zeros along a row and a zero
    first or last: eager's exact case analysis) and logcumsumexp (with -inf entries: NaN where the
    running value is still -inf, as eager), against torch.autograd."""
    w = torch.randn(3, 7)
    w[0, 0], w[1, 3] = -inf, -inf
    inputs = (U.clone(), ZEROS.clone(), w)
    model = Grads()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = sol.optimize(model, *inputs, device=device, fallback=False, training=True)
    probes = [torch.randn(t.shape, generator=torch.Generator().manual_seed(i)) for i, t in enumerate(model(*inputs))]
    grads = []
    for fn in (fast, model):
        xs = [t.clone().requires_grad_(True) for t in inputs]
        sum((t * p).sum() for t, p in zip(fn(*xs), probes)).backward()
        grads.append([x.grad for x in xs])
    for got, want, name in zip(*grads, ("sort/select", "cumprod", "logcumsumexp")):
        assert got is not None, name
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4, equal_nan=True,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_topk_unsorted_is_refused() -> None:
    """topk(sorted=False): eager's order of the k elements is its selection algorithm's; sol
    refuses it rather than give another order."""

    class Unsorted(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> Any:
            return torch.topk(x, 3, sorted=False)

    with pytest.raises(UnsupportedOpError, match="topk"):
        sol.optimize(Unsorted(), U, fallback=False)


def test_ve_object_code() -> None:
    """The three core ops of the family compile to real VE object code (clang's VE target) in
    both template variants; test_device runs them in the host emulation."""
    compiler = pytest.importorskip("sol_sxaurora.compiler")
    if compiler.ve_clang() is None:
        pytest.skip("no clang with the VE target (apt install clang-19)")
    from pathlib import Path

    from sol.api import compile_graph
    from sol.ir import Graph, TensorType

    g = Graph("sort_family")
    x = g.add_input("x", TensorType((3, 40), "float32"))
    v = g.add_input("v", TensorType((3, 5), "float32"))
    g.outputs.append(g.add_node("argsort", [x], {"axis": 1, "descending": True}).output)
    g.outputs.append(g.add_node("searchsorted", [x, v], {"right": True}).output)
    for kind in ("prod", "logsumexp", "argmax", "argmin"):
        g.outputs.append(g.add_node("scan", [x], {"axis": 1, "kind": kind}).output)
    for variant in ("vel", "ncc"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = compile_graph(g, "ve", options={"ve_variant": variant})
        assert Path(program.info["ve_object"]).is_file(), variant
