"""Reductions fused into a loop nest whose outer loop (the batch) has more than one iteration,
against PyTorch eager (issue #14: ``x.sum(2, keepdim=True).softmax(1)`` on a (2, 3, 4, 5) input
read every channel from channel 0; the kept channel run stepped with the output row instead of the
outer position). Each pattern also runs with batch 1, and as found by the random-graph fuzzer
(test_fuzz.py). All patterns of a device compile as one model."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from op_cases import Cases, check_device, checked_arrays

torch.manual_seed(0)

CASES = Cases()
case = CASES.add
_conv1x1 = nn.Conv2d(3, 4, 1)
_linear = nn.Linear(5, 6)

for _batch in (2, 1):
    x = torch.randn(_batch, 3, 4, 5)
    b = f"batch{_batch}"
    case("reduce", f"sum-keepdim-softmax-{b}", lambda x: x.sum(2, keepdim=True).softmax(1), x)
    case("reduce", f"mean-keepdim-softmax-{b}", lambda x: x.mean(2, keepdim=True).softmax(1), x)
    case("reduce", f"mean-softmax-{b}", lambda x: x.mean(2).softmax(1), x)
    case("reduce", f"sum1-keepdim-softmax-{b}", lambda x: x.sum(1, keepdim=True).softmax(2), x)
    case("reduce", f"sum-keepdim-cat-{b}", lambda x: torch.cat([x.sum(2, keepdim=True), x[:, :, 1:2] * 2], 1), x)
    case("reduce", f"mean-amax-cat-{b}", lambda x: torch.cat([x.mean(2, keepdim=True), x.amax(2, keepdim=True)], 1),
         x)
    case("reduce", f"sum-keepdim-conv1x1-{b}", lambda x: _conv1x1(x.sum(2, keepdim=True)), x)
    case("reduce", f"mean-keepdim-linear-{b}", lambda x: _linear(x.mean(2, keepdim=True).relu()), x)
    case("reduce", f"sum-two-axes-5d-{b}",
         lambda x: x.unsqueeze(-1).expand(*x.shape, 2).sum((1, 3), keepdim=True).softmax(2), x)
    case("reduce", f"sum-5d-{b}",
         lambda x: (x.unsqueeze(2) * torch.arange(1.0, 4.0).view(3, 1, 1, 1)).sum(3).softmax(1), x)


def _close(got: object, want: torch.Tensor, what: str) -> None:
    g, w = checked_arrays(got, want, what)
    np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5 * max(1.0, float(np.abs(w).max())), err_msg=what)


def test_reductions_in_a_batched_loop_nest(device: str) -> None:
    check_device(list(CASES), device, _close)
