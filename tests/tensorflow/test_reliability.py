"""The TensorFlow frontend under conditions models meet after ``optimize``: new shapes from several
threads at once, weights changed afterwards, dtypes the device cannot compile, ``tf.function``
input signatures with open dimensions, many unsupported ops, empty batches. Results always equal
TensorFlow's own."""

from __future__ import annotations

import threading
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import keras
import numpy as np
import pytest
import tensorflow as tf
from tf_helpers import assert_close

import sol
from sol_tensorflow import wrapper
from sol_tensorflow.importer import SolFallbackWarning
from sol_tensorflow.variants import key_of_specs

L = keras.layers
RTOL = 1e-4


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def _optimize_quietly(model: Any, *args: Any, **kwargs: Any) -> tuple[Any, list[str]]:
    """optimize, returning the fallback warnings it gave."""
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        opt = sol.optimize(model, *args, **kwargs)
    return opt, [str(w.message) for w in record if issubclass(w.category, SolFallbackWarning)]


@pytest.fixture
def compiles(monkeypatch: pytest.MonkeyPatch) -> Counter[Any]:
    """Counts the variants compiled after optimize (new shapes, new weights), by input shapes."""
    counted: Counter[Any] = Counter()
    real = wrapper.compile_variant

    def counting(traced: Any, *args: Any, **kwargs: Any) -> Any:
        counted[tuple(shape for shape, _ in key_of_specs(traced.specs))] += 1
        return real(traced, *args, **kwargs)

    monkeypatch.setattr(wrapper, "compile_variant", counting)
    return counted


# --- new shapes, from several threads at once ------------------------------------------------


class Picky(keras.Model):
    """Refuses (while TensorFlow traces it) a batch of 3."""

    def __init__(self) -> None:
        super().__init__()
        self.hidden = L.Dense(6, activation="tanh")
        self.head = L.Dense(3)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        if x.shape[0] == 3:
            raise ValueError("Picky takes no batch of 3")
        return self.head(self.hidden(x))


def test_threads_calling_with_new_shapes_at_once(compiles: Counter[Any]) -> None:
    """8 threads, 4 new batch sizes (one the model refuses while it is traced), all at once, half
    of them eagerly and half through one ``tf.function`` with an open batch dimension: each shape
    compiles once, every result equals TensorFlow's, the refused one raises the model's own error
    every time, and the model and the optimized layer are left as they were."""
    keras.utils.set_random_seed(11)
    model = Picky()
    model(np.zeros((2, 5), "float32"))
    opt = sol.optimize(model, np.zeros((2, 5), "float32"), device="x86")
    in_graph = tf.function(lambda t: opt(t), input_signature=[tf.TensorSpec((None, 5), tf.float32)])
    variables = [(id(v), v.numpy().copy()) for v in model.variables]
    batches = [1, 3, 4, 6]
    xs = {b: _rng(b).standard_normal((b, 5)).astype("float32") for b in batches}
    refs = {b: model(xs[b]).numpy() for b in batches if b != 3}
    start = threading.Barrier(8)

    def work(i: int) -> dict[int, Any]:
        call = opt if i % 2 else in_graph
        start.wait()
        got: dict[int, Any] = {}
        for b in batches[i % 4:] + batches[:i % 4]:  # every thread its own order
            try:
                got[b] = call(tf.constant(xs[b])).numpy()
            except (ValueError, tf.errors.InvalidArgumentError) as exc:  # the latter: raised inside the graph
                got[b] = exc
        return got

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(work, range(8)))
    for got in results:
        for b in batches:
            if b == 3:
                assert isinstance(got[b], Exception) and "Picky takes no batch of 3" in str(got[b])
            else:
                assert_close(got[b], refs[b], RTOL)
    assert compiles == {((1, 5),): 1, ((4, 5),): 1, ((6, 5),): 1}
    after = [(id(v), v.numpy()) for v in model.variables]
    assert [i for i, _ in after] == [i for i, _ in variables]  # the same variables, none added
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(after, variables))
    # intact afterwards: known shapes run without compiling, the refused one raises again
    assert_close(opt(xs[4]).numpy(), refs[4], RTOL)
    with pytest.raises(ValueError, match="Picky takes no batch of 3"):
        opt(xs[3])
    assert sum(compiles.values()) == 3 and len(opt.variants) == 4


def test_threads_taking_gradients_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first training-mode calls of 6 threads at once (two batch sizes) compile each training
    variant once; every thread gets TensorFlow's gradients."""
    built: Counter[Any] = Counter()
    real = wrapper.build_variant

    def counting(model: Any, traced: Any, specs: Any, training: bool, *args: Any) -> Any:
        built[(tuple(tuple(s.shape) for s in specs), training)] += 1
        return real(model, traced, specs, training, *args)

    monkeypatch.setattr(wrapper, "build_variant", counting)
    keras.utils.set_random_seed(15)
    model = keras.Sequential([keras.Input((5,)), L.Dense(4, activation="tanh"), L.Dense(2)])
    opt = sol.optimize(model, np.zeros((2, 5), "float32"), device="x86")
    xs = {b: tf.constant(_rng(30 + b).standard_normal((b, 5)).astype("float32")) for b in (2, 3)}

    def grads(fn: Any, x: tf.Tensor) -> list[np.ndarray]:
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(fn(x, training=True) ** 2)
        return [g.numpy() for g in tape.gradient(loss, model.trainable_variables)]

    refs = {b: grads(model, x) for b, x in xs.items()}
    start = threading.Barrier(6)

    def work(i: int) -> tuple[int, list[np.ndarray]]:
        b = 2 + i % 2
        start.wait()
        return b, grads(opt, xs[b])

    with ThreadPoolExecutor(6) as pool:
        for b, got in pool.map(work, range(6)):
            for g, r in zip(got, refs[b]):
                assert_close(g, r, RTOL)
    assert built == {(((2, 5),), True): 1, (((3, 5),), True): 1}


def test_open_batch_dimension_in_keras_predict() -> None:
    """Keras' predict traces the batch as None and ends with a smaller batch: the variant is
    chosen by the shapes that arrive when the graph runs."""
    keras.utils.set_random_seed(12)
    model = keras.Sequential([keras.Input((6, 6, 2)), L.Conv2D(4, 3, activation="relu"), L.Flatten(), L.Dense(3)])
    x = _rng(12).standard_normal((10, 6, 6, 2)).astype("float32")
    opt = sol.optimize(model, x[:4], device="x86")
    inp = keras.Input((6, 6, 2))
    outer = keras.Model(inp, L.Dense(2, kernel_initializer="ones", use_bias=False)(opt(inp)))
    assert tuple(outer.output.shape) == (None, 2)
    ref = model.predict(x, batch_size=4, verbose=0) @ np.ones((3, 2), "float32")
    assert_close(outer.predict(x, batch_size=4, verbose=0), ref, RTOL)  # batches of 4, 4 and 2


# --- weights changed after optimize -----------------------------------------------------------


def _cnn() -> keras.Model:
    return keras.Sequential([keras.Input((6, 6, 2)), L.Conv2D(4, 3), L.BatchNormalization(), L.ReLU(),
                             L.Flatten(), L.Dense(3)])


def test_changed_weights_are_seen_at_the_next_call(tmp_path: Path, compiles: Counter[Any]) -> None:
    keras.utils.set_random_seed(13)
    model = _cnn()
    x = _rng(13).standard_normal((2, 6, 6, 2)).astype("float32")
    opt = sol.optimize(model, x, device="x86")
    in_graph = tf.function(lambda t: opt(t) * 1.0)
    assert_close(in_graph(x).numpy(), model(x).numpy(), RTOL)
    saved = tmp_path / "w.weights.h5"
    model.save_weights(saved)
    conv, bn, dense = model.layers[0], model.layers[1], model.layers[-1]

    def fit() -> None:
        model.compile(optimizer=keras.optimizers.SGD(0.5), loss="mse")
        model.fit(x, np.ones((2, 3), "float32"), epochs=1, verbose=0)

    changes = {
        "set_weights": lambda: model.set_weights([w * 0.5 + 0.1 for w in model.get_weights()]),
        "assign": lambda: dense.kernel.assign(tf.ones_like(dense.kernel) * 0.25),
        "load_weights": lambda: model.load_weights(saved),
        "assign in a tf.function": lambda: tf.function(lambda: conv.bias.assign_add(tf.ones(4)))(),
        "moving statistics": lambda: bn.moving_variance.assign(bn.moving_variance * 3.0),
        "fit of the original model": fit,
    }
    for name, change in changes.items():
        before = model(x).numpy()
        change()
        ref = model(x).numpy()
        assert not np.allclose(before, ref), name  # the change matters
        assert_close(opt(x).numpy(), ref, RTOL)
        assert_close(in_graph(x).numpy(), ref, RTOL)
    assert compiles[((2, 6, 6, 2),)] == len(changes)  # once per change, not per call
    opt(x)
    assert compiles[((2, 6, 6, 2),)] == len(changes)


def test_changed_weights_of_a_split_model_and_check_weights_false() -> None:
    keras.utils.set_random_seed(14)
    w = tf.Variable(_rng(14).standard_normal((4, 3)).astype("float32"))

    @tf.function(input_signature=[tf.TensorSpec((2, 4), tf.float32)])
    def fn(t: tf.Tensor) -> tf.Tensor:
        return tf.nn.relu(tf.matmul(tf.math.cumsum(t, axis=1), w))  # Cumsum runs in TensorFlow

    t = _rng(15).standard_normal((2, 4)).astype("float32")
    opt, _ = _optimize_quietly(fn, device="x86")
    frozen, _ = _optimize_quietly(fn, device="x86", check_weights=False)
    old = fn(t).numpy()
    w.assign(w * -2.0)
    assert_close(opt(t).numpy(), fn(t).numpy(), RTOL)
    assert_close(frozen(t).numpy(), old, RTOL)  # documented: check_weights=False reads them once


def test_copy_on_read_variable_is_compared_by_value(compiles: Counter[Any]) -> None:
    """A sparse read puts a variable in TensorFlow's copy-on-read mode (every read a new buffer):
    no recompile per call, and a change is still seen."""
    table = tf.Variable(_rng(16).standard_normal((10, 4)).astype("float32"))

    @tf.function(input_signature=[tf.TensorSpec((3, 4), tf.float32)])
    def fn(t: tf.Tensor) -> tf.Tensor:
        return t * table[2] + table[5]

    t = _rng(17).standard_normal((3, 4)).astype("float32")
    opt = sol.optimize(fn, device="x86")
    tf.nn.embedding_lookup(table, [1, 2])  # ResourceGather: copy-on-read from now on
    for _ in range(3):
        assert_close(opt(t).numpy(), fn(t).numpy(), RTOL)
    assert sum(compiles.values()) == 0
    table.assign(table * 3.0)
    assert_close(opt(t).numpy(), fn(t).numpy(), RTOL)
    assert sum(compiles.values()) == 1


# --- dtypes the device cannot compile ---------------------------------------------------------


def test_float64_model_falls_back_with_one_warning() -> None:
    keras.utils.set_random_seed(18)
    model = keras.Sequential([keras.Input((4,), dtype="float64"), L.Dense(5, activation="relu", dtype="float64"),
                              L.Dense(2, dtype="float64")])
    x = _rng(18).standard_normal((3, 4))
    opt, warned = _optimize_quietly(model, x, device="x86")
    assert len(warned) == 1 and "cannot compile dense in float64" in warned[0]
    assert "MatMul" in opt.fallback_ops
    got = opt(x)
    assert got.dtype == tf.float64
    assert_close(got.numpy(), model(x).numpy(), 1e-12)
    with pytest.warns(SolFallbackWarning, match="for training; TensorFlow trains the whole model"):
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(opt(x, training=True) ** 2)
    grads = tape.gradient(loss, opt.trainable_variables)
    with tf.GradientTape() as tape:
        loss_ref = tf.reduce_sum(model(x, training=True) ** 2)
    for g, r in zip(grads, tape.gradient(loss_ref, model.trainable_variables)):
        assert_close(g.numpy(), r.numpy(), 1e-12)
    first, second = (layer.name for layer in model.layers)
    with pytest.raises(sol.errors.UnsupportedOpError, match=rf"(?s)MatMul .*{first}.*float64.*MatMul .*{second}"):
        sol.optimize(model, x, device="x86", fallback=False)


def test_mixed_float16_model_falls_back_with_one_warning() -> None:
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        keras.utils.set_random_seed(19)
        model = keras.Sequential([keras.Input((6, 6, 2)), L.Conv2D(4, 3, activation="relu"), L.Flatten(),
                                  L.Dense(3), L.Activation("softmax", dtype="float32")])
    finally:
        keras.mixed_precision.set_global_policy("float32")
    x = _rng(19).standard_normal((2, 6, 6, 2)).astype("float32")
    opt, warned = _optimize_quietly(model, x, device="x86")
    assert len(warned) == 1 and "float16" in warned[0]
    got = opt(x)
    assert got.dtype == tf.float32
    assert_close(got.numpy(), model(x).numpy(), 1e-6)
    with pytest.raises(sol.errors.UnsupportedOpError, match="float16"):
        sol.optimize(model, x, device="x86", fallback=False)


def test_a_device_named_in_optimize_is_asked_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the device a program was compiled for answers otherwise than the device the import
    asked (an import made for another device: here the import is made to ask "ve" whatever
    optimize names, and "ve" refuses tanh while x86 takes it), the wrapper imports again for it."""
    from sol_tensorflow import importer, support

    real = support.DeviceSupport.why_not

    def no_tanh_on_ve(self: Any, node: Any, graph: Any) -> str | None:
        if self.device.name == "ve" and node.op == "tanh":
            return "ve refuses tanh here"
        return real(self, node, graph)

    monkeypatch.setattr(support.DeviceSupport, "why_not", no_tanh_on_ve)
    asked: list[str] = []

    def first_import_asks_ve(options: dict[str, Any]) -> str:  # as an import made for another device would
        asked.append("ve" if not asked else options["device"])
        return asked[-1]

    monkeypatch.setattr(importer, "target_device", first_import_asks_ve)
    keras.utils.set_random_seed(25)
    model = keras.Sequential([keras.Input((4,)), L.Dense(3, activation="tanh"), L.Dense(2)])
    x = _rng(25).standard_normal((2, 4)).astype("float32")
    opt, warned = _optimize_quietly(model, x, device="x86")
    assert warned and "ve refuses tanh here" in warned[0]  # what the import found
    assert opt.fallback_ops == [] and len(opt.programs) == 1  # what x86 runs: all of it
    assert asked[:2] == ["ve", "x86"]  # imported again for the device compiled for
    assert_close(opt(x).numpy(), model(x).numpy(), RTOL)


# --- tf.function with an input signature ------------------------------------------------------


def test_tf_function_with_an_open_input_signature_and_an_example() -> None:
    k = tf.Variable(_rng(20).standard_normal((4, 3)).astype("float32"))

    @tf.function(input_signature=[tf.TensorSpec((None, 4), tf.float32, name="features")])
    def fn(t: tf.Tensor) -> tf.Tensor:
        return tf.nn.sigmoid(tf.matmul(t, k))

    x = _rng(21).standard_normal((2, 4)).astype("float32")
    opt = sol.optimize(fn, x, device="x86")
    assert opt.program.input_types[0].shape == (2, 4)
    assert_close(opt(x).numpy(), fn(x).numpy(), RTOL)
    x5 = _rng(22).standard_normal((5, 4)).astype("float32")
    assert_close(opt(x5).numpy(), fn(x5).numpy(), RTOL)  # another batch: its own variant
    with pytest.raises(ValueError, match=r"input signature allows \(\(None, 4\)\), got \(2, 5\)"):
        opt(np.zeros((2, 5), "float32"))
    with pytest.raises(TypeError, match=r"input signature says float32\[None, 4\], got float32\[2, 6\]"):
        sol.optimize(fn, np.zeros((2, 6), "float32"), device="x86")


# --- every unsupported op in one error --------------------------------------------------------


def test_fallback_false_lists_every_unsupported_op() -> None:
    """Seven ops sol cannot compile, each reading the one before: the error names all seven."""

    @tf.function(input_signature=[tf.TensorSpec((2, 8), tf.float32)])
    def fn(t: tf.Tensor) -> tf.Tensor:
        h = tf.math.cumsum(t, axis=1)
        h = tf.math.cumprod(h * 0.1, axis=1)
        h = tf.math.lgamma(tf.abs(h) + 1.0)
        h = tf.math.abs(tf.signal.rfft(h))
        h = tf.math.erfinv(tf.clip_by_value(h * 0.01, -0.5, 0.5))
        return tf.math.top_k(h, k=2).values

    with pytest.raises(sol.errors.UnsupportedOpError) as info:
        sol.optimize(fn, device="x86", fallback=False)
    message = str(info.value)
    for op in ("Cumsum", "Cumprod", "Lgamma", "RFFT", "ComplexAbs", "Erfinv", "TopKV2"):
        assert f"  {op} (op '" in message, (op, message)
    assert info.value.op == "Cumsum"


# --- empty batches ------------------------------------------------------------------------------


def _mlp() -> keras.Model:
    return keras.Sequential([keras.Input((5,)), L.Dense(8, activation="relu"), L.Dense(3)])


def _gradients(fn: Any, x: Any, variables: list[Any]) -> list[np.ndarray]:
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(fn(x) ** 2)
    return [g.numpy() for g in tape.gradient(loss, variables)]


def test_batch_zero_inference_and_training_step() -> None:
    keras.utils.set_random_seed(23)
    model = _mlp()
    empty = np.zeros((0, 5), "float32")
    opt = sol.optimize(model, empty, device="x86")
    got = opt(empty)
    assert got.shape == (0, 3) and got.dtype == tf.float32
    assert_close(got.numpy(), model(empty).numpy(), RTOL)
    x = _rng(23).standard_normal((2, 5)).astype("float32")
    assert_close(opt(x).numpy(), model(x).numpy(), RTOL)  # and a batch with data after it
    for g, r in zip(_gradients(lambda t: opt(t, training=True), tf.constant(empty), opt.trainable_variables),
                    _gradients(lambda t: model(t, training=True), tf.constant(empty), model.trainable_variables)):
        assert_close(g, r, RTOL)  # all zeros, as TensorFlow's


def test_batch_zero_after_a_batch_with_data_in_a_cnn() -> None:
    """(TensorFlow's own Conv2D fails on an empty batch here, so the expected result is written out.)"""
    keras.utils.set_random_seed(24)
    model = keras.Sequential([keras.Input((6, 6, 2)), L.Conv2D(4, 3, activation="relu"), L.MaxPooling2D(),
                              L.Flatten(), L.Dense(3)])
    x = _rng(24).standard_normal((2, 6, 6, 2)).astype("float32")
    opt = sol.optimize(model, x, device="x86")
    empty = np.zeros((0, 6, 6, 2), "float32")
    got = opt(empty)
    assert got.shape == (0, 3) and got.dtype == tf.float32
    grads = _gradients(lambda t: opt(t, training=True), tf.constant(empty), opt.trainable_variables)
    assert [g.shape for g in grads] == [tuple(v.shape) for v in model.trainable_variables]
    assert all(not g.any() for g in grads)
