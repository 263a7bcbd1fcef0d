"""MXNet model-zoo networks: sol against MXNet imperative and hybridized, in one run.

    .venv-mxnet/bin/python benchmarks/mxnet_bench.py                  # all models, batch 1 and 8
    .venv-mxnet/bin/python benchmarks/mxnet_bench.py --quick          # tiny settings, to check it works
    .venv-mxnet/bin/python benchmarks/mxnet_bench.py --models resnet18_v1 --batch 8 --out table.md

Runs in the MXNet environment (``scripts/env_mxnet.sh`` creates ``.venv-mxnet``: MXNet 1.9.1 needs
numpy<1.24) and needs nothing but MXNet and sol there. The networks are
``mxnet.gluon.model_zoo.vision``'s (random weights, no download), at 224x224 (Inception v3:
299x299; ``--image-size`` runs the networks that allow it at another size). Per network and batch
size, each engine computes the same input:

- ``imperative``: the Gluon block called eagerly;
- ``hybridized``: a twin of the block (the same weights) after
  ``hybridize(static_alloc=True, static_shape=True)``, MXNet's fastest inference mode;
- ``sol``: ``sol.mxnet.optimize(net, x)`` on the chosen device (``fallback=False``: a network sol
  cannot compile whole is a reported failure, not an MXNet timing in disguise). Its program holds
  the weights (BatchNorm folded, weights prepacked); every call first checks MXNet's write
  counters of all parameters, and that check is part of the time measured.

Timing: each engine is warmed up, then the engines are called in interleaved rounds (one call of
each per round, so a noisy neighbour slows all of them alike); every call ends with the result on
the host (``asnumpy``: MXNet runs asynchronously). The median per engine is reported; ratios are
engine time / sol time (above 1: sol is faster), with their geometric mean over all rows. The
header states MXNet's build (``mx.runtime.Features()``: oneDNN/MKLDNN, OpenMP, BLAS).
"""

from __future__ import annotations

import argparse
import functools
import math
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

ENGINES = ("imperative", "hybridized", "sol")
# name -> (native image size, whether the network runs at other sizes: a fixed final pooling or a
# dense layer sized for the native feature map needs it)
MODELS: dict[str, tuple[int, bool]] = {
    "resnet18_v1": (224, True), "resnet50_v1": (224, True), "resnet18_v2": (224, True),
    "mobilenet1.0": (224, True), "mobilenetv2_1.0": (224, True), "densenet121": (224, False),
    "squeezenet1.0": (224, False), "squeezenet1.1": (224, False), "vgg11_bn": (224, True), "alexnet": (224, True),
    "inceptionv3": (299, False),
}
QUICK = ("resnet18_v1", "mobilenetv2_1.0")


@dataclass
class Row:
    model: str
    batch: int
    image: int
    ms: dict[str, float] = field(default_factory=dict)  # engine -> median milliseconds
    failed: dict[str, str] = field(default_factory=dict)  # engine -> why
    max_diff: float | None = None  # max |sol - imperative| relative to max |imperative|
    optimize_s: float | None = None


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:80] if text else ''}".rstrip(": ")


def _net(name: str) -> Any:
    import mxnet as mx
    from mxnet.gluon.model_zoo import vision

    mx.random.seed(0)
    net = vision.get_model(name, pretrained=False)
    net.initialize(mx.init.Xavier(magnitude=2.0))
    return net


def _twin(net: Any, name: str, x: Any) -> Any:
    """A second instance of ``name`` with ``net``'s weights (copies, in MXNet's default layout)."""
    import tempfile

    from mxnet.gluon.model_zoo import vision

    twin = vision.get_model(name, pretrained=False)
    with tempfile.TemporaryDirectory() as tmp:  # new arrays, never run by MXNet
        net.save_parameters(f"{tmp}/w.params")
        twin.load_parameters(f"{tmp}/w.params")
    return twin


def _engines(name: str, x: Any, device: str | None, wanted: Sequence[str], row: Row) -> dict[str, Callable[[], Any]]:
    net = _net(name)
    net(x)  # deferred shapes known, before the twins copy the weights
    # Each engine gets its own instance, as a user runs either MXNet's block or sol's: MXNet
    # running a block writes its BatchNorm statistics (unchanged values, but new versions), which
    # sol's block would then compare with the weights it holds at its next call.
    fresh = _twin(net, name, x) if "sol" in wanted else None
    made: dict[str, Callable[[], Any]] = {}
    for engine in wanted:
        try:
            if engine == "imperative":
                made[engine] = functools.partial(net, x)
            elif engine == "hybridized":
                twin = _twin(net, name, x)
                twin.hybridize(static_alloc=True, static_shape=True)
                made[engine] = functools.partial(twin, x)
            elif engine == "sol":
                import sol.mxnet

                t0 = time.perf_counter()
                opt = sol.mxnet.optimize(fresh, x, device=device, fallback=False)
                row.optimize_s = time.perf_counter() - t0
                made[engine] = functools.partial(opt, x)
            else:
                raise ValueError(f"unknown engine {engine!r}; engines: {', '.join(ENGINES)}")
        except Exception as exc:  # a failing engine is a reported cell
            row.failed[engine] = _why(exc)
    return made


def measure(name: str, image: int, batch: int, device: str | None, engines: Sequence[str], warmup: int,
            repeats: int) -> Row:
    import mxnet as mx
    import numpy as np

    row = Row(name, batch, image)
    x = mx.nd.array(np.random.default_rng(0).uniform(-1, 1, (batch, 3, image, image)).astype("float32"))
    calls = _engines(name, x, device, engines, row)
    outputs: dict[str, np.ndarray] = {}
    for engine, call in list(calls.items()):
        try:
            for _ in range(warmup):
                outputs[engine] = call().asnumpy()
        except Exception as exc:
            row.failed[engine] = _why(exc)
            del calls[engine]
    times: dict[str, list[float]] = {e: [] for e in calls}
    for _ in range(repeats):
        for engine, call in calls.items():
            t0 = time.perf_counter()
            call().asnumpy()  # on the host: MXNet computes asynchronously
            times[engine].append(time.perf_counter() - t0)
    row.ms = {e: statistics.median(t) * 1e3 for e, t in times.items() if t}
    if "sol" in outputs and "imperative" in outputs:
        ref = outputs["imperative"]
        row.max_diff = float(np.max(np.abs(outputs["sol"] - ref)) / max(float(np.max(np.abs(ref))), 1e-30))
    return row


# --- report -------------------------------------------------------------------------------------


def mxnet_build() -> str:
    """MXNet's version and the build features that matter for CPU speed."""
    import mxnet as mx

    features = mx.runtime.Features()
    shown = [f"{f}={'on' if features.is_enabled(f) else 'off'}"
             for f in ("MKLDNN", "OPENMP", "BLAS_OPEN", "BLAS_MKL", "SSE", "F16C", "CUDA") if f in features]
    return f"MXNet {mx.__version__} ({', '.join(shown)})"


def geomean(values: Sequence[float]) -> float | None:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def table(rows: Sequence[Row], engines: Sequence[str]) -> str:
    others = [e for e in engines if e != "sol"]
    head = ["model", "image", "batch"] + [f"{e} (ms)" for e in engines]
    if "sol" in engines:
        head += [f"{e} / sol" for e in others] + ["max rel. diff", "optimize (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    ratios: dict[str, list[float]] = {e: [] for e in others}
    for r in rows:
        cells = [r.model, str(r.image), str(r.batch)]
        cells += [f"{r.ms[e]:.2f}" if e in r.ms else f"failed: {r.failed.get(e, 'not run')}" for e in engines]
        if "sol" in engines:
            sol_ms = r.ms.get("sol")
            for e in others:
                if sol_ms and e in r.ms:
                    ratios[e].append(r.ms[e] / sol_ms)
                    cells.append(f"{r.ms[e] / sol_ms:.2f}x")
                else:
                    cells.append("-")
            cells.append(f"{r.max_diff:.1e}" if r.max_diff is not None else "-")
            cells.append(f"{r.optimize_s:.1f}" if r.optimize_s is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    if "sol" in engines and rows:
        means = [geomean(ratios[e]) for e in others]
        cells = ["geomean", "", ""] + [""] * len(engines) + [f"{m:.2f}x" if m else "-" for m in means] + ["", ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", help=f"subset of: {' '.join(MODELS)}")
    parser.add_argument("--batch", nargs="+", type=int, help="batch sizes (default 1 8)")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), help=f"subset of: {' '.join(ENGINES)}")
    parser.add_argument("--image-size", type=int, help="image size for the networks that run at any size "
                        "(default: 224; --quick: 64)")
    parser.add_argument("--warmup", type=int, help="calls per engine before timing (default 3)")
    parser.add_argument("--repeats", type=int, help="timed rounds (default 15)")
    parser.add_argument("--device", help="sol device (default: sol's current device)")
    parser.add_argument("--threads", type=int, help="threads for MXNet and sol alike (OMP_NUM_THREADS)")
    parser.add_argument("--out", help="also write the Markdown table to this file")
    parser.add_argument("--quick", action="store_true", help="tiny settings: check that it works, not a measurement")
    args = parser.parse_args(argv)
    quick = args.quick
    batches = args.batch or ([1] if quick else [1, 8])
    warmup = args.warmup if args.warmup is not None else (1 if quick else 3)
    repeats = args.repeats if args.repeats is not None else (2 if quick else 15)
    if args.threads:  # before MXNet starts its engine and sol loads a compiled network
        os.environ["OMP_NUM_THREADS"] = str(args.threads)
        os.environ["MXNET_CPU_WORKER_NTHREADS"] = "1"
    names = args.models or list(QUICK if quick else MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; models: {', '.join(MODELS)}")
    size = args.image_size or (64 if quick else None)
    rows = []
    for name in names:
        native, any_size = MODELS[name]
        image = size if size and any_size else native
        for batch in batches:
            print(f"measuring {name} {image}x{image} batch {batch} ...", file=sys.stderr, flush=True)
            rows.append(measure(name, image, batch, args.device, args.engines, warmup, repeats))
    text = (f"MXNet model zoo, fp32, {mxnet_build()}; medians of {repeats} interleaved rounds after {warmup} "
            f"warm-up call(s){' (--quick: not a measurement)' if quick else ''}; ratios: engine time / sol time, "
            f"geomean over the rows\n\n" + table(rows, args.engines))
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return text


if __name__ == "__main__":
    main()
