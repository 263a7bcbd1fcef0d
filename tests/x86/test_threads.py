"""The x86 device's thread governor (sol_x86.threads): fewer OpenMP threads while another process
holds a core, the full count on a quiet machine and again when the neighbour goes; the same
results on either count, and the caller's own OpenMP setting left as it was."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
import torch
from torch import nn

import sol
from sol_x86 import threads
from sol_x86.threads import MAX_PROBE_BACKOFF, PROBE_EVERY, TRIAL_WINDOW, WINDOW, ThreadGovernor


class Machine:
    """A simulated machine: call times per thread count, and preemptions per call."""

    def __init__(self) -> None:
        self.now = 0.0
        self.switches = 0
        self.full_s, self.half_s, self.preempt = 0.010, 0.018, 0
        self.set_calls: list[int] = []
        self.max_threads = 2
        self.others: int | None = 0  # other runnable threads on the machine (None: the kernel does not say)

    def clock(self) -> float:
        return self.now

    def preemptions(self) -> int:
        return self.switches

    def runnable(self) -> int | None:
        return self.others

    def governor(self) -> ThreadGovernor:
        return ThreadGovernor(self.clock, self.preemptions, self.runnable)

    def run(self, gov: ThreadGovernor) -> None:
        def work(reduced: bool) -> None:
            assert reduced == (self.max_threads == 1), "the instance matches the thread count"
            self.now += self.half_s if reduced else self.full_s
            self.switches += self.preempt
        gov.call(work)


class FakeOpenMP:
    def __init__(self, machine: Machine) -> None:
        self.m = machine

    def get_max_threads(self) -> int:
        return self.m.max_threads

    def set_num_threads(self, n: int) -> None:
        self.m.set_calls.append(n)
        self.m.max_threads = n


@pytest.fixture
def machine(monkeypatch: pytest.MonkeyPatch) -> Machine:
    m = Machine()
    monkeypatch.setattr(threads, "openmp", lambda: FakeOpenMP(m))
    return m


def _calls(m: Machine, gov: ThreadGovernor, windows: int) -> None:
    for _ in range(windows * WINDOW):
        m.run(gov)


def _reduced_calls(m: Machine) -> int:
    return m.set_calls.count(1)


def test_a_quiet_machine_never_tries_fewer_threads(machine: Machine) -> None:
    gov = machine.governor()
    _calls(machine, gov, 50)
    assert not gov.reduced and gov.switches == 0 and machine.set_calls == []


@pytest.mark.parametrize("kernel_counts_threads", [True, False])
def test_preempted_calls_move_to_half_the_threads_and_back_when_the_neighbour_goes(
        machine: Machine, kernel_counts_threads: bool) -> None:
    if not kernel_counts_threads:
        machine.others = None
    gov = machine.governor()
    _calls(machine, gov, 2)
    # A neighbour arrives: two threads are preempted and wait at every barrier.
    machine.full_s, machine.half_s, machine.preempt = 0.060, 0.019, 3
    machine.others = 1 if kernel_counts_threads else None
    _calls(machine, gov, 2)  # one contended window, then the short trial on one thread
    assert gov.reduced and gov.switches == 1
    assert machine.max_threads == 2, "the caller's setting is restored after every call"
    assert set(machine.set_calls) == {1, 2}
    _calls(machine, gov, 3 * PROBE_EVERY)  # probes of the full count lose and thin out
    assert gov.reduced and gov.switches == 1
    # It goes: the full count is tried again and wins (by the margin) and stays; at once where
    # the kernel says no other thread is runnable, else at the next probe.
    machine.full_s, machine.half_s, machine.preempt = 0.010, 0.018, 0
    machine.others = 0 if kernel_counts_threads else None
    _calls(machine, gov, 2)
    assert (not gov.reduced) == kernel_counts_threads
    _calls(machine, gov, 2 * MAX_PROBE_BACKOFF * PROBE_EVERY)
    assert not gov.reduced and gov.switches == 2


def test_a_losing_trial_keeps_the_full_count_and_waits_longer_before_the_next(machine: Machine) -> None:
    """Preempted, but half the threads are slower still (a long GEMM-bound call): the full count
    stays, and the trials thin out (each loss doubles the wait)."""
    gov = machine.governor()
    machine.full_s, machine.half_s, machine.preempt = 0.020, 0.035, 2
    machine.others = 1  # a neighbour the kernel counts
    _calls(machine, gov, 60)
    assert not gov.reduced and gov.switches == 0
    trials = _reduced_calls(machine) // TRIAL_WINDOW
    assert 4 <= trials <= 7, trials  # after 0, 2, 4, 8, 16 and 32 windows: not one every window


def test_preemptions_with_no_other_runnable_thread_start_no_trial(machine: Machine) -> None:
    """A quiet virtual machine: the kernel's own short work preempts a thread now and then
    (once a call here), but no other thread wants a core: no trial, no second instance."""
    gov = machine.governor()
    machine.preempt = 2
    _calls(machine, gov, 20)
    assert not gov.reduced and machine.set_calls == []


def test_a_slowdown_without_preemption_is_tried_too(machine: Machine) -> None:
    """The other signal: a window much slower than the fastest seen (a neighbour on the other
    hyper-thread, memory bandwidth taken)."""
    gov = machine.governor()
    _calls(machine, gov, 2)
    machine.full_s, machine.half_s = 0.040, 0.020
    _calls(machine, gov, 2)
    assert gov.reduced


def _omp_max_threads() -> int:
    f = ctypes.CDLL("libgomp.so.1").omp_get_max_threads
    f.restype = ctypes.c_int
    return int(f())


def test_a_real_network_gives_the_same_results_on_half_the_threads() -> None:
    """Through sol.optimize on x86: forcing the reduced count runs a second network instance
    (its oneDNN primitives made for the reduced count) and changes no output bit (convolutions,
    a GEMM, a reduction, an element-wise chain); the caller's OpenMP setting is unchanged."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 16, 3, groups=4),
                          nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 10), nn.Softmax(-1)).eval()
    x = torch.randn(4, 3, 20, 20)
    fast = sol.optimize(model, x, device="x86")
    with torch.no_grad():
        before = _omp_max_threads()
        full = fast(x).clone()
        governors = [v.program.info["threads"] for v in fast.variants]
        assert governors and all(isinstance(g, ThreadGovernor) for g in governors)
        for g in governors:
            g.reduced = True
        half = fast(x).clone()
        assert _omp_max_threads() == before
        for v in fast.variants:
            runner = v.program._keepalive
            lib = getattr(runner, "fast", runner)  # a FiniteGuard's fused network, or the network itself
            assert lib._reduced_handle is not None and lib._reduced_handle.value != lib.handle.value
        np.testing.assert_array_equal(half.numpy(), full.numpy())
        np.testing.assert_allclose(full.numpy(), model(x).numpy(), rtol=1e-5, atol=1e-6)


def test_preemptions_are_read_once_per_window(machine: Machine) -> None:
    """Reading the context-switch count is a system call; around every call it cost tens of
    microseconds per call on a virtual machine. Once per window is what the decisions need."""
    reads = []
    gov = ThreadGovernor(machine.clock, lambda: reads.append(1) or machine.switches, machine.runnable)
    _calls(machine, gov, 10)
    assert len(reads) <= 10 + 1
