"""Notice when the variables a compiled program read have changed since it was compiled.

Why: an inference program holds the variables' values as they were when it was compiled (library
ops copy weights into their own layout, core folds BatchNorm into convolution weights), so a later
``set_weights``, ``load_weights``, ``variable.assign`` or optimizer step would otherwise leave it
computing with the old ones: a silently wrong result.

How, cheaply and without hooks (TensorFlow has no version counter on variables): the importer
keeps a NumPy view of each variable's buffer (``np.asarray(var.value())`` aliases it). While such
a view is alive, TensorFlow never writes that buffer in place: every write (``assign``,
``assign_add``, a slice assignment, Keras' and TensorFlow's optimizer updates, in eager mode, in
a ``tf.function`` or under XLA) allocates a new buffer for the variable and leaves ours alone.
So a variable is unchanged exactly while reading it still returns our buffer, and a check is one
read and one pointer comparison per variable. A variable in TensorFlow's copy-on-read mode (after
a sparse read such as ``tf.gather`` on it) returns a fresh copy at every read; there the values
are compared instead.

The addresses come from one op of sol's own (:mod:`sol_tensorflow.buffers`: the variables'
buffers read in C++, about 0.7 us per variable) where it could be built; otherwise through
TensorFlow's reads. Measured cost per check that way (2-core machine, busy; medians in one
process): about 10 us per variable read one by one, about 4 us per variable read in one
``tf.function`` (plus about 150 us per call), so :class:`WeightsWatch` reads small sets one by one
and large ones in one function.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from sol_tensorflow import buffers

log = logging.getLogger("sol")

BATCH_FROM = 32
"""From this many variables on, one ``tf.function`` reads them all (cheaper per variable)."""


def view(var: Any) -> np.ndarray:
    """A NumPy array aliasing ``var``'s current buffer (no copy on CPU): the snapshot a compiled
    program reads, and the reference that makes TensorFlow copy the buffer on the next write."""
    return np.asarray(var.value())


def _address(a: np.ndarray) -> int:
    return int(a.__array_interface__["data"][0])


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit for bit (a NaN equals itself; -0.0 and 0.0 differ, which at worst compiles again)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(np.array_equal(np.asarray(a, order="C").reshape(-1).view(np.uint8),
                               np.asarray(b, order="C").reshape(-1).view(np.uint8)))


class WeightsWatch:
    """``changed()`` says whether any of ``snapshots`` (``(variable, view)`` pairs taken when the
    program was compiled) no longer holds its variable's value. Thread-safe."""

    def __init__(self, snapshots: Sequence[tuple[Any, np.ndarray]]) -> None:
        # an empty variable cannot change; one sol cannot hold (strings) no program reads
        kept = [(v, a) for v, a in snapshots if a.size and a.dtype.kind in "biuf"]
        self._variables = [v for v, _ in kept]
        self._views = [a for _, a in kept]  # keeps the buffers alive: see the module doc
        self._addresses = tuple(_address(a) for a in self._views)
        self._wanted = np.array(self._addresses, np.int64)
        self._handles = [v.handle for v in self._variables]
        self._native = True  # sol's buffer op may read them (cleared where it cannot: another device)
        if self._variables:
            buffers.prepare()
        self._compare: set[int] = set()  # indices of variables in copy-on-read mode
        self._batched: Any = None
        self._lock = threading.Lock()

    @property
    def variables(self) -> list[Any]:
        return list(self._variables)

    def changed(self, batched: bool = True) -> bool:
        """``batched``: may read through one ``tf.function`` (not while holding a lock that a
        TensorFlow thread may wait for: the function's reads could need such a thread)."""
        if not self._variables:
            return False
        read = buffers.ready() if self._native else None
        if read is not None:
            try:
                moved = np.flatnonzero(read(self._handles) != self._wanted)
            except Exception as exc:  # noqa: BLE001 - e.g. a variable on another device: TensorFlow's reads
                log.info("sol: reading the variables' buffers directly failed (%s); reading them through "
                         "TensorFlow from now on", exc)
                with self._lock:
                    self._native = False
            else:
                if not len(moved) or self._still_equal(moved):
                    return False
                return self._differs()
        if batched and len(self._variables) >= BATCH_FROM:
            if self._read_batched():
                return False
        elif self._same(self._read_each()):
            return False
        return self._differs()  # rare: some buffer moved; compare values

    def _still_equal(self, moved: np.ndarray) -> bool:
        """Whether every variable whose buffer is not ours is one in copy-on-read mode (its own
        buffer is never the copy a read gave us) still holding our values."""
        if not all(int(i) in self._compare for i in moved):
            return False
        with tf.init_scope():
            return all(_equal(view(self._variables[int(i)]), self._views[int(i)]) for i in moved)

    # --- reading --------------------------------------------------------------------------------
    def _read_each(self) -> list[np.ndarray]:
        return [np.asarray(tf.raw_ops.ReadVariableOp(resource=v.handle, dtype=v.dtype)) for v in self._variables]

    def _same(self, arrays: Sequence[np.ndarray]) -> bool:
        return all(_address(a) == want or i in self._compare and _equal(a, self._views[i])
                   for i, (a, want) in enumerate(zip(arrays, self._addresses)))

    def _read_batched(self) -> bool:
        """One ``tf.function`` call: the reads and the comparison inside (returns True when every
        buffer is ours or equal to ours)."""
        if self._batched is None:
            with self._lock, tf.init_scope():
                if self._batched is None:
                    variables = self._variables

                    def same(*arrays: np.ndarray) -> np.bool_:
                        return np.bool_(self._same(arrays))

                    def check() -> Any:
                        return tf.numpy_function(same, [v.read_value() for v in variables], tf.bool,
                                                 stateful=True, name="sol_weights_check")

                    self._batched = tf.function(check, autograph=False).get_concrete_function()
        with tf.init_scope():
            return bool(self._batched())

    def _differs(self) -> bool:
        """Compare values where a buffer moved: equal values (a copy-on-read variable) are
        remembered, to be compared by value from now on; any other difference is a change."""
        with tf.init_scope():
            arrays = [view(v) for v in self._variables]
        for i, (a, want) in enumerate(zip(arrays, self._addresses)):
            if _address(a) == want:
                continue
            if not _equal(a, self._views[i]):
                return True
            with self._lock:
                self._compare.add(i)
        return False
