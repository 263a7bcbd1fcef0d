"""What Winograd's F(2x2, 3x3) buys on x86 (sol_x86.winograd, issue 23 item 1): each zoo network
compiled twice in one process, with the default (3x3 stride-1 convolutions that fit run as
Winograd) and with ``winograd=False`` (oneDNN's direct kernels everywhere). The two run
alternately on the same input; each figure is the median of ``--repeats`` calls. Outputs are
compared with eager's (largest difference relative to the largest output).

    .venv/bin/python benchmarks/winograd_speed.py --models resnet18,resnet50 --batch 1,8
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

import sol  # noqa: E402
from sol_benchmarks import zoo  # noqa: E402


def _row(name: str, batch: int, repeats: int) -> str:
    torch.manual_seed(0)
    model = getattr(zoo, name)().eval()
    x = torch.randn(batch, 3, 224, 224)
    fast = sol.optimize(model, x, device="x86")
    direct = sol.optimize(model, x, device="x86", winograd=False)
    groups = sum("winograd" in line for line in fast.program.info["libraries"].splitlines())  # type: ignore[attr-defined]
    times: dict[str, list[float]] = {"winograd": [], "direct": []}
    with torch.no_grad():
        want = model(x)
        scale = float(want.abs().max())
        diff = {k: float((m(x) - want).abs().max()) / scale for k, m in (("winograd", fast), ("direct", direct))}
        for _ in range(2):
            fast(x), direct(x)
        for _ in range(repeats):
            for key, m in (("winograd", fast), ("direct", direct)):
                start = time.perf_counter()
                m(x)
                times[key].append(time.perf_counter() - start)
    w, d = (statistics.median(times[k]) * 1e3 for k in ("winograd", "direct"))
    return (f"| {name} | {batch} | {groups} | {d:.2f} | {w:.2f} | {d / w:.2f}x | "
            f"{diff['direct']:.1e} / {diff['winograd']:.1e} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet18,resnet50,densenet121,googlenet,vgg11_bn")
    ap.add_argument("--batch", default="1,8")
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    print("| model | batch | Winograd groups | direct ms | Winograd ms | speedup "
          "| max rel. diff vs eager (direct / Winograd) |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for name in args.models.split(","):
        for batch in (int(b) for b in args.batch.split(",")):
            print(_row(name, batch, args.repeats), flush=True)


if __name__ == "__main__":
    main()
