"""Per-call cost of the TensorFlow frontend's variable check (README, "Reliability"): how long
``WeightsWatch.changed()`` takes on unchanged variables, per variable, for a few model sizes.
Medians in one process; run on an otherwise idle machine:
``.venv/bin/python benchmarks/watch_cost_tf.py``."""

from __future__ import annotations

import statistics
import time

import numpy as np
import tensorflow as tf

from sol_tensorflow.weights import WeightsWatch, view


def per_variable_us(count: int, calls: int = 500) -> float:
    variables = [tf.Variable(np.full((16, 16), float(i), np.float32), name=f"w{i}") for i in range(count)]
    watch = WeightsWatch([(v, view(v)) for v in variables])
    watch.changed()  # the first batched check traces its tf.function
    samples = []
    for _ in range(calls):
        t = time.perf_counter()
        watch.changed()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1e6 / count


def main() -> None:
    for count in (4, 16, 64, 256):
        print(f"{count:4d} variables  {per_variable_us(count):6.1f} us per variable per call")


if __name__ == "__main__":
    main()
