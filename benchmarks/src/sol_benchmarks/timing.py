"""Timing engines against each other in one process, each on a quiet machine.

Engines keep their worker threads spinning for a while after a call, waiting for more work:
ONNX Runtime's intra-op pool about 40 ms, TensorFlow's Eigen pool, libgomp's threads a few ms
(measured on the 2-core benchmark machine from the threads' CPU time in
``/proc/self/task/*/schedstat``). A call that starts while another engine's threads still spin
shares the cores with them: on 2 cores, sol's MobileNetV2 at batch 1 took 14.4 ms right after a
block of ONNX Runtime calls and 7 ms on a quiet machine. So before each engine's block of calls
:func:`wait_until_quiet` waits until no other thread of the process has run for a while; the
blocks still alternate, so a machine whose speed drifts slows every engine alike.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from collections.abc import Callable, Mapping

_TASKS = "/proc/self/task"


def _others_cpu_ns() -> int | None:
    """CPU time (ns) all threads of this process but the calling one have run, or None where
    the kernel does not say (not Linux)."""
    me = str(threading.get_native_id())
    total = 0
    try:
        tasks = os.listdir(_TASKS)
    except OSError:
        return None
    for task in tasks:
        if task == me:
            continue
        try:
            with open(f"{_TASKS}/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            continue  # the thread ended between listdir and open
    return total


def wait_until_quiet(window: float = 0.02, quiet_windows: int = 2, limit: float = 1.0) -> float:
    """Wait until the process's other threads have used no CPU for ``quiet_windows`` windows of
    ``window`` seconds in a row (at most ``limit`` seconds; a thread that never rests cannot hold
    a benchmark forever). Returns the seconds waited. Without ``/proc``: sleeps 0.25 s, longer
    than the spinning measured here."""
    start = time.perf_counter()
    last = _others_cpu_ns()
    if last is None:
        time.sleep(0.25)
        return time.perf_counter() - start
    quiet = 0
    while quiet < quiet_windows and time.perf_counter() - start < limit:
        time.sleep(window)
        now = _others_cpu_ns()
        quiet = quiet + 1 if now == last else 0
        last = now
    return time.perf_counter() - start


def alternating_medians(calls: Mapping[str, Callable[[], object]], blocks: int, block: int = 5,
                        warmup: int = 1) -> dict[str, float]:
    """Median seconds per call of each engine: ``blocks`` rounds, each engine in turn waiting
    until the process is quiet, making ``warmup`` untimed calls (caches and its own thread pool
    warm again) and then ``block`` timed ones."""
    times: dict[str, list[float]] = {key: [] for key in calls}
    for _ in range(max(1, blocks)):
        for key, call in calls.items():
            wait_until_quiet()
            for _ in range(warmup):
                call()
            for _ in range(block):
                t0 = time.perf_counter()
                call()
                times[key].append(time.perf_counter() - t0)
    return {key: statistics.median(t) for key, t in times.items()}
