"""Keras convolutions are channels-last already. Imported, each one sits between a transpose to
NCHW and one back (the IR's convolution is NCHW); on x86 with AVX-512, whose convolutions
compute channels-last, those transposes are the channels-last region's own edges
(sol.planner.layout): the network runs without transposing any tensor, the global average
pooling included, and matches Keras."""

from __future__ import annotations

import keras
import numpy as np
import pytest
from tf_helpers import assert_close

import sol

L = keras.layers


@pytest.fixture(autouse=True)
def _default_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SOL_X86_LAYOUT", raising=False)


def test_keras_cnn_runs_without_a_transpose() -> None:
    from sol_x86.device import has_avx512

    if not has_avx512():
        pytest.skip("no AVX-512 on this CPU: the x86 device computes NCHW")
    keras.utils.set_random_seed(3)
    inp = keras.Input((17, 15, 3))
    h = L.Conv2D(16, 3, padding="same", activation="relu")(inp)
    h = L.MaxPooling2D()(h)
    h = L.Concatenate()([h, L.Conv2D(8, 1)(h)])
    h = L.Conv2D(12, 3)(h)
    model = keras.Model(inp, [L.GlobalAveragePooling2D()(h), h])
    x = np.random.default_rng(3).normal(size=(2, 17, 15, 3)).astype("float32")
    plan = sol.explain(model, x, device="x86").plan
    ops = [n.op for g in plan.groups for n in g.nodes]
    assert "transpose" not in ops and ops.count("conv2d_nhwc") == 3, ops
    opt = sol.optimize(model, x, device="x86", fallback=False)
    for got, want in zip(opt(x), model(x)):
        assert_close(np.asarray(got), np.asarray(want), 1e-4)
