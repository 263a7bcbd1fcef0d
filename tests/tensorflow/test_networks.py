"""Whole Keras networks (no downloaded weights) against TensorFlow's own output (fp32, rtol 1e-3)."""

from __future__ import annotations

from collections.abc import Callable

import keras
import numpy as np
import pytest
from tf_helpers import assert_close

import sol

L = keras.layers
RTOL = 1e-3


def small_cnn() -> keras.Model:
    return keras.Sequential([
        keras.Input((16, 16, 3)), L.Conv2D(8, 3, padding="same"), L.BatchNormalization(), L.ReLU(),
        L.MaxPooling2D(), L.Conv2D(16, 3, padding="same", activation="relu"), L.GlobalAveragePooling2D(),
        L.Dropout(0.2), L.Dense(10, activation="softmax")])


def mlp() -> keras.Model:
    return keras.Sequential([keras.Input((20,)), L.Dense(32, activation="relu"), L.Dense(32, activation="tanh"),
                             L.Dense(5)])


def mobilenet_v2() -> keras.Model:
    return keras.applications.MobileNetV2(weights=None, input_shape=(32, 32, 3), alpha=0.35,
                                          classifier_activation=None)


def resnet50() -> keras.Model:
    return keras.applications.ResNet50(weights=None, input_shape=(32, 32, 3), classifier_activation=None)


def densenet121() -> keras.Model:
    return keras.applications.DenseNet121(weights=None, input_shape=(32, 32, 3), classifier_activation=None)


def transformer_encoder() -> keras.Model:
    """Two post-norm encoder blocks: multi-head self-attention and a GELU feed-forward."""
    inp = keras.Input((8, 16))
    x = inp
    for _ in range(2):
        h = L.MultiHeadAttention(num_heads=2, key_dim=8)(x, x)
        x = L.LayerNormalization(epsilon=1e-6)(x + h)
        f = L.Dense(16)(L.Dense(32, activation="gelu")(x))
        x = L.LayerNormalization(epsilon=1e-6)(x + L.Dropout(0.1)(f))
    return keras.Model(inp, L.Dense(4)(L.GlobalAveragePooling1D()(x)))


NETWORKS: dict[str, tuple[Callable[[], keras.Model], tuple[int, ...]]] = {
    "mlp": (mlp, (4, 20)),
    "small_cnn": (small_cnn, (2, 16, 16, 3)),
    "transformer_encoder": (transformer_encoder, (2, 8, 16)),
    "mobilenet_v2": (mobilenet_v2, (2, 32, 32, 3)),
    "resnet50": (resnet50, (2, 32, 32, 3)),
    "densenet121": (densenet121, (2, 32, 32, 3)),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(NETWORKS))
def test_network_matches_tensorflow(device: str, name: str) -> None:
    build, shape = NETWORKS[name]
    keras.utils.set_random_seed(0)
    model = build()
    x = np.random.default_rng(0).uniform(-1, 1, shape).astype("float32")
    opt = sol.optimize(model, x, device=device, fallback=False)
    assert not opt.fallback_ops
    assert_close(opt(x).numpy(), model(x, training=False).numpy(), RTOL)
