"""A compiled sol program as a Keras layer that a Keras user can use like the model it came from.

Callable on ``tf.Tensor``s or NumPy arrays (eagerly it runs the program directly), usable inside
``tf.function`` and inside other Keras models (there the program runs through
``tf.numpy_function``, with the static output shapes set), and ``.trainable_variables`` are the
original model's variables (the same objects). Inputs are checked first: another number of
inputs, dtype, rank or shape than the example inputs is a ``TypeError``/``ValueError`` naming
expected and given. Where TensorFlow runs some ops (unsupported ops, ``fallback``), a call runs
sol's parts and TensorFlow's steps in turn (:mod:`sol_tensorflow.fallback`). A call with
``training=True``, under an eager ``tf.GradientTape``, after a training call, or on a model
optimized with ``training=True`` runs a training variant instead: differentiable, reading the
variables at every call (:mod:`sol_tensorflow.training`).
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from sol.ir import Graph
from sol.program import Program
from sol_tensorflow.fallback import Runner, Split
from sol_tensorflow.importer import FALLBACK_KEY, OPTIONS_KEY, SPLIT_KEY, TRACED_KEY, Traced
from sol_tensorflow.training import TRAIN_KEY, tape_recording, training_call


class SolKerasModel(keras.layers.Layer):
    """Runs the program sol compiled from a Keras model or ``tf.function`` (see the module doc)."""

    def __init__(self, program: Program, model: Any, graph: Graph) -> None:
        traced: Traced = graph.meta[TRACED_KEY]
        super().__init__(name=f"sol_{traced.name}".replace("/", "_"), trainable=True)
        self._sol_program = program
        self._sol_traced = traced
        self._sol_fallback: list[str] = list(graph.meta.get(FALLBACK_KEY) or [])
        self._sol_runner: Runner | None = None
        cut: Split | None = graph.meta.get(SPLIT_KEY)
        if cut is not None:  # TensorFlow runs some ops: compile the other parts for the same device
            from sol.api import compile_graph

            options = graph.meta.get(OPTIONS_KEY, {})
            parts = cut.parts
            programs = [program] + [compile_graph(p.graph, program.device, options=options) for p in parts[1:]]
            self._sol_runner = Runner(cut, programs[:len(parts)])
        self._sol_model = model  # a Keras model is tracked as a sub-layer: its variables are ours
        # options for training variants (sol_tensorflow.training); kept out of Keras' tracking
        self.__dict__["_sol_train_options"] = dict(graph.meta.get(TRAIN_KEY) or {})
        self.built = True

    # --- what Keras users read ------------------------------------------------------------------
    @property
    def program(self) -> Program:
        return self._sol_program

    @property
    def model(self) -> Any:
        return self._sol_model

    @property
    def programs(self) -> list[Program]:
        """Every compiled part (one unless TensorFlow runs some ops between parts)."""
        return self._sol_runner.programs if self._sol_runner is not None else [self._sol_program]

    @property
    def fallback_ops(self) -> list[str]:
        """TensorFlow op types that TensorFlow runs (empty when sol compiles the whole model)."""
        return list(self._sol_fallback)

    @property
    def trainable_variables(self) -> list[Any]:
        model = self._sol_model
        if isinstance(model, keras.layers.Layer):
            return list(model.trainable_variables)
        return list(self._sol_traced.fn.trainable_variables)

    @property
    def non_trainable_variables(self) -> list[Any]:
        model = self._sol_model
        if isinstance(model, keras.layers.Layer):
            return list(model.non_trainable_variables)
        trainable = {id(v) for v in self.trainable_variables}
        return [v for v in self._sol_traced.variables if id(v) not in trainable]

    @property
    def variables(self) -> list[Any]:
        return self.trainable_variables + self.non_trainable_variables

    @property
    def weights(self) -> list[Any]:
        return self.variables

    # --- calling --------------------------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if any(isinstance(x, keras.KerasTensor) for x in tf.nest.flatten(args)):
            return super().__call__(*args, **kwargs)  # building a functional model around us
        return self.call(*args, **kwargs)

    def call(self, *args: Any, training: Any = None, **kwargs: Any) -> Any:
        if kwargs:
            raise TypeError(f"{self.name}: unexpected keyword argument(s) {', '.join(kwargs)}")
        inputs = self._flat_inputs(args)
        if training is None:
            training = _context_training()
        if training or self._sol_differentiable():
            flat = training_call(self, inputs, bool(training))
        else:
            flat = self._sol_runner(inputs) if self._sol_runner is not None else self._run(inputs)
        return tf.nest.pack_sequence_as(self._sol_traced.structure, flat)

    def _sol_differentiable(self) -> bool:
        """Whether an inference-mode call must run a training variant: compiled for training,
        trained through sol already (the inference program holds the old weights), or a tape
        records this eager call."""
        return bool(self._sol_train_options.get("training") or self.__dict__.get("_sol_trained")
                    or tape_recording())

    def compute_output_spec(self, *args: Any, **kwargs: Any) -> Any:
        def spec(t: Any) -> Any:
            return keras.KerasTensor(tuple(t.shape), dtype=t.dtype.name)

        return tf.nest.map_structure(spec, self._sol_traced.structure)

    def _flat_inputs(self, args: tuple[Any, ...]) -> list[Any]:
        specs = self._sol_traced.specs
        items = list(args)
        if len(items) == 1 and isinstance(items[0], (list, tuple)) and len(specs) != 1:
            items = list(items[0])
        if len(items) != len(specs):
            raise TypeError(f"{self.name} expects {len(specs)} input(s) ({', '.join(map(_describe, specs))}), "
                            f"got {len(items)}")
        out = []
        for i, (x, spec) in enumerate(zip(items, specs)):
            if not isinstance(x, (tf.Tensor, tf.Variable, np.ndarray)) and not hasattr(x, "__array__"):
                raise TypeError(f"input {i}: expected a tf.Tensor or NumPy array, got {type(x).__name__}")
            dtype = tf.as_dtype(x.dtype) if hasattr(x, "dtype") else None
            if dtype != spec.dtype:
                given = dtype.name if dtype is not None else type(x).__name__
                raise TypeError(f"input {i}: expected dtype {spec.dtype.name}, got {given}")
            shape = tf.TensorShape(x.shape)
            want = tuple(spec.shape)
            if shape.rank != len(want):
                raise ValueError(f"input {i}: expected rank {len(want)} with shape {want}, "
                                 f"got rank {shape.rank} with shape {tuple(shape)}")
            if not shape.is_compatible_with(spec.shape):
                raise ValueError(f"input {i}: expected shape {want}, got {tuple(shape)} (sol compiled "
                                 f"{self._sol_traced.name} for the example input's shape)")
            out.append(x)
        return out

    def _run(self, inputs: list[Any]) -> list[Any]:
        program = self._sol_program
        if tf.executing_eagerly() and not any(isinstance(x, tf.Tensor) and not hasattr(x, "numpy") for x in inputs):
            arrays = [x.numpy() if hasattr(x, "numpy") else np.asarray(x) for x in inputs]
            return [tf.convert_to_tensor(a) for a in program(*arrays)]
        tout = [tf.as_dtype(t.dtype) for t in program.output_types]
        outs = tf.numpy_function(lambda *a: program(*a), [tf.convert_to_tensor(x) for x in inputs], tout,
                                 stateful=False, name="sol_program")
        outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
        for o, t in zip(outs, program.output_types):
            o.set_shape(t.shape)
        return outs

    def get_config(self) -> dict[str, Any]:
        raise NotImplementedError("a sol-optimized model cannot be serialized; save the original model "
                                  "(.model) and optimize it again after loading")

    def __repr__(self) -> str:
        how = (f"{len(self.programs)} sol part(s), TensorFlow runs {', '.join(self._sol_fallback)}"
               if self._sol_fallback else repr(self.program))
        return f"<SolKerasModel {self._sol_traced.name}: {how}>"


def _context_training() -> Any:
    """The ``training`` flag of the Keras call this one runs in (an outer model called with
    ``training=True`` passes it down), as ``keras.layers.Layer.__call__`` would give it."""
    try:
        from keras.src.backend.common.global_state import get_global_attribute
    except ImportError:  # pragma: no cover - Keras moved it
        return None
    ctx = get_global_attribute("current_call_ctx")
    return getattr(ctx, "training", None)


def _describe(spec: Any) -> str:
    return f"{spec.dtype.name}{list(spec.shape)}"
