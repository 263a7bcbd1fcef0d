"""The deployed library's run time against the same network called through Python (issue 21,
item 7): ``sol.deploy`` writes ResNet-50 and a transformer encoder as C libraries; a small C
program times ``NAME_run`` (no Python in its process) and the same process-less timing is done
for ``sol.optimize``'s module through PyTorch. Rounds alternate between the two (the C program
runs between Python timing blocks) so that a busy machine slows both alike; each figure is the
median over rounds of the median per round.

    .venv/bin/python benchmarks/deploy_speed.py [--runs 20] [--rounds 5] [--only resnet50]

Say whether the machine was busy when quoting the numbers."""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import sol
from sol_benchmarks import zoo

TIMER = r"""
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "NAME.h"

static int cmp(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  /* timer WEIGHTS INPUT RUNS: prints the median seconds of one NAME_run */
  NAME_net* net;
  FILE* f = fopen(argv[2], "rb");
  size_t in_bytes = NAME_input_bytes(0, 0), out_bytes = NAME_output_bytes(0, 0);
  void* x = malloc(in_bytes);
  void* y = malloc(out_bytes);
  int runs = atoi(argv[3]), i;
  double* t = malloc(sizeof(double) * runs);
  if (f == NULL || fread(x, 1, in_bytes, f) != in_bytes) return 2;
  fclose(f);
  if (NAME_create(argv[1], &net) != 0) {
    fprintf(stderr, "%s\n", NAME_error_message());
    return 1;
  }
  for (i = 0; i < 3; ++i) NAME_run(net, (const void* const*)&x, &in_bytes, &y, &out_bytes); /* warm up */
  for (i = 0; i < runs; ++i) {
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    if (NAME_run(net, (const void* const*)&x, &in_bytes, &y, &out_bytes) != 0) {
      fprintf(stderr, "%s\n", NAME_error_message());
      return 1;
    }
    clock_gettime(CLOCK_MONOTONIC, &b);
    t[i] = (b.tv_sec - a.tv_sec) + 1e-9 * (b.tv_nsec - a.tv_nsec);
  }
  qsort(t, runs, sizeof(double), cmp);
  printf("%.9f\n", t[runs / 2]);
  NAME_destroy(net);
  return 0;
}
"""


def encoder() -> nn.Module:
    """A BERT-base-like block stack, smaller: 4 layers, d_model 256, 8 heads, FFN 1024."""
    layer = nn.TransformerEncoderLayer(256, 8, 1024, dropout=0.0, batch_first=True)
    return nn.TransformerEncoder(layer, 4, enable_nested_tensor=False)


def python_median(module: nn.Module, x: torch.Tensor, runs: int) -> float:
    samples = []
    with torch.no_grad():
        for _ in range(3):
            module(x)
        for _ in range(runs):
            t = time.perf_counter()
            module(x)
            samples.append(time.perf_counter() - t)
    return statistics.median(samples)


def measure(name: str, model: nn.Module, x: torch.Tensor, runs: int, rounds: int, work: Path) -> tuple[float, float]:
    model.eval()
    t0 = time.perf_counter()
    dep = sol.deploy(model, x, path=work / name, name=name)
    print(f"{name}: deployed in {time.perf_counter() - t0:.0f} s to {dep.path}", flush=True)
    timer = work / f"{name}_timer"
    (work / f"{name}_timer.c").write_text(TIMER.replace("NAME", name))
    subprocess.run(["gcc", "-O2", "-o", str(timer), str(work / f"{name}_timer.c"), f"-I{dep.path}", f"-L{dep.path}",
                    f"-l{name}", f"-Wl,-rpath,{dep.path}"], check=True)
    x.numpy().tofile(work / f"{name}.in")
    optimized = sol.optimize(model, x)
    with torch.no_grad():
        np.testing.assert_allclose(optimized(x).numpy(), model(x).numpy(), rtol=1e-3, atol=1e-4)
    c_times, py_times = [], []
    for _ in range(rounds):
        out = subprocess.run([str(timer), str(dep.path / f"{name}.weights"), str(work / f"{name}.in"), str(runs)],
                             check=True, capture_output=True, text=True).stdout
        c_times.append(float(out))
        py_times.append(python_median(optimized, x, runs))
    return statistics.median(c_times), statistics.median(py_times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="timed calls per round (median)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (median of medians)")
    parser.add_argument("--only", choices=["resnet50", "encoder"], default=None)
    args = parser.parse_args()
    torch.manual_seed(0)
    cases = {"resnet50": (zoo.resnet50, torch.randn(1, 3, 224, 224)), "encoder": (encoder, torch.randn(1, 128, 256))}
    rows = []
    with tempfile.TemporaryDirectory(prefix="sol-deploy-speed-") as tmp:
        for name, (make, x) in cases.items():
            if args.only and name != args.only:
                continue
            c, py = measure(name, make(), x, args.runs, args.rounds, Path(tmp))
            rows.append((name, tuple(x.shape), c, py))
    print(f"\n{'network':10s} {'input':18s} {'deployed (C)':>14s} {'sol.optimize':>14s} {'C / Python':>11s}")
    for name, shape, c, py in rows:
        print(f"{name:10s} {str(shape):18s} {c * 1e3:11.2f} ms {py * 1e3:11.2f} ms {c / py:10.3f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
