"""sol's ONNX frontend against ONNX Runtime on the zoo exported to ONNX (issue 20, item 6).

Each zoo network (random weights, 224x224) is exported with ``torch.onnx.export`` and run by
ONNX Runtime's CPU provider (all graph optimizations, the physical cores as intra-op threads,
sequential execution) and by ``sol.onnx.optimize`` on x86, in one process, in alternating blocks
of calls (a wait until the other engine's threads are idle, a warm-up call, then ``BLOCK`` timed
ones), so a machine whose speed drifts slows both alike; each time is the median of about
``--repeats`` calls. Also reported: sol's cold compile (the first ``optimize`` of the network in
a compile cache that starts empty for this run: the first row also builds sol's x86 runtime
library) and its warm first result (a second ``optimize`` of the same file, on that cache, up to
its first output), and the largest difference from ONNX Runtime relative to its largest output.

    .venv/bin/python benchmarks/onnx_speed.py --models resnet18,mobilenet_v2 --batch 1,8
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

# Calls alternate in blocks, each after the other engine's threads have stopped spinning
# (sol_benchmarks.timing says why and how).
BLOCK = 5


def _export(name: str, batch: int, folder: Path) -> tuple[Path, np.ndarray]:
    import torch

    from sol_benchmarks import zoo

    torch.manual_seed(0)
    model = getattr(zoo, name)().eval()
    x = torch.randn(batch, 3, 224, 224)
    path = folder / f"{name}_b{batch}.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(model, (x,), str(path), dynamo=True, input_names=["x"])
        except Exception:  # the TorchScript exporter where torch.export cannot take the model
            torch.onnx.export(model, (x,), str(path), dynamo=False, input_names=["x"])
    return path, x.numpy()


def _row(name: str, batch: int, folder: Path, threads: int, repeats: int) -> str:
    import sol.onnx
    from sol_benchmarks.engines import ort_session
    from sol_benchmarks.timing import alternating_medians

    path, x = _export(name, batch, folder)
    session = ort_session(path, threads)
    feed = {session.get_inputs()[0].name: x}
    start = time.perf_counter()
    fast = sol.onnx.optimize(str(path), x)
    fast(x)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    again = sol.onnx.optimize(str(path), x)
    again(x)
    warm = time.perf_counter() - start
    want = session.run(None, feed)[0]
    got = fast(x)[0]
    diff = float(np.abs(got - want).max() / max(float(np.abs(want).max()), 1e-30))
    calls = {"ort": lambda: session.run(None, feed), "sol": lambda: fast(x)}
    medians = alternating_medians(calls, blocks=repeats // BLOCK, block=BLOCK)
    o, s = (medians[k] * 1e3 for k in ("ort", "sol"))
    return f"| {name} | {batch} | {o:.2f} | {s:.2f} | {o / s:.2f}x | {cold:.2f} | {warm:.2f} | {diff:.1e} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,resnet50,mobilenet_v2,squeezenet1_0,densenet121,googlenet,"
                                        "efficientnet_b0")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--threads", type=int, default=0, help="default: the physical cores")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SOL_CACHE_DIR"] = str(Path(tmp) / "cache")  # cold: an empty compile cache for this run
        from sol.plugin_api import physical_cores

        threads = args.threads or physical_cores()
        print(f"ONNX Runtime CPU against sol.onnx on x86, {threads} thread(s), medians of "
              f"{max(1, args.repeats // BLOCK) * BLOCK} calls in alternating blocks of {BLOCK}, "
              "each on a quiet process; "
              "ratio: ONNX Runtime time / sol time")
        print("\n| model | batch | ONNX Runtime ms | sol ms | sol vs ONNX Runtime | sol cold compile s "
              "| sol warm first result s | max rel. diff |")
        print("|---|--:|--:|--:|--:|--:|--:|--:|")
        ratios = []
        for name in args.models.split(","):
            for batch in (int(b) for b in args.batch.split(",")):
                row = _row(name, batch, Path(tmp), threads, args.repeats)
                ratios.append(float(row.split("|")[5].strip().rstrip("x")))
                print(row, flush=True)
        geo = float(np.exp(np.mean(np.log(ratios))))
        print(f"| geometric mean | | | | **{geo:.2f}x** | | | |")


if __name__ == "__main__":
    main()
