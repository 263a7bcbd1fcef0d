"""Model text never becomes code or a path (issue #14, item 1), TensorFlow side: a
``tf.function``'s Python ``__name__`` and Keras model and layer names.

TensorFlow's name scopes admit only ``[A-Za-z0-9.][A-Za-z0-9_.\\/>-]*`` for Keras names (so no
line break reaches a Keras name), but a backslash, ``>`` and ``..`` pass; a ``tf.function``'s
``__name__`` is anything Python allows.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

import sol

sys.path.insert(0, str(Path(__file__).parent.parent))
from generated_source import assert_inert, files_under, sources  # noqa: E402
from tf_helpers import assert_close  # noqa: E402

# Runs at library load when it leaves the comment; "../../" to write outside SOL_DEBUG_DIR.
FUNCTION_NAME = '../../f\n__attribute__((constructor)) static void pwn(){__builtin_puts("SOLPWN");}\n//'


def test_hostile_tf_function_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    debug = tmp_path / "a" / "b" / "debug"
    monkeypatch.setenv("SOL_DEBUG_DIR", str(debug))

    def f(x: tf.Tensor) -> tf.Tensor:
        return tf.nn.relu(tf.tanh(x)) * 3.0 + 1.0

    f.__name__ = FUNCTION_NAME
    fn = tf.function(f)
    x = np.random.default_rng(0).standard_normal((2, 5)).astype("float32")
    fast = sol.optimize(fn, x, device="x86")
    assert_close(fast(x), fn(x), rtol=1e-5)
    assert [p for p in files_under(tmp_path) if debug not in p.parents] == []
    (folder,) = list(debug.iterdir())
    assert folder.name.startswith("_.._f___attribute__")
    found = sources(debug)
    assert found
    for text in found.values():
        assert_inert(text, ["SOLPWN", "__attribute__((constructor))", "pwn()"])


def test_hostile_keras_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A Keras model named ``..`` (its sources went to SOL_DEBUG_DIR's parent) with layers whose
    names end in backslashes (a ``//`` comment continued onto the next line)."""
    debug = tmp_path / "debug"
    monkeypatch.setenv("SOL_DEBUG_DIR", str(debug))
    inp = keras.Input((6,))
    y = keras.layers.Activation("tanh", name="b\\")(inp)
    y = keras.layers.Lambda(lambda t: t * 2.0 + 0.5, name="..\\..\\")(y)
    y = keras.layers.Activation("sigmoid", name="r>s")(y)
    y = keras.layers.Lambda(lambda t: t - 0.25, name="t-\\")(y)
    model = keras.Model(inp, y, name="..")
    x = np.random.default_rng(1).standard_normal((3, 6)).astype("float32")
    fast = sol.optimize(model, x, device="x86")
    assert_close(fast(x), model(x), rtol=1e-5)
    assert [p for p in files_under(tmp_path) if debug not in p.parents] == []
    assert [p.name for p in debug.iterdir()] != [".."] and len(os.listdir(debug)) == 1
    found = sources(debug)
    assert found
    for text in found.values():
        assert_inert(text, [])
