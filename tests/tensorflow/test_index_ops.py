"""Token-model ops in the TensorFlow frontend (sol_tensorflow/ops/index.py) against TensorFlow:
Keras ``Embedding`` (GatherV2) with int32 and int64 ids, ``tf.nn.embedding_lookup`` on a
variable (ResourceGather), comparisons, logical ops, Select/SelectV2, ArgMax/ArgMin, Max/Min."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from tf_helpers import assert_close

import sol
from sol_tensorflow.importer import SolFallbackWarning

L = keras.layers
RTOL = 1e-4


def _ids(high: int, *shape: int, dtype: str = "int64", seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, high, shape).astype(dtype)


def _rand(*shape: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal(shape).astype("float32")


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_keras_embedding_model(device: str, dtype: str) -> None:
    """A small Keras token classifier: Embedding, a masked mean over positions, Dense."""
    keras.utils.set_random_seed(3)
    ids_in = keras.Input((12,), dtype=dtype)
    x = L.Embedding(50, 8)(ids_in)
    x = L.Dense(16, activation="relu")(x)
    x = L.GlobalAveragePooling1D()(x)
    model = keras.Model(ids_in, L.Dense(4)(x))
    ids = _ids(50, 3, 12, dtype=dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SolFallbackWarning)  # a fallback would hide what is tested
        opt = sol.optimize(model, ids, device=device, fallback=False)
    assert_close(opt(ids).numpy(), model(ids, training=False).numpy(), RTOL)
    other = _ids(50, 3, 12, dtype=dtype, seed=1)
    assert_close(opt(other).numpy(), model(other, training=False).numpy(), RTOL)


def test_embedding_lookup_on_a_variable(device: str) -> None:
    table = tf.Variable(_rand(10, 3, seed=4))

    @tf.function(input_signature=[tf.TensorSpec((2, 4), tf.int32)])
    def fn(i: tf.Tensor) -> tf.Tensor:
        return tf.nn.embedding_lookup(table, i) * 2.0

    opt = sol.optimize(fn, device=device, fallback=False)
    ids = _ids(10, 2, 4, dtype="int32")
    assert_close(opt(ids).numpy(), fn(ids).numpy(), RTOL)


def test_gather_axis_and_out_of_range(device: str) -> None:
    @tf.function(input_signature=[tf.TensorSpec((3, 6, 2), tf.float32), tf.TensorSpec((4,), tf.int64)])
    def fn(x: tf.Tensor, i: tf.Tensor) -> tf.Tensor:
        return tf.gather(x, i, axis=1)

    opt = sol.optimize(fn, device=device, fallback=False)
    x, ids = _rand(3, 6, 2), np.array([5, 0, 0, 3], dtype="int64")
    assert_close(opt(x, ids).numpy(), fn(x, ids).numpy(), RTOL)
    with pytest.raises(IndexError, match="index 6 is out of range"):
        opt(x, np.array([1, 6, 0, 0], dtype="int64"))


def test_comparisons_logical_select(device: str) -> None:
    @tf.function(input_signature=[tf.TensorSpec((3, 5), tf.float32), tf.TensorSpec((3, 5), tf.float32),
                                  tf.TensorSpec((5,), tf.int64)])
    def fn(a: tf.Tensor, b: tf.Tensor, i: tf.Tensor) -> list[tf.Tensor]:
        compare = [a == b, a != b, a < b, a <= b, a > b, a >= b, i > 2]
        mask = tf.logical_and(a > 0, tf.logical_not(b > 0.5)) | (b < -1)
        return compare + [mask, tf.where(mask, a, b), tf.where(a > b, a, 0.0),
                          tf.compat.v1.where(a[:, 0] > 0, a, b)]

    opt = sol.optimize(fn, device=device, fallback=False)
    a = np.round(_rand(3, 5, seed=1))
    b = np.round(_rand(3, 5, seed=2))  # rounded: some elements are equal
    i = _ids(5, 5)
    for got, ref in zip(opt(a, b, i), fn(a, b, i)):
        assert_close(got.numpy(), ref.numpy(), RTOL)


def test_argmax_argmin_max_min(device: str) -> None:
    @tf.function(input_signature=[tf.TensorSpec((4, 6), tf.float32)])
    def fn(x: tf.Tensor) -> list[tf.Tensor]:
        return [tf.argmax(x, axis=1), tf.argmin(x, axis=0, output_type=tf.int32), tf.reduce_max(x, axis=0),
                tf.reduce_min(x, axis=1, keepdims=True), tf.reduce_max(x)]

    opt = sol.optimize(fn, device=device, fallback=False)
    x = np.round(_rand(4, 6, seed=5))  # ties: the first index wins, as in TensorFlow
    for got, ref in zip(opt(x), fn(x)):
        assert_close(got.numpy(), ref.numpy(), RTOL)
