"""sol's demo: optimize a randomly initialised ResNet-18 (plain torch.nn) at batch 8 on x86 and
print eager time, sol time, the speedup and the largest absolute difference."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence

import torch

from sol_benchmarks.zoo import resnet18


def median_time(fn, x: torch.Tensor, repeats: int, warmup: int = 3) -> float:  # type: ignore[no-untyped-def]
    with torch.no_grad():
        for _ in range(warmup):
            fn(x)
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; ``argv`` as on the command line (default: ``sys.argv[1:]``). Returns the exit
    status: 0 when sol's output matches eager's within 1e-3 (relative to the largest output)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args(argv)

    import sol

    torch.manual_seed(0)
    model = resnet18().eval()
    x = torch.rand(args.batch, 3, args.size, args.size)

    t = time.perf_counter()
    fast = sol.optimize(model, x.size(), device="x86")
    t_opt = time.perf_counter() - t
    cached = fast.program.info.get("cached")

    with torch.no_grad():
        want = model(x)
        got = fast(x)
    diff = (want - got).abs().max().item()
    rel = diff / want.abs().max().item()

    # Interleave the two so that machine noise hits both alike; report medians.
    eager, ours = [], []
    for _ in range(3):
        eager.append(median_time(model, x, args.repeats // 3 or 1))
        ours.append(median_time(fast, x, args.repeats // 3 or 1))
    t_eager, t_sol = statistics.median(eager), statistics.median(ours)

    print(f"ResNet-18, batch {args.batch}, {args.size}x{args.size}, fp32, {torch.get_num_threads()} threads")
    print(f"  optimize():            {t_opt:7.2f} s ({'compile cache hit' if cached else 'compiled'})")
    print(f"  PyTorch eager:         {t_eager * 1e3:7.1f} ms / batch")
    print(f"  sol (x86):             {t_sol * 1e3:7.1f} ms / batch")
    print(f"  speedup:               {t_eager / t_sol:7.2f}x")
    print(f"  max |sol - eager|:     {diff:.2e} (relative to max |output|: {rel:.1e})")
    ok = rel < 1e-3
    print("  correctness:           " + ("OK (within 1e-3)" if ok else "MISMATCH"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
