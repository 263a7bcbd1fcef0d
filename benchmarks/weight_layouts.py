"""What sol's own weight copies buy (issue 23, item 3): a zoo network compiled as ``sol.optimize``
compiles it (static weights, copied once into the layouts oneDNN picks: the memory beside the
framework's tensors) against the same graph reading the framework's own weight tensors at every
call (the weights are network inputs, converted into oneDNN's layout per call in a scratch
buffer: no copy kept). The two run alternately on the same input; each figure is the best of
``--rounds`` medians of ``--repeats`` calls. Outputs are compared too.

    .venv/bin/python benchmarks/weight_layouts.py --models vit_b_16,squeezenet1_0 --batch 1,8

Only the framework's own weights (the graph's parameters of rank 2 and more) become inputs:
weights sol folds (BatchNorm into a convolution) are sol's copy either way."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from sol.api import compile_graph  # noqa: E402
from sol.autodiff.graphs import params_to_inputs  # noqa: E402
from sol_benchmarks import zoo  # noqa: E402
from sol_benchmarks.harness import physical_cores  # noqa: E402
from sol_pytorch.variants import import_model  # noqa: E402


def _median_s(f: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def compare(name: str, batch: int, rounds: int, repeats: int) -> str:
    model = getattr(zoo, name)().eval()
    x = torch.randn(batch, 3, 224, 224)
    options = {"trace_cache": False}
    copied = import_model(model, (x,), options)
    lent = import_model(model, (x,), options)
    weights = [p for p in lent.params if p.type.rank >= 2]
    arrays = [p.data for p in weights]
    params_to_inputs(lent, weights)
    with_copies, reading_lent = compile_graph(copied, "x86"), compile_graph(lent, "x86")
    xn = x.numpy()
    a, b = (lambda: with_copies(xn)), (lambda: reading_lent(xn, *arrays))
    a(), b()  # warm-up
    ta, tb = [], []
    for _ in range(rounds):
        ta.append(_median_s(a, repeats))
        tb.append(_median_s(b, repeats))
    diff = float(np.abs(a()[0] - b()[0]).max())
    lent_mib = sum(w.nbytes for w in arrays) / 2**20
    return (f"| {name} | {batch} | {min(ta) * 1e3:.1f} | {min(tb) * 1e3:.1f} | {min(tb) / min(ta):.2f}x | "
            f"{lent_mib:.0f} | {diff:.1e} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", default="vit_b_16,squeezenet1_0")
    p.add_argument("--batch", default="1,8")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    args = p.parse_args()
    torch.set_num_threads(physical_cores())
    print("| model | batch | copies in oneDNN's layout ms | framework's tensors, converted per call ms | "
          "time ratio | weights not copied MiB | max abs diff |")
    print("|---|--:|--:|--:|--:|--:|--:|")
    for name in args.models.split(","):
        for batch in (int(b) for b in args.batch.split(",")):
            print(compare(name, batch, args.rounds, args.repeats), flush=True)


if __name__ == "__main__":
    main()
