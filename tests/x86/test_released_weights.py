"""Weights sol made itself (BatchNorm folded into a convolution, constants folded from weights)
are released from memory once the network has copied them into its oneDNN layouts: each moves
to an unlinked file, mapped read-only, and is read from there again only by a second network
instance (fewer threads) or the exact variant. The framework's own tensors are never touched,
and a value the network also reads at run time is never released."""

from __future__ import annotations

import math
import shutil

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import sol
from sol_x86 import runtime
from sol_x86.threads import ThreadGovernor

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="needs g++")


@pytest.fixture(autouse=True)
def release_small_arrays(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(runtime, "_RELEASE_MIN_BYTES", 0)  # these tests' weights are small


class ConvBnHead(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 12, 3, padding=1, bias=False)
        self.bn = torch.nn.BatchNorm2d(12)
        self.fc = torch.nn.Linear(12, 5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu6(self.bn(self.conv(x)))  # relu6: a finite-only post-op, so an exact variant exists
        return self.fc(y.mean((2, 3)))


def _model() -> ConvBnHead:
    torch.manual_seed(0)
    m = ConvBnHead().eval()
    with torch.no_grad():
        m.bn.running_mean.uniform_(-0.5, 0.5)
        m.bn.running_var.uniform_(0.5, 2.0)
    return m


def _library(fast: object) -> runtime.NetworkLibrary:
    runner = fast.program._keepalive  # type: ignore[attr-defined]
    return getattr(runner, "fast", runner)  # a FiniteGuard's fused network, or the network itself


def test_folded_weights_are_released_and_the_other_instances_still_read_them() -> None:
    m = _model()
    before = {k: v.clone() for k, v in m.state_dict().items()}
    x = torch.randn(2, 3, 10, 10)
    fast = sol.optimize(m, x, device="x86")
    program = fast.program
    lib = _library(fast)
    assert program.info["released_bytes"] > 0
    released = [a for a in lib.params if isinstance(a, np.memmap)]
    assert released and all(not a.flags.writeable for a in released)
    framework = {p.data_ptr() for p in m.parameters()}
    assert not any(a.ctypes.data in framework for a in released)  # never the model's own memory
    # The plan's values point at the mapped copies too (the exact variant is planned from them).
    plan_arrays = [v.data for v in [*program.info["plan"].graph.params, *program.info["plan"].graph.consts]]
    assert sum(isinstance(a, np.memmap) for a in plan_arrays) == len(released)
    with torch.no_grad():
        want = m(x)
        torch.testing.assert_close(fast(x), want, rtol=1e-5, atol=1e-6)
        # A second instance on half the threads, created after the release.
        governor = program.info["threads"]
        assert isinstance(governor, ThreadGovernor)
        governor.reduced = True
        torch.testing.assert_close(fast(x), want, rtol=1e-5, atol=1e-6)
        assert lib._reduced_handle is not None
        governor.reduced = False
        # The exact variant, built after the release from the plan's (mapped) values.
        xs = x.clone()
        xs[0, 0, 0, 0] = math.nan
        got, want_nan = fast(xs), m(xs)
        assert program.info["finite_guard"].exact_calls == 1
        assert torch.equal(got.isnan(), want_nan.isnan())
        torch.testing.assert_close(got[~got.isnan()], want_nan[~want_nan.isnan()], rtol=1e-5, atol=1e-6)
    for k, v in m.state_dict().items():
        assert torch.equal(v, before[k]), k  # the model is unchanged


class SharedFold(torch.nn.Module):
    """One folded constant (2 * w) is a dense layer's weight and also read by a generated loop
    at every call (an element-wise product with the input); another (3 * v) only by a dense layer."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(n, n))
        self.v = torch.nn.Parameter(torch.randn(n, n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w2 = self.w * 2
        return F.linear(x, w2) + x * w2 + F.linear(x, self.v * 3)  # x * w2: w2 read in a loop


def test_a_value_also_read_at_run_time_stays() -> None:
    torch.manual_seed(1)
    m = SharedFold(16).eval()
    x = torch.randn(16, 16)
    fast = sol.optimize(m, x, device="x86")
    lib = _library(fast)
    moved = [a for a in lib.params if isinstance(a, np.memmap)]
    kept = [a for a in lib.params if not isinstance(a, np.memmap) and a.shape == (16, 16)]
    with torch.no_grad():
        torch.testing.assert_close(fast(x), m(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fast(x + 1), m(x + 1), rtol=1e-5, atol=1e-5)
    # 3 * v is read only when the network is created: released. 2 * w is read again at every
    # call, so it stays where the network reads it.
    assert len(moved) == 1
    assert np.allclose(np.asarray(moved[0]), 3 * m.v.detach().numpy())
    assert any(np.allclose(a, 2 * m.w.detach().numpy()) for a in kept)


def _resident_kib(a: np.memmap) -> int:
    """This process's resident kB of the mapping holding ``a`` (/proc/self/smaps)."""
    start = a.ctypes.data - a.ctypes.data % 4096
    entry = None
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()[0]
            if "-" in head and all(c in "0123456789abcdef-" for c in head):
                lo, hi = (int(p, 16) for p in head.split("-"))
                entry = lo <= start < hi
            elif entry and line.startswith("Rss:"):
                return int(line.split()[1])
    raise AssertionError("mapping not found")


def test_a_second_instance_leaves_the_released_weights_unmapped() -> None:
    """Creating the half-thread instance (and the exact variant) reads the released weights
    back in; their pages are dropped from this process again afterwards (ResNet-50: 90 MB)."""
    m = _model()
    x = torch.randn(2, 3, 10, 10)
    fast = sol.optimize(m, x, device="x86")
    program = fast.program
    lib = _library(fast)
    released = [a for a in lib.params if isinstance(a, np.memmap)]
    assert released
    with torch.no_grad():
        want = m(x)
        governor = program.info["threads"]
        governor.reduced = True
        torch.testing.assert_close(fast(x), want, rtol=1e-5, atol=1e-6)
        assert [_resident_kib(a) for a in released] == [0] * len(released)
        governor.reduced = False
        xs = x.clone()
        xs[0, 0, 0, 0] = math.nan
        fast(xs)
        assert program.info["finite_guard"].exact_calls == 1
        assert [_resident_kib(a) for a in released] == [0] * len(released)
        torch.testing.assert_close(fast(x), want, rtol=1e-5, atol=1e-6)
