"""Keras models: sol against TensorFlow eager, ``tf.function`` and XLA, in one run.

    .venv/bin/python benchmarks/keras_speed.py                 # all models, batch 1 and 8
    .venv/bin/python benchmarks/keras_speed.py --quick         # tiny settings, to check it works
    .venv/bin/python benchmarks/keras_speed.py --models resnet50 --batch 8 --out table.md

The models are those of tests/tensorflow/test_networks.py (random weights, ``weights=None``): a
MobileNetV2, a ResNet50 and a DenseNet121 at a small image size, and a two-block transformer
encoder. Per model and batch size, each engine computes the same ``tf.Tensor`` input:

- ``eager``: ``model(x, training=False)``, Keras 3 in eager mode;
- ``tf.function``: the call traced once into a TensorFlow graph;
- ``XLA``: ``tf.function(jit_compile=True)``;
- ``sol``: ``sol.tensorflow.optimize(model, x)`` on the chosen device (``fallback=False``, so a
  model sol cannot compile whole is a reported failure, not a TensorFlow timing in disguise).

Timing: each engine is warmed up (tracing, compiling, first-call allocations), then the engines
are called in interleaved rounds (one call of each per round, so a noisy neighbour slows all of
them alike) and the median per engine is reported; ratios are other engine / sol (above 1: sol is
faster). An engine that fails is a table cell saying why, never the end of the run. Standalone on
purpose (TensorFlow, Keras and sol only), so it can become a suite of a benchmark harness later.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

ENGINES = ("eager", "tf.function", "XLA", "sol")


# --- models (as in tests/tensorflow/test_networks.py) -------------------------------------------


def _models(image: int) -> dict[str, tuple[Callable[[], Any], tuple[int, ...]]]:
    """Name -> (builder, input shape without the batch)."""
    import keras

    L = keras.layers

    def mobilenet_v2() -> Any:
        return keras.applications.MobileNetV2(weights=None, input_shape=(image, image, 3), alpha=0.35,
                                              classifier_activation=None)

    def resnet50() -> Any:
        return keras.applications.ResNet50(weights=None, input_shape=(image, image, 3), classifier_activation=None)

    def densenet121() -> Any:
        return keras.applications.DenseNet121(weights=None, input_shape=(image, image, 3),
                                              classifier_activation=None)

    def transformer_encoder() -> Any:
        inp = keras.Input((8, 16))
        x = inp
        for _ in range(2):
            h = L.MultiHeadAttention(num_heads=2, key_dim=8)(x, x)
            x = L.LayerNormalization(epsilon=1e-6)(x + h)
            f = L.Dense(16)(L.Dense(32, activation="gelu")(x))
            x = L.LayerNormalization(epsilon=1e-6)(x + L.Dropout(0.1)(f))
        return keras.Model(inp, L.Dense(4)(L.GlobalAveragePooling1D()(x)))

    return {
        "mobilenet_v2": (mobilenet_v2, (image, image, 3)),
        "resnet50": (resnet50, (image, image, 3)),
        "densenet121": (densenet121, (image, image, 3)),
        "transformer_encoder": (transformer_encoder, (8, 16)),
    }


# --- measuring ----------------------------------------------------------------------------------


@dataclass
class Row:
    model: str
    batch: int
    ms: dict[str, float] = field(default_factory=dict)  # engine -> median milliseconds
    failed: dict[str, str] = field(default_factory=dict)  # engine -> why
    max_diff: float | None = None  # max |sol - eager| relative to max |eager|
    optimize_s: float | None = None


def _engines(model: Any, x: Any, device: str | None, wanted: Sequence[str], row: Row) -> dict[str, Callable[[], Any]]:
    import tensorflow as tf

    made: dict[str, Callable[[], Any]] = {}
    for name in wanted:
        try:
            if name == "eager":
                made[name] = lambda: model(x, training=False)
            elif name == "tf.function":
                fn = tf.function(lambda t: model(t, training=False))
                made[name] = lambda fn=fn: fn(x)
            elif name == "XLA":
                xla = tf.function(lambda t: model(t, training=False), jit_compile=True)
                made[name] = lambda xla=xla: xla(x)
            elif name == "sol":
                import sol.tensorflow

                t0 = time.perf_counter()
                opt = sol.tensorflow.optimize(model, x, device=device, fallback=False)
                row.optimize_s = time.perf_counter() - t0
                made[name] = lambda opt=opt: opt(x)
            else:
                raise ValueError(f"unknown engine {name!r}; engines: {', '.join(ENGINES)}")
        except Exception as exc:  # a failing engine is a reported cell
            row.failed[name] = _why(exc)
    return made


def _why(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0][:80] if text else ''}".rstrip(": ")


def measure(name: str, build: Callable[[], Any], shape: tuple[int, ...], batch: int, device: str | None,
            engines: Sequence[str], warmup: int, repeats: int) -> Row:
    import keras
    import numpy as np
    import tensorflow as tf

    row = Row(name, batch)
    keras.utils.set_random_seed(0)
    model = build()
    x = tf.constant(np.random.default_rng(0).uniform(-1, 1, (batch, *shape)).astype("float32"))
    calls = _engines(model, x, device, engines, row)
    outputs: dict[str, Any] = {}
    for engine, call in list(calls.items()):
        try:
            for _ in range(warmup):
                outputs[engine] = call()
        except Exception as exc:
            row.failed[engine] = _why(exc)
            del calls[engine]
    times: dict[str, list[float]] = {e: [] for e in calls}
    for _ in range(repeats):
        for engine, call in calls.items():
            t0 = time.perf_counter()
            out = call()
            _ = out.numpy()  # the result is on the host, for every engine alike
            times[engine].append(time.perf_counter() - t0)
    row.ms = {e: statistics.median(t) * 1e3 for e, t in times.items() if t}
    if "sol" in outputs and "eager" in outputs:
        ref = np.asarray(outputs["eager"])
        row.max_diff = float(np.max(np.abs(np.asarray(outputs["sol"]) - ref)) / max(float(np.max(np.abs(ref))), 1e-30))
    return row


# --- report -------------------------------------------------------------------------------------


def table(rows: Sequence[Row], engines: Sequence[str]) -> str:
    others = [e for e in engines if e != "sol"]
    head = ["model", "batch"] + [f"{e} (ms)" for e in engines]
    if "sol" in engines:
        head += [f"{e} / sol" for e in others] + ["max rel. diff", "optimize (s)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    for r in rows:
        cells = [r.model, str(r.batch)]
        cells += [f"{r.ms[e]:.2f}" if e in r.ms else f"failed: {r.failed.get(e, 'not run')}" for e in engines]
        if "sol" in engines:
            sol_ms = r.ms.get("sol")
            cells += [f"{r.ms[e] / sol_ms:.2f}x" if sol_ms and e in r.ms else "-" for e in others]
            cells.append(f"{r.max_diff:.1e}" if r.max_diff is not None else "-")
            cells.append(f"{r.optimize_s:.1f}" if r.optimize_s is not None else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", help="subset of: mobilenet_v2 resnet50 densenet121 transformer_encoder")
    parser.add_argument("--batch", nargs="+", type=int, help="batch sizes (default 1 8)")
    parser.add_argument("--engines", nargs="+", default=list(ENGINES), help=f"subset of: {' '.join(ENGINES)}")
    parser.add_argument("--image-size", type=int, help="image height and width (default 64; --quick: 32)")
    parser.add_argument("--warmup", type=int, help="calls per engine before timing (default 3)")
    parser.add_argument("--repeats", type=int, help="timed rounds (default 20)")
    parser.add_argument("--device", help="sol device (default: sol's current device)")
    parser.add_argument("--threads", type=int, help="threads for TensorFlow and sol (OMP_NUM_THREADS) alike")
    parser.add_argument("--out", help="also write the Markdown table to this file")
    parser.add_argument("--quick", action="store_true", help="tiny settings: check that it works, not a measurement")
    args = parser.parse_args(argv)
    quick = args.quick
    batches = args.batch or ([1] if quick else [1, 8])
    image = args.image_size or (32 if quick else 64)
    warmup = args.warmup if args.warmup is not None else (1 if quick else 3)
    repeats = args.repeats if args.repeats is not None else (2 if quick else 20)
    if args.threads:
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before sol loads a compiled network
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    if args.threads:
        tf.config.threading.set_intra_op_parallelism_threads(args.threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    models = _models(image)
    names = args.models or list(models)
    unknown = [n for n in names if n not in models]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; models: {', '.join(models)}")
    rows = []
    for name in names:
        build, shape = models[name]
        for batch in batches:
            print(f"measuring {name} batch {batch} ...", file=sys.stderr, flush=True)
            rows.append(measure(name, build, shape, batch, args.device, args.engines, warmup, repeats))
    text = (f"Keras models, fp32, image {image}x{image}, medians of {repeats} interleaved rounds after "
            f"{warmup} warm-up call(s){' (--quick: not a measurement)' if quick else ''}; ratios: engine time / sol "
            f"time\n\n" + table(rows, args.engines))
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")
    return text


if __name__ == "__main__":
    main()
