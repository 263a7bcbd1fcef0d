"""sol's variable-buffer op (sol_tensorflow.buffers): the weight check reads every variable's
buffer address in one C++ op instead of through TensorFlow's reads (4.5 us per variable: 3 ms
per call for DenseNet121), and still sees every kind of change."""

from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from sol_tensorflow import buffers
from sol_tensorflow.weights import WeightsWatch, view


def _reader():  # type: ignore[no-untyped-def]
    read = buffers.reader()
    assert read is not None, "g++ is installed here: the op must build and pass its check"
    assert buffers.ready() is read  # what the watches use once the background build is done
    return read


def test_the_op_reads_the_buffer_a_read_returns_and_sees_it_move() -> None:
    read = _reader()
    v = tf.Variable(tf.ones((4, 3)))
    w = tf.Variable(tf.zeros((7,)))
    snap_v, snap_w = view(v), view(w)
    got = read([v.handle, w.handle])
    assert got.dtype == np.int64 and list(got) == [snap_v.__array_interface__["data"][0],
                                                   snap_w.__array_interface__["data"][0]]
    v.assign(tf.fill((4, 3), 2.0))
    after = read([v.handle, w.handle])
    assert after[0] != got[0] and after[1] == got[1]


def test_the_watch_uses_the_op_not_tensorflows_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    _reader()
    variables = [tf.Variable(tf.random.normal((5, 5))) for _ in range(40)]  # above BATCH_FROM
    watch = WeightsWatch([(v, view(v)) for v in variables])

    def forbidden(*_: object) -> None:
        raise AssertionError("read through TensorFlow")

    monkeypatch.setattr(WeightsWatch, "_read_batched", forbidden)
    monkeypatch.setattr(WeightsWatch, "_read_each", forbidden)
    assert not watch.changed() and not watch.changed(batched=False)
    tf.function(lambda: variables[17].assign_add(tf.ones((5, 5))))()
    assert watch.changed()


def test_a_copy_on_read_variable_is_compared_by_value_through_the_op() -> None:
    _reader()
    table = tf.Variable(tf.random.normal((10, 4)))
    other = tf.Variable(tf.random.normal((3,)))
    watch = WeightsWatch([(table, view(table)), (other, view(other))])
    tf.nn.embedding_lookup(table, [1, 2])  # copy-on-read from now on: its buffer is not ours
    for _ in range(3):
        assert not watch.changed()
    table.scatter_nd_update([[0]], [tf.ones(4)])  # written in place (copy-on-read mode)
    assert watch.changed()
