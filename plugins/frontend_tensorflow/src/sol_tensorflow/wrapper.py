"""A compiled sol program as a Keras layer that a Keras user can use like the model it came from.

Callable on ``tf.Tensor``s or NumPy arrays (eagerly it runs the program directly), usable inside
``tf.function`` and inside other Keras models (there the program runs through
``tf.numpy_function``, with the static output shapes set), and ``.trainable_variables`` are the
original model's variables (the same objects). Inputs are checked first: another number of
inputs, dtype, rank or shape than the example inputs is a ``TypeError``/``ValueError`` naming
expected and given. Where TensorFlow runs the whole model (unsupported ops, ``fallback``), calls
go to the traced TensorFlow function instead.
"""

from __future__ import annotations

from typing import Any

import keras
import numpy as np
import tensorflow as tf

from sol.ir import Graph
from sol.program import Program
from sol_tensorflow.importer import FALLBACK_KEY, TRACED_KEY, Traced


class SolKerasModel(keras.layers.Layer):
    """Runs the program sol compiled from a Keras model or ``tf.function`` (see the module doc)."""

    def __init__(self, program: Program, model: Any, graph: Graph) -> None:
        traced: Traced = graph.meta[TRACED_KEY]
        super().__init__(name=f"sol_{traced.name}".replace("/", "_"), trainable=True)
        self._sol_program = program
        self._sol_traced = traced
        self._sol_fallback: list[str] = list(graph.meta.get(FALLBACK_KEY) or [])
        self._sol_model = model  # a Keras model is tracked as a sub-layer: its variables are ours
        self.built = True

    # --- what Keras users read ------------------------------------------------------------------
    @property
    def program(self) -> Program:
        return self._sol_program

    @property
    def model(self) -> Any:
        return self._sol_model

    @property
    def fallback_ops(self) -> list[str]:
        """TensorFlow op types that made TensorFlow run the model (empty when sol runs it)."""
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
        if self._sol_fallback:
            return self._sol_traced.fn(*inputs)
        flat = self._run(inputs)
        return tf.nest.pack_sequence_as(self._sol_traced.structure, flat)

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
        how = f"TensorFlow (fallback: {', '.join(self._sol_fallback)})" if self._sol_fallback else repr(self.program)
        return f"<SolKerasModel {self._sol_traced.name}: {how}>"


def _describe(spec: Any) -> str:
    return f"{spec.dtype.name}{list(spec.shape)}"
