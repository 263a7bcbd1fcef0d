"""sol's programs inside TensorFlow graphs, and why a graph holding them cannot be saved.

Inside a ``tf.function`` (or a Keras model's ``predict``/``fit``), a compiled program runs
through ``tf.numpy_function``. That op refers to its Python function by a key that is only valid
in the process that made it (``pyfunc_0``, ``pyfunc_1``, ... in creation order). A SavedModel
holding such an op fails in a new process ("could not find callback with key=pyfunc_0"), or,
worse, runs whatever function got that key there: another model's program. So saving is refused
up front, with an error that says what to save instead:

* the layer itself refuses to be part of a SavedModel (``tf.saved_model.save`` of a module or
  model holding it, ``model.export``) and to be serialized (``model.save("x.keras")``);
* a function traced while a SavedModel is being written (``tf.saved_model.save`` traces the
  functions it was given) refuses to take a program;
* every graph that runs a program captures a guard variable that nothing tracks, so that
  ``tf.saved_model.save`` of a function traced earlier, whose module does not hold the layer,
  fails too: TensorFlow refuses to export a function capturing an untracked variable, and the
  variable's name, which it prints, says why.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

import tensorflow as tf

from sol.plugin_api import SolError

SAVE_ADVICE = ("sol's compiled programs are native code loaded into this process, which a saved graph cannot "
               "refer to (a new process would run another function or none). Save the original model instead "
               "(the model you passed to optimize, also `.model` of the optimized one: tf.saved_model.save, "
               "model.export, model.save) and call sol.optimize on it after loading.")

GUARD_NAME = "sol_compiled_program_cannot_be_saved_save_the_original_model_and_optimize_it_after_loading"


class SolSaveError(SolError):
    """A model holding sol-compiled programs cannot be saved. (Constructed from its message
    alone, so that TensorFlow re-raises it as it is when it comes from a function being traced.)"""


def refuse_saving(what: str) -> SolSaveError:
    return SolSaveError(f"{what}: {SAVE_ADVICE}")


_guard: Any = None
_guard_lock = threading.Lock()


def _guard_variable() -> Any:
    global _guard
    with _guard_lock:
        if _guard is None:
            with tf.init_scope():
                _guard = tf.Variable(False, trainable=False, name=GUARD_NAME)
        return _guard


# Made now, when the frontend is loaded (by optimize, eagerly), not when a graph first runs a
# program: that can be a later trace of a user's tf.function (one that first traced the original
# model), and TensorFlow refuses variables created on a non-first trace, init_scope or not.
_guard_variable()


def in_save_context() -> bool:
    """Whether TensorFlow is writing a SavedModel on this thread right now."""
    try:
        from tensorflow.python.saved_model import save_context
    except ImportError:  # pragma: no cover - TensorFlow moved it; the guard variable still refuses
        return False
    return bool(save_context.in_save_context())


def numpy_call(fn: Callable[..., Any], values: Sequence[Any], outputs: Sequence[tuple[Any, Any]],
               name: str) -> list[Any]:
    """``fn`` (NumPy arrays in, NumPy arrays out) as a ``tf.numpy_function`` of the graph being
    traced, its outputs given ``outputs``' (dtype, static shape); see the module doc for saving."""
    if in_save_context():
        raise refuse_saving("a function calling a sol-optimized model is being saved")
    graph = tf.compat.v1.get_default_graph()
    capture = getattr(graph, "capture", None)
    guards = [capture(_guard_variable().handle).op] if capture is not None else []
    with tf.control_dependencies(guards):
        outs = tf.numpy_function(fn, [tf.convert_to_tensor(v) for v in values], [d for d, _ in outputs],
                                 stateful=False, name=name)
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    for o, (_, shape) in zip(outs, outputs):
        o.set_shape(shape)
    return outs
