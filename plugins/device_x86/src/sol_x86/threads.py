"""How many OpenMP threads a network's calls use, chosen at run time from the calls' own times.

Why: a network runs one parallel region per group, and every region ends in a barrier that waits
for its slowest thread. When another process takes a core, the thread that lands on it runs only
in the scheduler's time slices (milliseconds), and every barrier waits for it: on a 2-core
machine with one CPU-bound neighbour a forward took many times as long as alone (issue #23).
Fewer threads than cores then finish sooner: the barriers stop waiting on a preempted thread.

The governor watches windows of calls: their median time and how often the kernel preempted
this process's threads during the window (involuntary context switches, ``getrusage``). On a quiet
machine it only watches (a quiet machine pays for no trial). When a window's calls were
preempted (on average once a call or more) while the kernel counts a runnable thread of another
process (preemptions alone also come from the kernel's own work), or the window is
much slower than the fastest seen, a short trial (``TRIAL_WINDOW`` calls) runs on half the
threads, and the count whose calls were faster stays. On the reduced count the full count is
tried again now and then (it must win by a margin), at once when the kernel counts no other
runnable thread, so the threads come back when the neighbour goes. Trials that lose make the
next one wait longer.

The reduced count runs a network instance of its own, created on half the threads the first
time it is needed: oneDNN fixes a primitive's thread count when it creates the primitive, so the
full count's instance would start all its threads in every convolution whatever the caller
set. While both exist, the weights in oneDNN's layouts are held twice.

The thread count is the caller's own OpenMP setting (``omp_get_max_threads``: it follows
``OMP_NUM_THREADS`` and ``torch.set_num_threads``), set for the call and restored after it, so
the caller's thread keeps its setting.

Measured (2-core machine, ResNet-18 at batch 1, a CPU-bound neighbour in another session):
226 ms per call on two threads, 34 ms once the governor moved to one (18 ms alone).

Results: the generated loops give each output element to one thread, so their numbers do not
depend on the count. oneDNN may split a long reduction between threads for some shapes, where
the two counts would differ in rounding only; measured bitwise equal on a transformer encoder,
ResNet-18, MobileNetV2 and the test network (``tests/x86/test_threads.py``).
"""

from __future__ import annotations

import ctypes
import os
import resource
import statistics
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

WINDOW = 8  # calls per measurement
TRIAL_WINDOW = 3  # calls per trial of the other count (short: a losing count can be very slow)
SLOW = 1.5  # a window this much slower than the fastest seen: contention suspected
PREEMPTED = 1.0  # involuntary context switches per call in a window: contention seen
RETURN_MARGIN = 0.9  # the full count comes back when its window takes at most this share of the reduced one's
PROBE_EVERY = 16  # windows on a reduced count between tries of the full count
MAX_BACKOFF = 64  # windows: the longest wait after losing trials
MAX_PROBE_BACKOFF = 16  # times PROBE_EVERY: the longest wait between tries of the full count


def runnable_threads() -> int | None:
    """Threads runnable on the whole machine right now (Linux: ``procs_running`` in /proc/stat,
    this call's own thread included); None where the kernel does not say."""
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"procs_running "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def other_runnable_threads() -> int | None:
    """Runnable threads not of this process right now: the machine's count less this process's
    threads in state R (its OpenMP workers spin for a while after a parallel region, so they are
    often runnable right after a call). None where the kernel does not say."""
    total = runnable_threads()
    if total is None:
        return None
    ours = 0
    try:
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/stat", "rb") as f:
                if f.read().rpartition(b")")[2].split()[:1] == [b"R"]:
                    ours += 1
    except (OSError, ValueError):
        return None
    return max(0, total - ours)


class _OpenMP:
    """The process's OpenMP runtime (libgomp, whichever copy the networks use: a framework's
    bundled ``libgomp.so.1`` when it loaded first, as the dynamic loader shares one soname)."""

    def __init__(self) -> None:
        lib = ctypes.CDLL("libgomp.so.1")
        self.get_max_threads = lib.omp_get_max_threads
        self.get_max_threads.restype = ctypes.c_int
        self.set_num_threads = lib.omp_set_num_threads
        self.set_num_threads.argtypes = [ctypes.c_int]


_openmp: _OpenMP | None = None


def openmp() -> _OpenMP:
    global _openmp
    if _openmp is None:
        _openmp = _OpenMP()
    return _openmp


class ThreadGovernor:
    """Per network: runs each call on the full or on half the caller's threads (module docstring)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter,
                 preemptions: Callable[[], int] = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_nivcsw,
                 runnable: Callable[[], int | None] = other_runnable_threads) -> None:
        self._clock = clock
        self._preemptions = preemptions
        self._runnable = runnable
        self._lock = threading.Lock()
        self.reduced = False  # calls run on half the caller's threads
        self._trial = False  # the current window tries the other count
        self._samples: list[float] = []
        # The process's involuntary context switches when the current window started, read once
        # per window rather than around every call: each read is a system call, and on a virtual
        # machine a call's first system calls after a network's run cost tens of microseconds.
        # So the count also holds switches between the window's calls (the caller's own work):
        # those too say that the machine has more runnable threads than cores.
        self._window_start: int | None = None
        self._fastest = {False: float("inf"), True: float("inf")}  # best window median per count
        self._last = {False: float("inf"), True: float("inf")}  # latest window median per count
        self._wait = 0  # windows before the next trial may start
        self._backoff = 1
        self._probe_backoff = 1
        self.switches = 0  # how often the count changed (tests, program.info)
        # Every call on the full count, none timed: a profiled network (per-group timers count
        # the full count's instance only, so a call on the other would vanish from the profile).
        self.fixed = False

    def __repr__(self) -> str:
        return f"ThreadGovernor(reduced={self.reduced}, switches={self.switches}, fixed={self.fixed})"

    def _use_reduced(self) -> bool:
        return self.reduced != self._trial

    def call(self, run: Callable[[bool], T]) -> T:
        """``run(reduced)`` on the thread count the governor chooses, timed. ``reduced``: the
        count is halved for this call; the caller runs the network instance made for it (oneDNN's
        primitives split their work for the thread count they were created with, so the full
        count's instance would still start all its threads in every primitive)."""
        if self.fixed:
            return run(False)
        reduced = self._use_reduced()
        omp = openmp() if reduced else None
        full = omp.get_max_threads() if omp is not None else 0
        if omp is not None and full > 1:
            omp.set_num_threads(max(1, full // 2))
        if self._window_start is None:
            with self._lock:
                if self._window_start is None:
                    self._window_start = self._preemptions()
        start = self._clock()
        try:
            return run(reduced)
        finally:
            elapsed = self._clock() - start
            if omp is not None and full > 1:
                omp.set_num_threads(full)
            self._record(reduced, elapsed)

    def _record(self, reduced: bool, elapsed: float) -> None:
        with self._lock:
            if reduced != self._use_reduced():
                return  # a call that straddled a decision: its time belongs to neither window
            self._samples.append(elapsed)
            if len(self._samples) < (TRIAL_WINDOW if self._trial else WINDOW):
                return
            switches = self._preemptions()
            preempted = switches - (self._window_start if self._window_start is not None else switches)
            self._window_start = switches
            median = statistics.median(self._samples)
            contended = preempted >= PREEMPTED * len(self._samples)
            self._samples = []
            self._fastest[reduced] = min(self._fastest[reduced], median)
            self._last[reduced] = median
            if self._trial:
                self._end_trial()
            else:
                self._after_window(median, contended)

    def _after_window(self, median: float, contended: bool) -> None:
        if self.reduced and self._wait > 0:
            # The neighbour may have gone: on the reduced count nothing slows down when it does
            # (the free core just idles), but the kernel then counts no other runnable thread.
            others = self._runnable()
            if others is not None and others == 0:
                self._wait = 0
        if self._wait > 0:
            self._wait -= 1
            return
        if self.reduced:
            self._trial = True  # now and then: is the full count fast again?
        elif contended and self._others_runnable() or median > SLOW * self._fastest[False]:
            self._trial = True

    def _others_runnable(self) -> bool:
        """Whether a thread not ours wants a core now (True where the kernel does not say).
        Why: preemptions alone also come from the kernel's own short work (a virtual machine's
        page scanning, writeback): measured here, every window of a quiet 2-core VM counted one
        per call, and each trial made a second network instance (ResNet-50: +208 MiB resident)
        for nothing. A CPU-bound neighbour is runnable whenever it is sampled."""
        others = self._runnable()
        return others is None or others > 0

    def _end_trial(self) -> None:
        self._trial = False
        tried = not self.reduced
        margin = RETURN_MARGIN if self.reduced else 1.0
        if self._last[tried] < margin * self._last[self.reduced]:
            self.reduced = tried
            self.switches += 1
            self._backoff = self._probe_backoff = 1
        elif self.reduced:
            self._probe_backoff = min(2 * self._probe_backoff, MAX_PROBE_BACKOFF)
        else:
            self._backoff = min(2 * self._backoff, MAX_BACKOFF)
        self._wait = PROBE_EVERY * self._probe_backoff if self.reduced else self._backoff
