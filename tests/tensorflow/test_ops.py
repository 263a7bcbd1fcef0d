"""Op-level tests: small Keras models / tf.functions per op family, against TensorFlow (rtol 1e-4)."""

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


def _check(model: Any, x: Any, device: str, rtol: float = RTOL) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("error", SolFallbackWarning)  # a fallback would hide what is tested
        opt = sol.optimize(model, x, device=device, fallback=False)
    ref = model(x, training=False)
    got = opt(x)
    for g, r in zip(tf.nest.flatten(got), tf.nest.flatten(ref)):
        assert_close(g.numpy(), r.numpy(), rtol)
    return opt


def _seq(input_shape: tuple[int, ...], *layers: Any) -> keras.Model:
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input(input_shape), *layers])


# --- convolutions ---------------------------------------------------------------------------


CONVS = [dict(padding="same"), dict(padding="valid", strides=2), dict(padding="same", strides=2),
         dict(padding="same", dilation_rate=2), dict(padding="valid", dilation_rate=(2, 3))]


def test_conv2d_padding_strides_dilation(device: str) -> None:
    keras.utils.set_random_seed(7)
    inp = keras.Input((11, 10, 3))
    outs = [L.Conv2D(4, (2, 3), padding=c["padding"], use_bias=False)(L.Conv2D(5, 3, **c)(inp)) for c in CONVS]
    _check(keras.Model(inp, outs), _rand(2, 11, 10, 3), device)


def test_depthwise_conv2d(device: str) -> None:
    keras.utils.set_random_seed(8)
    inp = keras.Input((9, 9, 4))
    outs = [L.ReLU(max_value=6.0)(L.DepthwiseConv2D(3, strides=s, padding="same", depth_multiplier=m)(inp))
            for s, m in ((1, 1), (2, 2))]
    outs.append(L.DepthwiseConv2D(3, dilation_rate=2)(inp))
    _check(keras.Model(inp, outs), _rand(1, 9, 9, 4), device)


def test_batch_normalization_with_trained_statistics(device: str) -> None:
    model = _seq((6, 6, 5), L.Conv2D(5, 1), L.BatchNormalization(epsilon=1e-3), L.Activation("relu"))
    bn = model.layers[1]
    rng = np.random.default_rng(3)
    bn.set_weights([rng.uniform(0.5, 1.5, 5).astype("float32"), rng.standard_normal(5).astype("float32"),
                    rng.standard_normal(5).astype("float32"), rng.uniform(0.5, 2, 5).astype("float32")])
    _check(model, _rand(2, 6, 6, 5), device)


def test_fused_batch_norm_op(device: str) -> None:
    rng = np.random.default_rng(4)
    stats = [tf.constant(rng.uniform(0.5, 1.5, 3).astype("float32")) for _ in range(4)]

    @tf.function(input_signature=[tf.TensorSpec((2, 5, 5, 3), tf.float32)])
    def fn(x: tf.Tensor) -> tf.Tensor:
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(x, stats[0], stats[1], stats[2], stats[3], epsilon=1e-3,
                                                   is_training=False)
        return tf.nn.relu(y)

    opt = sol.optimize(fn, device=device, fallback=False)
    x = _rand(2, 5, 5, 3)
    assert_close(opt(x).numpy(), fn(x).numpy(), RTOL)


# --- pooling --------------------------------------------------------------------------------


POOLS = [L.MaxPooling2D(3, 2, padding="same"), L.MaxPooling2D(2), L.AveragePooling2D(3, 2, padding="same"),
         L.AveragePooling2D(2, 1), L.AveragePooling2D(2, 2, padding="same"), L.GlobalAveragePooling2D(),
         L.GlobalMaxPooling2D(), L.GlobalMaxPooling2D(keepdims=True)]


def test_pooling_same_and_valid(device: str) -> None:
    """Max and average pooling, TensorFlow's SAME (average over the pixels inside only) and VALID."""
    keras.utils.set_random_seed(6)
    inp = keras.Input((7, 8, 3))
    x = L.Conv2D(3, 1)(inp)
    _check(keras.Model(inp, [pool(x) for pool in POOLS]), _rand(2, 7, 8, 3), device)


# --- dense and activations ------------------------------------------------------------------


ACTIVATIONS = ["relu", "relu6", "sigmoid", "tanh", "gelu", "swish", "hard_swish", "softmax", "leaky_relu"]


def test_dense_with_each_activation(device: str) -> None:
    """One branch per activation (one compile for all of them)."""
    keras.utils.set_random_seed(5)
    inp = keras.Input((12,))
    outs = [L.Dense(3)(L.Dense(8, activation=a)(inp)) for a in ACTIVATIONS]
    _check(keras.Model(inp, outs), _rand(4, 12), device)


def test_gelu_tanh_approximation_and_layer_norm(device: str) -> None:
    model = _seq((5, 12), L.Dense(8), L.Lambda(lambda t: keras.activations.gelu(t, approximate=True)),
                 L.LayerNormalization(), L.Dropout(0.5))
    _check(model, _rand(2, 5, 12), device)


# --- element-wise with broadcasting, merges ---------------------------------------------------


def test_binary_ops_broadcasting(device: str) -> None:
    b = tf.constant(np.abs(_rand(1, 4, 1, seed=2)) + 0.5)
    ops = [tf.add, tf.subtract, tf.multiply, tf.divide, tf.maximum, tf.minimum]

    @tf.function(input_signature=[tf.TensorSpec((2, 3, 4, 5), tf.float32)])
    def fn(x: tf.Tensor) -> list[tf.Tensor]:
        return [op(op(x, b), x[:, :1]) for op in ops]

    opt = sol.optimize(fn, device=device, fallback=False)
    x = _rand(2, 3, 4, 5)
    for got, ref in zip(opt(x), fn(x)):
        assert_close(got.numpy(), ref.numpy(), RTOL)


def test_merge_layers_on_images(device: str) -> None:
    keras.utils.set_random_seed(2)
    inp = keras.Input((6, 6, 4))
    a = L.Conv2D(4, 3, padding="same")(inp)
    b = L.Conv2D(4, 1)(inp)
    x = L.Concatenate()([L.Add()([a, b]), L.Multiply()([a, b]), L.Subtract()([a, inp])])
    x = L.ZeroPadding2D(((1, 0), (2, 1)))(x)
    x = L.Cropping2D(((1, 1), (0, 2)))(x)
    x = L.Permute((3, 1, 2))(x)
    out = L.Reshape((12, -1))(x)
    _check(keras.Model(inp, out), _rand(2, 6, 6, 4), device)


# --- layout and shape ops -------------------------------------------------------------------


def test_reshape_squeeze_expand_slice_transpose(device: str) -> None:
    @tf.function(input_signature=[tf.TensorSpec((2, 6, 4), tf.float32)])
    def fn(x: tf.Tensor) -> tf.Tensor:
        y = tf.expand_dims(x, 1)[:, :, 1:5:2, :]
        y = tf.squeeze(y, 1)
        y = tf.transpose(y, (0, 2, 1))
        z = tf.concat([y, tf.reshape(x[:, 0], (2, 4, 1))], axis=2)
        return tf.pad(z, [[0, 0], [1, 2], [0, 1]]) + tf.reduce_mean(tf.pad(z, [[0, 0], [1, 2], [0, 0]]), axis=-1,
                                                                   keepdims=True)

    opt = sol.optimize(fn, device=device, fallback=False)
    x = _rand(2, 6, 4)
    assert_close(opt(x).numpy(), fn(x).numpy(), RTOL)


def test_batch_matmul_and_einsum(device: str) -> None:
    w = tf.constant(_rand(4, 3, 5, seed=5))

    @tf.function(input_signature=[tf.TensorSpec((2, 6, 4), tf.float32), tf.TensorSpec((2, 5, 6), tf.float32)])
    def fn(a: tf.Tensor, b: tf.Tensor) -> tf.Tensor:
        q = tf.einsum("abc,cde->abde", a, w)  # (2, 6, 3, 5)
        s = tf.einsum("abde,aeb->adb", q, b)  # (2, 3, 6)
        return tf.matmul(s, a) + tf.matmul(b, a[:, :5], transpose_a=True)[:, :3]

    opt = sol.optimize(fn, device=device, fallback=False)
    a, b = _rand(2, 6, 4), _rand(2, 5, 6, seed=1)
    assert_close(opt(a, b).numpy(), fn(a, b).numpy(), RTOL)


def test_multi_head_attention(device: str) -> None:
    keras.utils.set_random_seed(3)
    inp = keras.Input((7, 16))
    out = L.MultiHeadAttention(num_heads=2, key_dim=8)(inp, inp)
    _check(keras.Model(inp, out), _rand(2, 7, 16), device)


# --- unsupported ops --------------------------------------------------------------------------


def _unsupported_model() -> keras.Model:
    """A model with an op sol has no converter for: a running sum (TensorFlow's Cumsum)."""
    keras.utils.set_random_seed(4)
    inp = keras.Input((5,))
    x = L.Lambda(lambda t: keras.ops.cumsum(t, axis=1), name="running_total")(L.Dense(4)(inp))
    return keras.Model(inp, L.Dense(2)(x))


def test_unsupported_op_runs_in_tensorflow_with_one_warning(device: str) -> None:
    model = _unsupported_model()
    x = _rand(2, 5)
    with pytest.warns(SolFallbackWarning) as record:
        opt = sol.optimize(model, x, device=device)
    assert len([w for w in record if issubclass(w.category, SolFallbackWarning)]) == 1
    message = str(record[0].message)
    assert "running_total" in message and "TensorFlow runs them and sol compiles the rest" in message
    assert opt.fallback_ops
    assert_close(opt(x).numpy(), model(x).numpy(), RTOL)


def test_unsupported_op_without_fallback_raises_naming_op_and_layer(device: str) -> None:
    with pytest.raises(sol.errors.UnsupportedOpError, match=r"op '[^']*running_total") as info:
        sol.optimize(_unsupported_model(), _rand(2, 5), device=device, fallback=False)
    assert info.value.op and info.value.op in str(info.value)
