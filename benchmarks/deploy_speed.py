"""The deployed library's run time against the same network called through Python (issue 21,
item 7): ``sol.deploy`` writes ResNet-50 and a transformer encoder as C libraries; a small C
program times ``NAME_run`` (no Python in its process) and the same process-less timing is done
for ``sol.optimize``'s module through PyTorch. Rounds alternate between the two (the C program
runs between Python timing blocks) so that a busy machine slows both alike; each figure is the
median over rounds of the median per round. A second measurement loads the deployed library
into the Python process and alternates single calls of ``NAME_run`` and of the module: the
ratio of the two medians is what the Python call adds, without the machine's drift between
rounds (on a virtual machine that drift moves the first ratio by several points).

    .venv/bin/python benchmarks/deploy_speed.py [--runs 20] [--rounds 5] [--only resnet50]

Say whether the machine was busy when quoting the numbers."""

from __future__ import annotations

import argparse
import ctypes
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


def same_process(library: Path, weights: Path, module: nn.Module, x: torch.Tensor, y: torch.Tensor,
                 calls: int) -> tuple[float, float]:
    """Median seconds of ``NAME_run`` (the deployed library loaded into this process) and of the
    module's call, alternating call by call (A B B A ...): both meet the same machine state, so
    the ratio is what the Python call itself adds, free of the drift between rounds."""
    lib = ctypes.CDLL(str(library))
    name = library.stem[3:]
    create, run, destroy = getattr(lib, f"{name}_create"), getattr(lib, f"{name}_run"), getattr(lib, f"{name}_destroy")
    create.argtypes = [ctypes.c_char_p, ctypes.POINTER(ctypes.c_void_p)]
    run.argtypes = [ctypes.c_void_p] + [ctypes.c_void_p] * 4
    destroy.argtypes = [ctypes.c_void_p]
    handle = ctypes.c_void_p()
    if create(str(weights).encode(), ctypes.byref(handle)) != 0:
        raise RuntimeError(f"{name}_create failed in this process")
    ins, in_bytes = (ctypes.c_void_p * 1)(x.data_ptr()), (ctypes.c_size_t * 1)(x.nbytes)
    outs, out_bytes = (ctypes.c_void_p * 1)(y.data_ptr()), (ctypes.c_size_t * 1)(y.nbytes)
    args = (handle, ctypes.cast(ins, ctypes.c_void_p), ctypes.cast(in_bytes, ctypes.c_void_p),
            ctypes.cast(outs, ctypes.c_void_p), ctypes.cast(out_bytes, ctypes.c_void_p))
    c_times: list[float] = []
    py_times: list[float] = []

    def c_call() -> None:
        t = time.perf_counter()
        if run(*args) != 0:
            raise RuntimeError(f"{name}_run failed in this process")
        c_times.append(time.perf_counter() - t)

    def py_call() -> None:
        t = time.perf_counter()
        module(x)
        py_times.append(time.perf_counter() - t)

    try:
        with torch.no_grad():
            for _ in range(3):
                c_call()
                py_call()
            c_times.clear()
            py_times.clear()
            for i in range(calls):
                first, second = (c_call, py_call) if i % 2 == 0 else (py_call, c_call)
                first()
                second()
    finally:
        destroy(handle)
    return statistics.median(c_times), statistics.median(py_times)


def measure(name: str, model: nn.Module, x: torch.Tensor, runs: int, rounds: int,
            work: Path) -> tuple[float, float, float, float]:
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
    with torch.no_grad():
        y = torch.empty_like(optimized(x))
    c_in, py_in = same_process(dep.path / f"lib{name}.so", dep.path / f"{name}.weights", optimized, x, y, runs * rounds)
    return statistics.median(c_times), statistics.median(py_times), c_in, py_in


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
            rows.append((name, tuple(x.shape), *measure(name, make(), x, args.runs, args.rounds, Path(tmp))))
    print("\nC program and Python process, alternating rounds | one process, alternating calls")
    print(f"{'network':10s} {'input':18s} {'deployed (C)':>14s} {'sol.optimize':>14s} {'C / Python':>11s} |"
          f" {'NAME_run':>11s} {'module':>11s} {'C / Python':>11s}")
    for name, shape, c, py, c_in, py_in in rows:
        print(f"{name:10s} {str(shape):18s} {c * 1e3:11.2f} ms {py * 1e3:11.2f} ms {c / py:10.3f}  |"
              f" {c_in * 1e3:8.2f} ms {py_in * 1e3:8.2f} ms {c_in / py_in:10.3f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
