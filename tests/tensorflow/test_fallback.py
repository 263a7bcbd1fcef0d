"""Ops sol cannot compile run in TensorFlow between the parts sol compiles (per op, one warning),
or raise with ``fallback=False``; results always equal TensorFlow's."""

from __future__ import annotations

import warnings

import keras
import numpy as np
import pytest
import tensorflow as tf
from tf_helpers import assert_close

import sol
from sol_tensorflow.fallback import Part, Step
from sol_tensorflow.importer import SolFallbackWarning

L = keras.layers
RTOL = 1e-4


class Mixed(keras.Model):
    """A CNN with TensorFlow ops sol lacks in the middle: a cumulative sum over image rows, an FFT
    magnitude (complex values in between), a py_function (unknown shape until EnsureShape) and a
    sort, each between layers sol compiles."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = L.Conv2D(6, 3, padding="same")
        self.bn = L.BatchNormalization()
        self.dense = L.Dense(8, activation="relu")
        self.head = L.Dense(3)

    def call(self, x: tf.Tensor) -> tf.Tensor:
        h = tf.nn.relu(self.bn(self.conv(x)))
        h = tf.math.cumsum(h, axis=1)
        h = self.dense(tf.reduce_mean(h, axis=[1, 2]))
        h = tf.ensure_shape(tf.py_function(lambda a: a * 2.0 + 1.0, [h], tf.float32), (2, 8))
        spectrum = tf.abs(tf.signal.rfft(h))
        h = tf.concat([tf.nn.tanh(h), spectrum], axis=1)
        return self.head(tf.sort(h, axis=1) * 0.5)


@pytest.fixture(scope="module")
def mixed() -> tuple[keras.Model, np.ndarray]:
    keras.utils.set_random_seed(7)
    model = Mixed()
    x = np.random.default_rng(7).uniform(-1, 1, (2, 8, 8, 3)).astype("float32")
    model(x)
    return model, x


def _optimize_warned(model: object, *args: object, **kwargs: object) -> tuple[object, str]:
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        opt = sol.optimize(model, *args, **kwargs)
    ours = [w for w in record if issubclass(w.category, SolFallbackWarning)]
    assert len(ours) == 1, [str(w.message) for w in ours]
    return opt, str(ours[0].message)


def test_unsupported_ops_run_in_tensorflow_and_the_rest_is_compiled(mixed: tuple[keras.Model, np.ndarray],
                                                                   device: str) -> None:
    model, x = mixed
    opt, message = _optimize_warned(model, x, device=device)
    ref = model(x, training=False).numpy()
    assert_close(opt(x).numpy(), ref, RTOL)
    assert_close(opt(tf.constant(x)).numpy(), ref, RTOL)
    # one warning naming every op TensorFlow runs, where it is, and why where it is not obvious
    for op_type in ("Cumsum", "EagerPyFunc", "RFFT", "ComplexAbs", "TopKV2", "EnsureShape"):
        assert op_type in message and op_type in opt.fallback_ops
    assert "TensorFlow runs them and sol compiles the rest (4 parts)" in message
    assert "which sol cannot hold (complex64[2, 5])" in message and "fallback=False" in message
    steps = opt._sol_runner.cut.steps
    assert [type(s) for s in steps] == [Part, Step, Part, Step, Part, Step, Part]
    # the CNN is compiled (channels-last where the device prefers it: Keras's NHWC input is read as it is)
    assert [n.op for n in steps[0].graph.nodes if n.op.startswith("conv2d")] in (["conv2d"], ["conv2d_nhwc"])
    assert len(opt.programs) == 4


def test_split_model_inside_tf_function_and_keras(mixed: tuple[keras.Model, np.ndarray], device: str) -> None:
    model, x = mixed
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SolFallbackWarning)
        opt = sol.optimize(model, x, device=device)
    ref = model(x, training=False).numpy()
    fn = tf.function(lambda t: opt(t) * 2.0)
    out = fn(tf.constant(x))
    assert out.shape == (2, 3)
    assert_close(out.numpy(), ref * 2.0, RTOL)
    inp = keras.Input((8, 8, 3), batch_size=2)
    outer = keras.Model(inp, L.Dense(1, kernel_initializer="ones")(opt(inp)))
    assert_close(outer.predict(x, verbose=0), ref.sum(axis=1, keepdims=True), RTOL)


def test_fallback_false_raises_naming_the_op_and_its_layer(mixed: tuple[keras.Model, np.ndarray],
                                                           device: str) -> None:
    model, x = mixed
    with pytest.raises(sol.errors.UnsupportedOpError, match=r"Cumsum \(op '[^']*Cumsum' in layer") as info:
        sol.optimize(model, x, device=device, fallback=False)
    assert info.value.op == "Cumsum" and "Cumsum" in (info.value.source or "")


def test_tensorflow_step_reading_variables_inputs_and_giving_outputs(device: str) -> None:
    """An unsupported op reading a model variable and the model's input directly, and one whose
    result is a model output, in a tf.function with an input signature."""
    w = tf.Variable(np.linspace(0.5, 1.5, 6, dtype="float32"))
    k = tf.Variable(np.arange(24, dtype="float32").reshape(6, 4) / 10)

    @tf.function(input_signature=[tf.TensorSpec((3, 6), tf.float32)])
    def fn(t: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        scaled = tf.math.cumprod(w) * t  # Cumprod reads a variable
        running = tf.math.cumsum(t, axis=1, reverse=True)  # reads the input directly
        y = tf.nn.sigmoid(tf.matmul(scaled + running, k))
        return y, tf.math.cumsum(y, axis=0, exclusive=True)  # an output TensorFlow computes

    opt, message = _optimize_warned(fn, device=device)
    assert "Cumprod" in message and "(2 parts)" not in message
    t = np.random.default_rng(3).standard_normal((3, 6)).astype("float32")
    for got, ref in zip(opt(t), fn(t)):
        assert_close(got.numpy(), ref.numpy(), RTOL)


def test_a_model_tensorflow_runs_entirely(device: str) -> None:
    fn = tf.function(lambda t: tf.math.cumsum(t, axis=0), input_signature=[tf.TensorSpec((4, 3), tf.float32)])
    opt, message = _optimize_warned(fn, device=device)
    assert "(0 parts)" in message and opt.fallback_ops == ["Cumsum"]
    t = np.arange(12, dtype="float32").reshape(4, 3)
    assert_close(opt(t).numpy(), np.cumsum(t, axis=0), RTOL)


def test_each_op_is_converted_once_in_the_whole_graph_never_in_a_part(device: str,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Core cuts the converted graph (sol.fallback): a converter that looks at neighbouring ops
    always sees them (the frontend used to convert each part again, where they were missing)."""
    from sol_tensorflow import ops

    real = ops.CONVERTERS["Tanh"]
    seen: list[str] = []

    def recording(ctx: ops.Context, op: object) -> object:
        seen.append(ctx.graph.name)
        return real(ctx, op)

    monkeypatch.setitem(ops.CONVERTERS, "Tanh", recording)
    k = tf.Variable(np.linspace(-1, 1, 12, dtype="float32").reshape(4, 3))
    fn = tf.function(lambda t: tf.matmul(tf.nn.tanh(tf.math.cumsum(t, axis=1) * 0.5), k),
                     input_signature=[tf.TensorSpec((2, 4), tf.float32)])
    opt, message = _optimize_warned(fn, device=device)
    assert opt.fallback_ops == ["Cumsum"] and "(1 part)" in message
    assert seen and not [name for name in seen if "_part" in name]
    t = np.random.default_rng(4).standard_normal((2, 4)).astype("float32")
    assert_close(opt(t).numpy(), fn(t).numpy(), RTOL)


def test_a_model_tensorflow_runs_entirely_compiles_nothing(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """No stand-in program: with nothing to compile, nothing is compiled, for the example's
    shapes or for new ones, and the warning comes once."""
    import sol.api
    import sol.plugin_api

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("nothing here is worth a compile")

    # The plugin API caches a name on first use: patched first (its lookup then caches the real
    # function, which monkeypatch restores), a stub cached there would outlive this test.
    monkeypatch.setattr(sol.plugin_api, "compile_graph", refuse)
    monkeypatch.setattr(sol.api, "compile_graph", refuse)
    fn = tf.function(lambda t: tf.math.cumprod(tf.math.cumsum(t, axis=0), axis=1))
    opt, message = _optimize_warned(fn, tf.TensorSpec((4, 3), tf.float32), device=device)
    assert "(0 parts)" in message and opt.programs == [] and opt.program is None
    for shape in ((4, 3), (2, 3)):
        t = np.arange(np.prod(shape), dtype="float32").reshape(shape) / 7
        with warnings.catch_warnings():
            warnings.simplefilter("error", SolFallbackWarning)  # warned once, at optimize
            assert_close(opt(t).numpy(), np.cumprod(np.cumsum(t, axis=0), axis=1), RTOL)


def test_one_fallback_warning_class_for_every_frontend() -> None:
    import sol_pytorch.fallback
    import sol_tensorflow.importer

    assert sol_pytorch.fallback.SolFallbackWarning is sol_tensorflow.importer.SolFallbackWarning \
        is sol.errors.SolFallbackWarning
