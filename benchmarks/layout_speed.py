"""What the channels-last regions buy on x86 (sol.planner.layout, issue 23 item 1): each zoo
network compiled twice in one process, with ``SOL_X86_LAYOUT=nchw`` (no regions: every concat,
pooling and element-wise op between convolutions reads and writes NCHW, oneDNN converts around
it) and ``nhwc`` (the default on AVX-512). The two run alternately on the same
input; each figure is the median of ``--repeats`` calls. Outputs are compared with eager's.

    .venv/bin/python benchmarks/layout_speed.py --models squeezenet1_0,resnet18 --batch 1,8
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

import sol  # noqa: E402
from sol_benchmarks import zoo  # noqa: E402


def _compiled(name: str, x: torch.Tensor, layout: str, state: dict) -> torch.nn.Module:
    model = getattr(zoo, name)().eval()
    model.load_state_dict(state)
    os.environ["SOL_X86_LAYOUT"] = layout  # read by the x86 device when the network is planned
    try:
        return sol.optimize(model, x)
    finally:
        del os.environ["SOL_X86_LAYOUT"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="squeezenet1_0,resnet18,mobilenet_v2,densenet121")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    print("| model | batch | NCHW ms | channels-last ms | speedup | max abs. diff vs eager (NCHW / channels-last) |")
    print("|---|--:|--:|--:|--:|--:|")
    for name in args.models.split(","):
        for batch in (int(b) for b in args.batch.split(",")):
            torch.manual_seed(0)
            eager = getattr(zoo, name)().eval()
            x = torch.randn(batch, 3, 224, 224)
            nchw = _compiled(name, x, "nchw", eager.state_dict())
            nhwc = _compiled(name, x, "nhwc", eager.state_dict())
            with torch.no_grad():
                want = eager(x)
                diffs = [(f(x) - want).abs().max().item() for f in (nchw, nhwc)]
                for _ in range(3):
                    nchw(x), nhwc(x)
                times: dict[str, list[float]] = {"nchw": [], "nhwc": []}
                for r in range(args.repeats):
                    order = (("nchw", nchw), ("nhwc", nhwc)) if r % 2 else (("nhwc", nhwc), ("nchw", nchw))
                    for key, f in order:
                        start = time.perf_counter()
                        f(x)
                        times[key].append(time.perf_counter() - start)
            a, b = statistics.median(times["nchw"]), statistics.median(times["nhwc"])
            print(f"| {name} | {batch} | {a * 1e3:.2f} | {b * 1e3:.2f} | {a / b:.3f}x | "
                  f"{diffs[0]:.1e} / {diffs[1]:.1e} |", flush=True)


if __name__ == "__main__":
    main()
