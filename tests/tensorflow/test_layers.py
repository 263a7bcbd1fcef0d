"""Keras layers beyond the first slice (sol_tensorflow.ops: spatial, layout, elementwise): transposed convolutions,
up-sampling and resizing, ELU/SELU/softsign; each against TensorFlow (rtol 1e-4), compiled whole."""

from __future__ import annotations

import warnings
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from tf_helpers import assert_close

import sol
from sol_tensorflow.importer import SolFallbackWarning

L = keras.layers
RTOL = 1e-4


def _rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


def _check(model: Any, x: Any, device: str, ops: set[str], rtol: float = RTOL) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error", SolFallbackWarning)
        opt = sol.optimize(model, x, device=device, fallback=False)
    assert ops <= {n.op for n in opt.program.info["plan"].graph.nodes}  # compiled as the op meant
    for g, r in zip(tf.nest.flatten(opt(x)), tf.nest.flatten(model(x, training=False))):
        assert_close(g.numpy(), r.numpy(), rtol)


def test_conv2d_transpose_padding_strides_output_padding(device: str) -> None:
    keras.utils.set_random_seed(11)
    inp = keras.Input((5, 6, 3))
    outs = [L.Conv2DTranspose(4, 3, strides=2, padding="same")(inp),
            L.Conv2DTranspose(4, (3, 2), strides=(2, 3), padding="valid", use_bias=False)(inp),
            L.Conv2DTranspose(2, 4, strides=2, padding="same", activation="relu")(inp),  # even kernel
            L.Conv2DTranspose(3, 3, strides=3, padding="same")(inp),  # SAME leaves a row over
            L.Conv2DTranspose(2, 3, strides=2, padding="valid", output_padding=1)(inp)]
    _check(keras.Model(inp, outs), _rand(2, 5, 6, 3), device, {"conv_transpose2d"})


def test_conv1d_transpose(device: str) -> None:
    keras.utils.set_random_seed(12)
    model = keras.Sequential([keras.Input((7, 3)), L.Conv1DTranspose(4, 3, strides=2, padding="same")])
    _check(model, _rand(2, 7, 3), device, {"conv_transpose2d"})


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_upsampling2d_in_a_decoder(device: str, interpolation: str) -> None:
    keras.utils.set_random_seed(13)
    model = keras.Sequential([keras.Input((5, 4, 3)), L.Conv2D(4, 3, padding="same", activation="relu"),
                              L.UpSampling2D((2, 3), interpolation=interpolation), L.Conv2D(2, 3, padding="same")])
    _check(model, _rand(2, 5, 4, 3), device, {"concat"} if interpolation == "nearest" else {"resize2d"})


@pytest.mark.parametrize("interpolation", ["nearest", "bilinear"])
def test_resizing_up_and_down(device: str, interpolation: str) -> None:
    inp = keras.Input((9, 7, 2))
    model = keras.Model(inp, [L.Resizing(13, 11, interpolation=interpolation)(inp),
                              L.Resizing(4, 5, interpolation=interpolation)(inp)])
    _check(model, _rand(2, 9, 7, 2), device, {"resize2d"})


def test_tf_image_resize_align_corners_and_legacy_nearest(device: str) -> None:
    @tf.function(input_signature=[tf.TensorSpec((1, 5, 6, 2), tf.float32)])
    def fn(t: tf.Tensor) -> list[tf.Tensor]:
        return [tf.compat.v1.image.resize_bilinear(t, (9, 4), align_corners=True),
                tf.compat.v1.image.resize_nearest_neighbor(t, (10, 12)),
                tf.compat.v1.image.resize_nearest_neighbor(t, (7, 9))]

    with warnings.catch_warnings():
        warnings.simplefilter("error", SolFallbackWarning)
        opt = sol.optimize(fn, device=device, fallback=False)
    x = _rand(1, 5, 6, 2)
    for g, r in zip(opt(x), fn(x)):
        assert_close(g.numpy(), r.numpy(), RTOL)


def test_legacy_bilinear_resize_is_reported_not_approximated(device: str) -> None:
    fn = tf.function(lambda t: tf.compat.v1.image.resize_bilinear(t, (9, 4)),
                     input_signature=[tf.TensorSpec((1, 5, 6, 2), tf.float32)])
    with pytest.raises(sol.errors.UnsupportedOpError, match="legacy bilinear"):
        sol.optimize(fn, device=device, fallback=False)


def test_elu_selu_softsign(device: str) -> None:
    inp = keras.Input((6, 5))
    outs = [L.Activation(a)(inp) for a in ("elu", "selu", "softsign")] + [L.ELU(alpha=0.5)(inp)]
    x = _rand(3, 6, 5) * 4
    x[0, 0, :3] = [0.0, 80.0, -80.0]  # the branches' edges: no overflow, exact zero
    _check(keras.Model(inp, outs), x, device, {"exp"})
