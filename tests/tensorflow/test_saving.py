"""Saving: a model holding sol's compiled programs is refused, clearly, by every TensorFlow and
Keras way of writing a SavedModel or a ``.keras`` file (the programs are native code of this
process: a new process would run another function or none); checkpoints and weight files work;
and the way the error recommends (save the original model, optimize it after loading) gives the
original model's results in a new process, also one that runs another sol model first (whose
``numpy_function`` then holds the key a saved program would have looked up)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from tf_helpers import assert_close

import sol
from sol_tensorflow.graphcall import GUARD_NAME, SolSaveError

L = keras.layers
SPEC = tf.TensorSpec((2, 4), tf.float32)
REFUSED = r"Save the original model instead .* call sol.optimize on it after loading"


@pytest.fixture(scope="module")
def model() -> keras.Model:
    keras.utils.set_random_seed(31)
    return keras.Sequential([keras.Input((4,)), L.Dense(3, activation="relu"), L.Dense(2)])


@pytest.fixture(scope="module")
def x() -> np.ndarray:
    return np.random.default_rng(31).standard_normal((2, 4)).astype("float32")


@pytest.fixture(scope="module")
def opt(model: keras.Model, x: np.ndarray) -> keras.layers.Layer:
    return sol.optimize(model, x, device="x86")


class Holder(tf.Module):
    def __init__(self, layer: keras.layers.Layer) -> None:
        super().__init__()
        self.layer = layer

    @tf.function(input_signature=[SPEC])
    def serve(self, t: tf.Tensor) -> tf.Tensor:
        return self.layer(t)


def _nothing_written(path: Path) -> bool:
    return not path.exists() or not any(path.iterdir())


def test_saved_model_of_a_module_holding_the_layer_is_refused(opt: keras.layers.Layer, x: np.ndarray,
                                                              tmp_path: Path) -> None:
    holder = Holder(opt)
    holder.serve(x)  # traced before saving
    with pytest.raises(SolSaveError, match=REFUSED):
        tf.saved_model.save(holder, str(tmp_path / "held"))
    assert _nothing_written(tmp_path / "held")
    fresh = Holder(opt)  # traced by the save itself
    with pytest.raises(SolSaveError, match=REFUSED):
        tf.saved_model.save(fresh, str(tmp_path / "fresh"))
    assert _nothing_written(tmp_path / "fresh")


def test_saved_model_of_a_function_calling_the_layer_is_refused(opt: keras.layers.Layer, x: np.ndarray,
                                                                tmp_path: Path) -> None:
    """The module does not hold the layer, only a function that calls it."""
    serve = tf.function(lambda t: opt(t) * 2.0, input_signature=[SPEC])
    serve(x)
    module = tf.Module()
    module.serve = serve
    with pytest.raises(SolSaveError, match=REFUSED):
        tf.saved_model.save(module, str(tmp_path / "closure"))
    # a concrete function traced earlier, given as the signature: TensorFlow itself refuses it
    # for the untracked guard variable its graph captures, whose name says what to do
    concrete = tf.function(lambda t: opt(t) + 1.0).get_concrete_function(SPEC)
    bare = tf.Module()
    with pytest.raises(AssertionError, match=GUARD_NAME):
        tf.saved_model.save(bare, str(tmp_path / "concrete"), signatures={"serving_default": concrete})
    assert _nothing_written(tmp_path / "closure") and _nothing_written(tmp_path / "concrete")


def test_keras_export_and_keras_file_are_refused(opt: keras.layers.Layer, tmp_path: Path) -> None:
    inp = keras.Input((4,), batch_size=2)
    outer = keras.Model(inp, L.Dense(1)(opt(inp)))
    with pytest.raises(SolSaveError, match=REFUSED):
        outer.export(str(tmp_path / "exported"))
    assert _nothing_written(tmp_path / "exported")
    with pytest.raises(SolSaveError, match=REFUSED):
        outer.save(str(tmp_path / "outer.keras"))
    # Keras opens the file before it asks the layers for their configuration: it stays empty
    assert (tmp_path / "outer.keras").stat().st_size == 0


def test_checkpoints_and_weight_files_work(model: keras.Model, opt: keras.layers.Layer, x: np.ndarray,
                                           tmp_path: Path) -> None:
    """They hold the model's variables only; the optimized layer reads them back (restoring
    changes the weights: the next call sees it)."""
    ref = model(x).numpy()
    inp = keras.Input((4,), batch_size=2)
    outer = keras.Model(inp, opt(inp))
    outer.save_weights(str(tmp_path / "outer.weights.h5"))
    checkpoint = tf.train.Checkpoint(model=outer)
    path = checkpoint.save(str(tmp_path / "ckpt"))
    weights = model.get_weights()
    try:
        model.set_weights([w * 0 for w in weights])
        checkpoint.restore(path).assert_consumed()
        assert_close(opt(x).numpy(), ref, 1e-4)
        model.set_weights([w * 0 for w in weights])
        outer.load_weights(str(tmp_path / "outer.weights.h5"))
        assert_close(opt(x).numpy(), ref, 1e-4)
    finally:
        model.set_weights(weights)


_NEW_PROCESS = textwrap.dedent("""
    import json, os, sys
    import numpy as np, keras, tensorflow as tf
    import sol

    saved, keras_file, out, with_sol = sys.argv[1:5]
    x = np.asarray(json.load(open(os.path.join(out, "x.json"))), "float32")
    # another sol model runs inside a tf.function first: its numpy_function takes key pyfunc_0
    keras.utils.set_random_seed(5)
    other = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2, kernel_initializer="ones")])
    other_fast = sol.optimize(other, x, device="x86")
    other_out = tf.function(lambda t: other_fast(t))(tf.constant(x)).numpy()
    results = {"other": other_out.tolist(), "with_sol": None}
    if os.path.exists(with_sol):  # written only where saving a model holding sol's programs was not refused
        try:
            results["with_sol"] = tf.saved_model.load(with_sol).serve(tf.constant(x)).numpy().tolist()
        except Exception as exc:
            results["with_sol"] = f"{type(exc).__name__}: {exc}"[:300]
    # the original model as a SavedModel, optimized after loading, run inside a tf.function
    loaded = tf.saved_model.load(saved)
    fast = sol.optimize(loaded.serve, x, device="x86")
    results["saved_model"] = tf.function(lambda t: fast(t))(tf.constant(x)).numpy().tolist()
    # the original model as a .keras file, the same
    restored = keras.models.load_model(keras_file)
    fast_keras = sol.optimize(restored, x, device="x86")
    results["keras"] = tf.function(lambda t: fast_keras(t))(tf.constant(x)).numpy().tolist()
    # and saving the optimized one is refused here too
    try:
        tf.saved_model.save(fast_keras, os.path.join(out, "refused"))
        results["refused"] = False
    except sol.errors.SolError:
        results["refused"] = not os.path.exists(os.path.join(out, "refused"))
    json.dump(results, open(os.path.join(out, "results.json"), "w"))
""")


def test_the_original_model_saved_and_optimized_in_a_new_process(model: keras.Model, opt: keras.layers.Layer,
                                                                 x: np.ndarray, tmp_path: Path) -> None:
    with_sol = tmp_path / "with_sol"
    with pytest.raises(SolSaveError):  # were it written, the new process would run the other model's program
        tf.saved_model.save(Holder(opt), str(with_sol))
    holder = tf.Module()
    holder.model = model
    holder.serve = tf.function(lambda t: model(t, training=False), input_signature=[tf.TensorSpec((None, 4))])
    tf.saved_model.save(holder, str(tmp_path / "saved"))
    model.save(str(tmp_path / "model.keras"))
    (tmp_path / "x.json").write_text(json.dumps(x.tolist()))
    script = tmp_path / "new_process.py"
    script.write_text(_NEW_PROCESS)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
    run = subprocess.run([sys.executable, str(script), str(tmp_path / "saved"), str(tmp_path / "model.keras"),
                          str(tmp_path), str(with_sol)], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-4000:]
    results = json.loads((tmp_path / "results.json").read_text())
    ref = model(x).numpy()
    assert_close(np.asarray(results["saved_model"], "float32"), ref, 1e-4)
    assert_close(np.asarray(results["keras"], "float32"), ref, 1e-4)
    assert not np.allclose(np.asarray(results["other"], "float32"), ref)  # the other model differs
    assert results["refused"] is True
    assert results["with_sol"] is None, results["with_sol"]
