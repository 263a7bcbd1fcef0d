"""The optimized object behaves like the Keras model for a Keras user."""

from __future__ import annotations

import keras
import numpy as np
import pytest
import tensorflow as tf
from tf_helpers import assert_close

import sol
from sol_tensorflow import SolKerasModel

L = keras.layers


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((6, 6, 2)), L.Conv2D(4, 3, activation="relu"), L.Flatten(), L.Dense(3)])


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((2, 6, 6, 2)).astype("float32")


@pytest.fixture(scope="module")
def opt(model: keras.Model, x: np.ndarray) -> SolKerasModel:
    return sol.optimize(model, x, device="x86")


def test_from_sol_tensorflow_import_optimize(model: keras.Model, x: np.ndarray) -> None:
    from sol.tensorflow import optimize

    out = optimize(model, x.shape, device="x86")  # a shape as example input
    assert isinstance(out, SolKerasModel) and isinstance(out, keras.layers.Layer)
    assert_close(out(x).numpy(), model(x).numpy(), 1e-4)


def test_callable_on_numpy_and_tensors_returning_tensors(opt: SolKerasModel, model: keras.Model,
                                                         x: np.ndarray) -> None:
    for given in (x, tf.constant(x)):
        out = opt(given)
        assert isinstance(out, tf.Tensor)
        assert_close(out.numpy(), model(x).numpy(), 1e-4)


def test_inside_tf_function(opt: SolKerasModel, model: keras.Model, x: np.ndarray) -> None:
    fn = tf.function(lambda t: tf.nn.relu(opt(t)) * 2.0)
    out = fn(tf.constant(x))
    assert out.shape == (2, 3)
    assert_close(out.numpy(), (tf.nn.relu(model(x)) * 2.0).numpy(), 1e-4)


def test_as_a_layer_of_another_keras_model(opt: SolKerasModel, model: keras.Model, x: np.ndarray) -> None:
    inp = keras.Input((6, 6, 2), batch_size=2)
    outer = keras.Model(inp, L.Dense(1, kernel_initializer="ones")(opt(inp)))
    assert outer.output.shape == (2, 1)
    assert_close(outer(x).numpy(), model(x).numpy().sum(axis=1, keepdims=True), 1e-4)
    assert_close(outer.predict(x, verbose=0), model(x).numpy().sum(axis=1, keepdims=True), 1e-4)


def test_trainable_variables_are_the_models(opt: SolKerasModel, model: keras.Model) -> None:
    assert [id(v) for v in opt.trainable_variables] == [id(v) for v in model.trainable_variables]
    assert len(opt.trainable_variables) == 4


def test_tf_function_with_input_signature_and_its_variables() -> None:
    w = tf.Variable(np.arange(12, dtype="float32").reshape(4, 3) / 10)

    @tf.function(input_signature=[tf.TensorSpec((5, 4), tf.float32)])
    def fn(t: tf.Tensor) -> dict[str, tf.Tensor]:
        y = tf.matmul(t, w)
        return {"y": tf.nn.sigmoid(y), "z": y * 2.0}

    opt = sol.optimize(fn, device="x86")
    t = np.random.default_rng(1).standard_normal((5, 4)).astype("float32")
    out, ref = opt(t), fn(t)
    assert set(out) == {"y", "z"}
    for k in ref:
        assert_close(out[k].numpy(), ref[k].numpy(), 1e-4)
    assert opt.trainable_variables == [w] or [id(v) for v in opt.trainable_variables] == [id(w)]


def test_subclassed_model_and_multiple_inputs() -> None:
    class TwoTower(keras.Model):
        def __init__(self) -> None:
            super().__init__()
            self.a = L.Dense(4, activation="relu")
            self.b = L.Dense(4)

        def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
            return self.a(inputs[0]) + self.b(inputs[1])

    keras.utils.set_random_seed(2)
    m = TwoTower()
    xs = [np.ones((3, 5), "float32"), np.full((3, 2), 0.5, "float32")]
    m(xs)
    opt = sol.optimize(m, xs, device="x86")
    assert_close(opt(xs).numpy(), m(xs).numpy(), 1e-4)
    assert_close(opt(*xs).numpy(), m(xs).numpy(), 1e-4)


def test_bad_inputs_raise_naming_expected_and_given(opt: SolKerasModel, x: np.ndarray) -> None:
    with pytest.raises(TypeError, match=r"expected dtype float32, got float64"):
        opt(x.astype("float64"))
    with pytest.raises(ValueError, match=r"expected rank 4 .* got rank 3"):
        opt(x[0])
    with pytest.raises(TypeError, match=r"expects 1 input\(s\) .*got 2"):
        opt(x, x)
    with pytest.raises(TypeError, match=r"expected a tf.Tensor or NumPy array, got str"):
        opt("image")


def test_another_shape_is_an_error_with_dynamic_false(model: keras.Model, x: np.ndarray) -> None:
    """(Without dynamic=False a new shape compiles a variant: tests/tensorflow/test_reliability.py.)"""
    fixed = sol.optimize(model, x, device="x86", dynamic=False)
    with pytest.raises(ValueError, match=r"expected shape \(2, 6, 6, 2\), got \(3, 6, 6, 2\) \(optimized with "
                                         r"dynamic=False"):
        fixed(np.zeros((3, 6, 6, 2), "float32"))
    with pytest.raises(ValueError, match=r"expected shape"):
        tf.function(lambda t: fixed(t))(tf.zeros((3, 6, 6, 2)))
    assert len(fixed.variants) == 1


def test_optimize_for_training_makes_every_call_differentiable(model: keras.Model, x: np.ndarray) -> None:
    opt = sol.optimize(model, x, device="x86", training=True)  # tests/tensorflow/test_training.py: the rest
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(opt(x) ** 2)
    grads = tape.gradient(loss, opt.trainable_variables)
    assert all(g is not None for g in grads)
