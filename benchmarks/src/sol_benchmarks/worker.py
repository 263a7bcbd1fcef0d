"""One engine, one model, one batch size, one phase, in a process of its own.

``python -m sol_benchmarks.worker --engine sol --model resnet18 --batch 8 --phase run ...``
builds the model, prepares the engine, times the first result, and in the ``run`` phase the
repeated calls after warm-up; it writes a JSON result (and the output, for the correctness
check) and exits. With ``--mode train`` a call is one training step (the model in train mode;
see :func:`sol_benchmarks.engines.prepare_step`) and the output kept for the check is the loss
of every step taken, first to last: the engines take the same steps from the same weights, so
their losses agree as long as their gradients do. The harness sets the thread environment and
the cache folders before it starts, so nothing here can leak from one engine into another.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any


def _peak_rss_mib() -> float:
    # ru_maxrss is in KiB on Linux (bytes on macOS).
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (2**20 if sys.platform == "darwin" else 2**10)


def _resident_mib() -> float | None:
    """The memory this process holds now (VmRSS), after its runs: what a server keeps resident,
    where the peak also counts what loading needed only for a moment. None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 2**10
    except (OSError, ValueError, IndexError):
        pass
    return None


def _as_numpy(y: Any) -> Any:
    import numpy as np

    if isinstance(y, (tuple, list)):
        y = y[0]
    if hasattr(y, "detach"):
        y = y.detach().cpu().numpy()
    return np.asarray(y)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    import torch

    from sol_benchmarks import engines, models

    torch.set_num_threads(args.threads)
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    train = args.mode == "train"
    model, x = models.build(args.model, args.batch, args.size, train=train)
    notes: list[str] = []
    result: dict[str, Any] = {"engine": args.engine, "model": args.model, "batch": args.batch, "phase": args.phase,
                              "mode": args.mode, "threads": torch.get_num_threads(), "notes": notes}
    losses: list[float] = []
    with torch.set_grad_enabled(train):
        t0 = time.perf_counter()
        if train:
            steps = 1 if args.phase == "cold" else 1 + args.warmup + args.repeats
            fn = engines.prepare_step(args.engine, model, x, workdir, args.phase, args.threads, notes, steps=steps)
        else:
            fn = engines.prepare(args.engine, model, x, workdir, args.phase, args.threads, notes)
        y = fn()
        result["first_result_s"] = time.perf_counter() - t0
        losses.append(float(y) if train else 0.0)
        if args.phase == "run":
            for _ in range(args.warmup):
                y = fn()
                losses.append(float(y) if train else 0.0)
            times = []
            for _ in range(args.repeats):
                t = time.perf_counter()
                y = fn()
                if train:
                    losses.append(float(y))  # reading the loss waits for the step, as a training loop's logging does
                times.append(time.perf_counter() - t)
            result["times_s"] = times
            result["median_s"] = statistics.median(times)
            if args.output:
                np.save(args.output, np.asarray(losses) if train else _as_numpy(y))
    result["peak_rss_mib"] = _peak_rss_mib()
    result["resident_mib"] = _resident_mib()
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m sol_benchmarks.worker")
    p.add_argument("--engine", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--phase", choices=["cold", "run"], required=True)
    p.add_argument("--mode", choices=["infer", "train"], default="infer")
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--workdir", required=True)
    p.add_argument("--result", required=True, help="write the JSON result here")
    p.add_argument("--output", default=None, help="run phase: save the output here (.npy)")
    args = p.parse_args(argv)
    try:
        result = run(args)
        result["ok"] = True
        code = 0
    except Exception as exc:  # the harness reports it as this engine's cell
        traceback.print_exc()
        text = str(exc).strip()
        result = {"ok": False, "error": f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"[:500]}
        code = 1
    Path(args.result).write_text(json.dumps(result))
    return code


if __name__ == "__main__":
    sys.exit(main())
