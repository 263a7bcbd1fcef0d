"""NaN and inf as TensorFlow has them where its kernels differ from PyTorch's (measured on
TensorFlow 2.21, CPU, eager and tf.function alike): max pooling skips NaN and starts from the
lowest float (a window of NaN and -inf gives -3.4028235e38), Softmax keeps a NaN to its own entry
(the rest of the row 0), and LogSoftmax makes the row NaN. sol's converters set the core ops'
attributes (max_pool2d nan="ignore", softmax nan="element"); the results must be TensorFlow's.
(TensorFlow with XLA, jit_compile=True, gives a whole NaN row for Softmax: sol follows the default
runtime, as the model would run without sol.)"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

import sol

L = keras.layers
nan, inf = np.nan, np.inf


def _nan_equal(got: np.ndarray, want: np.ndarray, what: str) -> None:
    assert got.shape == want.shape, f"{what}: {got.shape} vs {want.shape}"
    assert np.array_equal(np.isnan(got), np.isnan(want)), f"{what}: NaN at\n{np.isnan(got)}\nTF:\n{np.isnan(want)}"
    finite = ~np.isnan(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=1e-5, atol=1e-6, err_msg=what)


def _image() -> np.ndarray:
    x = np.random.default_rng(3).standard_normal((2, 6, 6, 3)).astype("float32")
    x[0, 0, 0, 0] = nan  # NaN beside numbers
    x[0, 2:4, 2:4, 1] = nan  # a window of NaN only
    x[1, 0:2, 0:2, 2] = -inf  # a window of -inf only
    x[1, 4, 4, 0] = inf
    x[1, 2, 3, 1] = nan
    x[1, 3, 2, 1] = -inf  # NaN and -inf in one window
    return x


def test_max_pooling_skips_nan_as_tensorflow(device: str) -> None:
    model = keras.Sequential([keras.Input((6, 6, 3)), L.MaxPooling2D(2), L.MaxPooling2D(3, 1, padding="same")])
    x = _image()
    first = keras.Sequential([keras.Input((6, 6, 3)), L.MaxPooling2D(2)])
    want_first = first(x).numpy()
    assert want_first[0, 1, 1, 1] == np.finfo(np.float32).min and want_first[1, 0, 0, 2] == np.finfo(np.float32).min
    _nan_equal(sol.optimize(first, x, device=device, fallback=False)(x).numpy(), want_first, "MaxPooling2D(2)")
    _nan_equal(sol.optimize(model, x, device=device, fallback=False)(x).numpy(), model(x).numpy(),
               "MaxPooling2D(2) then SAME 3x3")


def test_global_max_pooling_propagates_nan_as_tensorflow(device: str) -> None:
    """TensorFlow's reduce_max (GlobalMaxPooling2D) propagates NaN, unlike its MaxPool."""
    model = keras.Sequential([keras.Input((6, 6, 3)), L.GlobalMaxPooling2D()])
    x = _image()
    want = model(x).numpy()
    assert np.isnan(want[0, 0])
    _nan_equal(sol.optimize(model, x, device=device, fallback=False)(x).numpy(), want, "GlobalMaxPooling2D")


def test_softmax_keeps_nan_to_its_entry_as_tensorflow(device: str) -> None:
    rows = np.array([[nan, 1, 2, 3], [1, nan, 3, 2], [inf, 1, 2, 3], [-inf, 1, 2, 3], [-inf] * 4,
                     [inf, inf, 1, 0], [nan] * 4, [0.5, 1, 2, 3]], "float32")
    x = np.concatenate([rows, rows[:, ::-1]], axis=1)  # rows of 8: NaN in the middle of a row too

    @tf.function
    def f(t: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        return tf.nn.softmax(t * 1.0), tf.nn.log_softmax(t * 1.0)

    want = [w.numpy() for w in f(x)]
    assert np.array_equal(np.isnan(want[0][0]), [True] + [False] * 6 + [True])  # [nan, 0, ..., 0, nan]
    got = sol.optimize(f, x, device=device, fallback=False)(x)
    _nan_equal(got[0].numpy(), want[0], "tf.nn.softmax")
    _nan_equal(got[1].numpy(), want[1], "tf.nn.log_softmax")


def test_keras_softmax_over_channels_keeps_nan_to_its_entry(device: str) -> None:
    model = keras.Sequential([keras.Input((4, 4, 5)), L.Conv2D(5, 1), L.Softmax()])
    x = np.random.default_rng(4).standard_normal((2, 4, 4, 5)).astype("float32")
    x[0, 1, 1, :] = nan
    x[1, 2, 2, 3] = inf
    _nan_equal(sol.optimize(model, x, device=device, fallback=False)(x).numpy(), model(x).numpy(),
               "Conv2D then Softmax")


def test_math_functions_at_special_values_as_tensorflow(device: str) -> None:
    """Trigonometric, hyperbolic, rounding and classifying ops at NaN, +-inf, -0.0, halves and
    outside their domains (tf.round and tf.math.rint round half to even; tf.sign(NaN) is NaN)."""
    x = np.array([nan, inf, -inf, -0.0, 0.0, 0.5, -0.5, 1.5, 2.5, -2.5, 1.0, -1.0, 0.99, 3.7, -3.7, 1e30],
                 "float32")
    fns = [tf.sin, tf.cos, tf.tan, tf.asin, tf.acos, tf.atan, tf.sinh, tf.cosh, tf.asinh, tf.acosh, tf.atanh,
           tf.floor, tf.math.ceil, tf.round, tf.math.rint, tf.sign]

    @tf.function
    def f(t: tf.Tensor) -> tuple[tf.Tensor, ...]:
        return (*(fn(t) for fn in fns), tf.math.is_nan(t), tf.math.is_inf(t))

    want = [w.numpy() for w in f(x)]
    got = [g.numpy() for g in sol.optimize(f, x, device=device, fallback=False)(x)]
    for fn, g, w in zip([*fns, tf.math.is_nan, tf.math.is_inf], got, want):
        _nan_equal(g, w, fn.__name__)
