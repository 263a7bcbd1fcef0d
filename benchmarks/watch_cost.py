"""Per-call cost of the PyTorch frontend's change detection (README, "Reliability"): how long
``WeightsWatch.changed()`` takes on an unchanged model, the check every inference call makes.
Medians of many calls in one process; run on an otherwise idle machine:
``.venv/bin/python benchmarks/watch_cost.py``."""

from __future__ import annotations

import statistics
import time

import torch

from sol_benchmarks import zoo
from sol_pytorch.weights import WeightsWatch


def cost_us(model: torch.nn.Module, calls: int = 2000) -> float:
    watch = WeightsWatch(model)
    samples = []
    for _ in range(calls):
        t = time.perf_counter()
        watch.changed()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e6


def main() -> None:
    models = {"mlp": zoo.mlp(), "resnet18": zoo.resnet18(), "resnet50": zoo.resnet50()}
    for name, model in models.items():
        n = len(list(model.parameters())) + len(list(model.buffers()))
        print(f"{name:10s} {n:4d} tensors  {cost_us(model.eval()):7.1f} us per call")


if __name__ == "__main__":
    main()
