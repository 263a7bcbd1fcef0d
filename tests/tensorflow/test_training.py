"""Training through sol: gradients for tf.GradientTape equal TensorFlow's, Keras' training-mode
BatchNormalization and Dropout, variables read at every call, and Keras ``fit``."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf

import sol
from sol_tensorflow.importer import SolFallbackWarning
from sol_tensorflow.training import TrainingVariant

L = keras.layers
RTOL = 1e-4


# Models and layers are named: the same architecture then generates the same source in every
# test, and the compile cache serves it after the first compile.


def cnn(dropout: float = 0.0) -> keras.Model:
    keras.utils.set_random_seed(0)
    layers = [keras.Input((8, 8, 3)), L.Conv2D(6, 3, padding="same", use_bias=False, name="conv1"),
              L.BatchNormalization(name="bn"), L.ReLU(name="relu1"), L.MaxPooling2D(name="pool"),
              L.Conv2D(4, 3, strides=2, padding="valid", name="conv2"), L.ReLU(name="relu2")]
    if dropout:
        layers.append(L.Dropout(dropout, seed=7, name="dropout"))
    return keras.Sequential(layers + [L.Flatten(name="flatten"), L.Dense(5, name="fc")],
                            name="cnn_dropout" if dropout else "cnn")


def mlp() -> keras.Model:
    keras.utils.set_random_seed(1)
    return keras.Sequential([keras.Input((12,)), L.Dense(16, activation="relu", name="fc1"),
                             L.Dense(16, activation="tanh", name="fc2"), L.Dense(3, name="fc3")], name="mlp")


MODELS: dict[str, tuple[Callable[[], keras.Model], tuple[int, ...]]] = {
    "cnn": (cnn, (4, 8, 8, 3)), "mlp": (mlp, (6, 12))}


def _gradients(call: Callable[..., tf.Tensor], x: tf.Tensor, variables: list) -> tuple[float, list[np.ndarray]]:
    with tf.GradientTape() as tape:
        tape.watch(x)
        y = call(x)
        loss = tf.reduce_sum(y * tf.cast(tf.range(1, y.shape[-1] + 1), y.dtype))  # not symmetric in outputs
    return float(loss), [g.numpy() for g in tape.gradient(loss, [x, *variables])]


def _assert_gradients(got: list[np.ndarray], ref: list[np.ndarray]) -> None:
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=RTOL * 1e-2 * max(float(np.abs(r).max()), 1.0))


@pytest.mark.parametrize("training", [True, False], ids=["training", "inference"])
@pytest.mark.parametrize("name", list(MODELS))
def test_gradients_equal_tensorflow(name: str, training: bool, device: str) -> None:
    make, shape = MODELS[name]
    model = make()
    x = tf.constant(np.random.default_rng(2).standard_normal(shape).astype("float32"))
    opt = sol.optimize(model, x, device=device)
    assert opt.trainable_variables == model.trainable_variables  # the model's own variables
    state = [v.numpy() for v in model.non_trainable_variables]
    loss_ref, ref = _gradients(lambda t: model(t, training=training), x, model.trainable_variables)
    stats_ref = [v.numpy() for v in model.non_trainable_variables]
    for v, s in zip(model.non_trainable_variables, state):
        v.assign(s)
    loss, got = _gradients(lambda t: opt(t, training=training), x, opt.trainable_variables)
    assert loss == pytest.approx(loss_ref, rel=RTOL)
    _assert_gradients(got, ref)
    # BatchNormalization's moving statistics moved as Keras moves them (biased batch variance)
    for v, r in zip(model.non_trainable_variables, stats_ref):
        np.testing.assert_allclose(v.numpy(), r, rtol=RTOL, atol=1e-6)
    if training and name == "cnn":
        assert any(np.abs(r - s).max() > 1e-3 for r, s in zip(stats_ref, state))


def test_variables_are_read_at_every_call() -> None:
    model = mlp()
    x = tf.constant(np.random.default_rng(3).standard_normal((6, 12)).astype("float32"))
    opt = sol.optimize(model, x, device="x86", training=True)
    opt(x)
    programs = [p for v in opt.variants if isinstance(v, TrainingVariant) for p in v.programs]
    assert programs
    kernel = model.layers[0].kernel
    kernel.assign(kernel * 0.5 + 0.1)  # as an optimizer step would
    _assert_gradients(_gradients(opt, x, opt.trainable_variables)[1],
                      _gradients(lambda t: model(t, training=False), x, model.trainable_variables)[1])
    np.testing.assert_allclose(opt(x).numpy(), model(x).numpy(), rtol=RTOL, atol=1e-6)
    assert [p for v in opt.variants if isinstance(v, TrainingVariant) for p in v.programs] == programs  # no recompile


def test_gradients_inside_tf_function() -> None:
    model = cnn()
    x = tf.constant(np.random.default_rng(4).standard_normal((4, 8, 8, 3)).astype("float32"))
    opt = sol.optimize(model, x, device="x86")
    state = [v.numpy() for v in model.non_trainable_variables]

    @tf.function
    def step(call: Callable[..., tf.Tensor], t: tf.Tensor) -> list[tf.Tensor]:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(call(t, training=True) ** 2)
        return [loss, *tape.gradient(loss, model.trainable_variables)]

    ref = [t.numpy() for t in step(model, x)]
    opt(x, training=True)  # compiled eagerly here (Keras fit compiles while tracing: test_fit_...)
    for v, s in zip(model.non_trainable_variables, state):
        v.assign(s)
    _assert_gradients([t.numpy() for t in step(opt, x)], ref)


def test_dropout_draws_tensorflows_masks() -> None:
    """The mask comes from Keras' seeded RNG, run by TensorFlow: the same seed, the same mask."""
    x = tf.constant(np.random.default_rng(5).standard_normal((4, 8, 8, 3)).astype("float32"))
    ref_model, model = cnn(dropout=0.25), cnn(dropout=0.25)
    opt = sol.optimize(model, x, device="x86")
    outs = []
    for _ in range(2):  # the seed generator advances in both: a new mask per call
        outs.append(opt(x, training=True).numpy())
        np.testing.assert_allclose(outs[-1], ref_model(x, training=True).numpy(), rtol=RTOL, atol=1e-5)
    assert not np.allclose(outs[0], outs[1])


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_fit_gives_the_same_losses(optimizer: str) -> None:
    x = np.random.default_rng(6).standard_normal((16, 8, 8, 3)).astype("float32")
    y = np.random.default_rng(7).integers(0, 5, 16)
    ref, model = cnn(dropout=0.25), cnn(dropout=0.25)
    outer = keras.Sequential([keras.Input((8, 8, 3)), sol.optimize(model, x[:4], device="x86")])
    losses = []
    for m in (ref, outer):
        opt = keras.optimizers.SGD(0.05) if optimizer == "sgd" else keras.optimizers.Adam(0.01)
        m.compile(optimizer=opt, loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        history = m.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
        losses.append(history.history["loss"])
    np.testing.assert_allclose(losses[1], losses[0], rtol=1e-4)
    for a, b in zip(ref.trainable_variables, model.trainable_variables):
        np.testing.assert_allclose(b.numpy(), a.numpy(), rtol=1e-3, atol=1e-5)
    np.testing.assert_allclose(outer.predict(x, batch_size=4, verbose=0), ref.predict(x, batch_size=4, verbose=0),
                               rtol=1e-3, atol=1e-5)


def test_a_model_sol_cannot_compile_whole_trains_in_tensorflow() -> None:
    keras.utils.set_random_seed(2)
    inp = keras.Input((6,))
    out = L.Dense(2, name="fc2")(L.Lambda(lambda t: tf.math.cumsum(t, axis=1), name="cumsum")(
        L.Dense(4, name="fc1")(inp)))
    model = keras.Model(inp, out, name="with_cumsum")
    x = tf.constant(np.random.default_rng(8).standard_normal((3, 6)).astype("float32"))
    with pytest.warns(SolFallbackWarning, match="Cumsum"):
        opt = sol.optimize(model, x, device="x86")
    with pytest.warns(SolFallbackWarning, match=r"(?s)for training; TensorFlow trains the whole model.*Cumsum"):
        got = _gradients(lambda t: opt(t, training=True), x, opt.trainable_variables)[1]
    _assert_gradients(got, _gradients(lambda t: model(t, training=True), x, model.trainable_variables)[1])


# --- issue #15: gradient stops, frozen and unconnected variables, mask_zero ----------------------


class _Stops(keras.Model):
    """``tf.stop_gradient`` inside (``h * stop_gradient(h)``: once, not twice, the gradient of
    ``h * h``), a frozen layer, and two heads of which the loss reads one: the other head's
    variables get None from the tape, as in TensorFlow."""

    def __init__(self) -> None:
        super().__init__(name="stops")
        self.a = L.Dense(4, name="a")
        self.frozen = L.Dense(4, name="frozen")
        self.frozen.trainable = False
        self.head0 = L.Dense(3, name="head0")
        self.head1 = L.Dense(3, name="head1")

    def call(self, x: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        h = self.a(x)
        z = h * tf.stop_gradient(h) + self.frozen(x) + tf.stop_gradient(tf.tanh(x @ tf.ones((4, 4))))
        return self.head0(z), self.head1(z)


def _two_heads(seed: int) -> keras.Model:
    keras.utils.set_random_seed(seed)
    model = _Stops()
    model(tf.zeros((3, 4)))
    return model


def test_stop_gradient_frozen_and_unconnected_variables_as_tensorflow() -> None:
    model, ref = _two_heads(11), _two_heads(11)
    x = tf.constant(np.random.default_rng(12).standard_normal((3, 4)).astype("float32"))
    with warnings.catch_warnings():
        warnings.simplefilter("error", SolFallbackWarning)  # compiled: stop_gradient is core's op now
        opt = sol.optimize(model, x, device="x86")

        def gradients(call: Callable[..., Any], variables: list) -> tuple[list[Any], list[Any]]:
            with tf.GradientTape(persistent=True) as tape:
                tape.watch(x)
                out0, out1 = call(x, training=True)
                loss = tf.reduce_sum(out0 * tf.range(1.0, 4.0))
                both = loss + tf.reduce_sum(out1)
            got_both = tape.gradient(both, [x, *variables])  # first: what it reached must not count for the next
            return tape.gradient(loss, [x, *variables]), got_both

        got, got_both = gradients(opt, opt.trainable_variables)
        want, want_both = gradients(ref, ref.trainable_variables)
    assert [v.name for v in opt.trainable_variables] == [v.name for v in ref.trainable_variables]
    assert len(opt.trainable_variables) == 6, "the frozen layer's variables are not trainable"
    assert [g is None for g in got] == [g is None for g in want] == [False] * 5 + [True] * 2
    for g, r in [*zip(got, want), *zip(got_both, want_both)]:
        if r is not None:
            np.testing.assert_allclose(g.numpy(), r.numpy(), rtol=RTOL, atol=1e-6)
    assert all(g is not None for g in got_both)
    assert any(isinstance(v, TrainingVariant) and v.training_program is not None for v in opt.variants)


def test_mask_zero_embedding_gradients_as_tensorflow() -> None:
    """Keras' ``mask_zero`` masks downstream layers; the embedding's row 0 still takes the
    gradient TensorFlow gives it (it is not PyTorch's padding_idx)."""
    def build() -> keras.Model:
        keras.utils.set_random_seed(13)
        ids = keras.Input((3,), dtype="int32")
        emb = L.Embedding(10, 4, mask_zero=True, name="emb")(ids)
        return keras.Model(ids, L.GlobalAveragePooling1D(name="pool")(emb), name="masked")

    model, ref = build(), build()
    ids = np.array([[0, 1, 2], [0, 0, 3]], dtype="int32")
    opt = sol.optimize(model, ids, device="x86")
    got, want = [], []
    for call, variables, out in ((opt, opt.trainable_variables, got), (ref, ref.trainable_variables, want)):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(call(ids, training=True) * tf.range(1.0, 5.0))
        out.extend(tf.convert_to_tensor(g).numpy() for g in tape.gradient(loss, variables))
    _assert_gradients(got, want)


def test_relu6_and_clip_gradients_at_their_bounds_as_tensorflow() -> None:
    """Relu6 and clip_by_value compute the same values, but TensorFlow's Relu6 gradient stops at 0
    and 6 while clip_by_value's passes there: both on one compiled graph."""
    def build() -> keras.Model:
        x = keras.Input((5,))
        y = L.Lambda(lambda t: 2.0 * tf.nn.relu6(t) + 3.0 * tf.clip_by_value(t, 0.0, 6.0), name="bounds")(x)
        return keras.Model(x, y, name="bounds_grad")

    x = tf.constant([[0.0, 6.0, 3.0, -1.0, 7.0], [6.0, 0.0, -0.0, 5.5, 0.5]])
    opt = sol.optimize(build(), x, device="x86")
    got, want = [], []
    for call, out in ((opt, got), (build(), want)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = tf.reduce_sum(call(x) * tf.range(1.0, 6.0))
        out.append(tape.gradient(loss, x).numpy())
    np.testing.assert_array_equal(got[0], want[0])
    assert want[0][0, 0] == 3.0 and want[0][0, 2] == 5.0 * 3.0  # at a bound only clip's part passes


def test_piecewise_gradients_at_nan_zero_and_ties_as_tensorflow() -> None:
    """TensorFlow's gradient rules pick by comparisons of their own: Relu, Relu6 and clip_by_value
    stop at NaN, Elu and Selu take the positive branch at 0 and NaN, Softplus is sigmoid(x) (1/2
    at 0), Maximum/Minimum give a tie to the first operand and a NaN first operand's gradient to
    the second."""
    fns = [tf.nn.relu, tf.nn.relu6, lambda t: tf.clip_by_value(t, -1.0, 1.0), tf.nn.elu, tf.nn.selu, tf.nn.softplus,
           lambda t: tf.nn.leaky_relu(t, 0.1)]

    def build() -> keras.Model:
        x, y = keras.Input((13,), name="x"), keras.Input((13,), name="y")
        out = L.Lambda(lambda ts: tf.stack([f(ts[0]) for f in fns] + [tf.maximum(ts[0], ts[1]),
                                                                      tf.minimum(ts[0], ts[1])], 1),
                       name="piecewise")([x, y])
        return keras.Model([x, y], out, name="piecewise")

    nan = float("nan")
    inf = float("inf")
    x = tf.constant([[nan, 0.0, 6.0, 1.0, -1.0, 3.0, -0.5, 0.5, nan, 2.0, -0.0, inf, -inf]])
    y = tf.constant([[0.0, 0.0, 6.0, 1.0, nan, 2.0, -0.5, 0.7, nan, 3.0, 0.0, 1.0, 1.0]])
    opt = sol.optimize(build(), [x, y], device="x86")
    got, want = [], []
    for call, out in ((opt, got), (build(), want)):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch([x, y])
            loss = tf.reduce_sum(call([x, y]) * tf.reshape(tf.range(1.0, 10.0), (1, 9, 1)))
        out.extend(g.numpy() for g in tape.gradient(loss, [x, y]))
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=RTOL, atol=1e-6)


def test_max_pool_gradient_skips_nan_as_tensorflow() -> None:
    """TensorFlow's max pooling ignores NaN (a window's maximum is its largest number; an all-NaN
    window gives the lowest float) and its gradient goes where the forward's maximum is: to the
    largest non-NaN element, the first of equal ones, the first element of an all-NaN window. sol's
    gradient routed to the NaN before."""

    def build() -> keras.Model:
        x = keras.Input((4, 6, 2), name="x")
        return keras.Model(x, L.MaxPool2D(2, strides=2, name="pool")(x), name="pool")

    nan, inf = float("nan"), float("inf")
    plane = np.array([[1.0, nan, 3.0, 2.0, nan, nan],
                      [0.0, 5.0, nan, nan, nan, nan],
                      [1.0, 1.0, -inf, -inf, 2.0, 7.0],
                      [1.0, 1.0, nan, -inf, inf, nan]], np.float32)
    x = tf.constant(np.stack([plane, -plane], -1)[None])
    opt = sol.optimize(build(), x, device="x86")
    got, want = [], []
    for call, out in ((opt, got), (build(), want)):
        with tf.GradientTape() as tape:
            tape.watch(x)
            y = call(x)
            loss = tf.reduce_sum(y * tf.reshape(tf.range(1.0, 1.0 + y.shape.num_elements()), y.shape))
        out.extend([y.numpy(), tape.gradient(loss, x).numpy()])
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
