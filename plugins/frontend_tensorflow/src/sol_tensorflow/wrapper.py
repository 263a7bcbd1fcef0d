"""A compiled sol program as a Keras layer that a Keras user can use like the model it came from.

Callable on ``tf.Tensor``s or NumPy arrays (eagerly it runs the program directly), usable inside
``tf.function`` and inside other Keras models (there the program runs through
``tf.numpy_function``, with the static output shapes set), and ``.trainable_variables`` are the
original model's variables (the same objects). Inputs are checked first: another number of
inputs, dtype or rank than the example inputs is a ``TypeError``/``ValueError`` naming expected
and given. Where TensorFlow runs some ops (unsupported ops, ``fallback``), a call runs sol's parts
and TensorFlow's steps in turn (:mod:`sol_tensorflow.fallback`).

Shapes: a call with other shapes than the example inputs (batch 3 after batch 8) is compiled
again for those shapes, once, and the variant kept (:mod:`sol_tensorflow.variants`), with a log
message on ``logging.getLogger("sol")``; ``optimize(..., dynamic=False)`` makes another shape an
error, as does a shape a ``tf.function``'s input signature does not allow. Inside a
``tf.function`` traced with open dimensions (Keras' ``predict`` and ``fit`` trace the batch
dimension as ``None``), the variant is chosen when the graph runs, by the shapes that arrive.

Weights: inference programs hold the variables' values as they were when compiled; a change to
them afterwards (``set_weights``, ``load_weights``, ``variable.assign``, an optimizer step) is seen
by the next call, which compiles again rather than use stale weights
(:mod:`sol_tensorflow.weights`; ``optimize(..., check_weights=False)`` skips the per-call check).
Training variants read the variables at every call: nothing to recompile.

Training: a call with ``training=True``, under an eager ``tf.GradientTape``, after a training
call, or on a model optimized with ``training=True`` runs a training variant instead:
differentiable, reading the variables at every call (:mod:`sol_tensorflow.training`).

Threads: calls may come from several threads at once. Tracing and compiling a variant happen
under one lock per layer (one variant at a time; running compiled variants takes no lock); an
exception while tracing or compiling leaves no variant behind, so the layer and the model are as
before. Programs, inference and training alike, run on the calling thread (or, inside a graph, on
the thread TensorFlow runs the ``tf.numpy_function`` on): whether calls may overlap is the
device's answer (sol's plugin contract), not this frontend's.

Saving: a model holding this layer cannot be saved as a SavedModel or ``.keras`` file (the programs
are native code of this process); the error says to save the original model and optimize it after
loading (:mod:`sol_tensorflow.graphcall`).
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass, field
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from sol.plugin_api import Graph, PartitionedProgram, Program
from sol_tensorflow.fallback import Runner
from sol_tensorflow.graphcall import numpy_call, refuse_saving
from sol_tensorflow.importer import TRACED_KEY, Traced, problem_lines, trace
from sol_tensorflow.training import TRAIN_KEY, TrainingVariant, build_variant, tape_recording
from sol_tensorflow.variants import (
    Inference,
    Key,
    compile_variant,
    describe,
    from_graph,
    key_of,
    key_of_specs,
    probed_for,
)

log = logging.getLogger("sol")


@dataclass
class _State:
    """What the layer keeps beside Keras' tracking (kept out of it: none of it is a weight)."""

    traced: Traced  # the model traced for the example inputs
    device: str
    options: dict[str, Any]  # optimize's options, without the mode
    train_options: dict[str, Any]  # with it
    primary: Key
    variants: dict[Key, Inference] = field(default_factory=dict)
    train_variants: dict[tuple[Key, bool], TrainingVariant] = field(default_factory=dict)
    relaxed: dict[tuple[Any, ...], list[tf.TensorShape]] = field(default_factory=dict)
    warned: set[str] = field(default_factory=set)  # fallback warning lines given already
    train_warned: set[str] = field(default_factory=set)
    trained: bool = False  # trained through sol: inference reads the variables too
    lock: threading.RLock = field(default_factory=threading.RLock)


class SolKerasModel(keras.layers.Layer):
    """Runs the programs sol compiled from a Keras model or ``tf.function`` (see the module doc)."""

    def __init__(self, program: Program | PartitionedProgram, model: Any, graph: Graph) -> None:
        traced: Traced = graph.meta[TRACED_KEY]
        super().__init__(name=f"sol_{traced.name}".replace("/", "_"), trainable=True)
        self._sol_model = model  # a Keras model is tracked as a sub-layer: its variables are ours
        train_options = dict(graph.meta.get(TRAIN_KEY) or {})
        options = {k: v for k, v in train_options.items() if k != "training"}
        state = _State(traced, program.device, options, train_options, key_of_specs(traced.specs))
        if probed_for(graph, program.device):
            first = from_graph(program, graph, options.get("check_weights", True) is not False)
        else:  # the import asked another device than the one core compiled for: ask this one
            first = compile_variant(traced, program.device, options, state.warned)
        state.variants[state.primary] = first
        if first.runner is not None:  # optimize warned about these: not again for other shapes
            state.warned.update(problem_lines(first.runner.cut.fallen))
        self.__dict__["_sol"] = state
        self.built = True

    # --- what Keras users read ------------------------------------------------------------------
    @property
    def _sol_state(self) -> _State:
        return self.__dict__["_sol"]  # type: ignore[no-any-return]

    @property
    def _sol_primary(self) -> Inference:
        state = self._sol_state
        return state.variants.get(state.primary) or next(iter(state.variants.values()))

    @property
    def program(self) -> Program | None:
        """The compiled program (the first part where TensorFlow runs some ops; None where it
        runs them all)."""
        return self._sol_primary.program

    @property
    def model(self) -> Any:
        return self._sol_model

    @property
    def programs(self) -> list[Program]:
        """Every compiled part for the example inputs' shapes (one unless TensorFlow runs some
        ops between parts)."""
        return self._sol_primary.programs

    @property
    def variants(self) -> list[Inference | TrainingVariant]:
        """The compiled variants: inference ones (one per input shapes), then training ones."""
        state = self._sol_state
        return [*state.variants.values(), *state.train_variants.values()]

    @property
    def _sol_runner(self) -> Runner | None:
        return self._sol_primary.runner

    @property
    def fallback_ops(self) -> list[str]:
        """TensorFlow op types that TensorFlow runs (empty when sol compiles the whole model)."""
        return list(self._sol_primary.fallback)

    @property
    def trainable_variables(self) -> list[Any]:
        model = self._sol_model
        if isinstance(model, keras.layers.Layer):
            return list(model.trainable_variables)
        return list(self._sol_state.traced.fn.trainable_variables)

    @property
    def non_trainable_variables(self) -> list[Any]:
        model = self._sol_model
        if isinstance(model, keras.layers.Layer):
            return list(model.non_trainable_variables)
        trainable = {id(v) for v in self.trainable_variables}
        return [v for v in self._sol_state.traced.variables if id(v) not in trainable]

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
            flat = self._train(inputs, bool(training))
        else:
            flat = self._infer(inputs)
        return tf.nest.pack_sequence_as(self._sol_state.traced.structure, flat)

    def _sol_differentiable(self) -> bool:
        """Whether an inference-mode call must run a training variant: compiled for training,
        trained through sol already (the inference program holds the old weights), or a tape
        records this eager call."""
        state = self._sol_state
        return bool(state.train_options.get("training") or state.trained or tape_recording())

    def _infer(self, inputs: list[Any]) -> list[Any]:
        key = key_of(inputs)
        if tf.executing_eagerly() and all(hasattr(x, "numpy") or isinstance(x, np.ndarray) for x in inputs):
            assert key is not None
            return self._variant(key).run_eager(inputs)
        if key is not None:  # compiled now (for its output types); the weights are checked when it runs
            return self._variant(key, check=False).run_graph(inputs, lambda: self._variant(key))
        # open dimensions: the shapes that arrive choose the variant when the graph runs
        shapes = self._output_shapes(inputs)
        dtypes = [d for d, _ in self._sol_primary.output_types()]

        def run(*arrays: np.ndarray) -> list[Any]:
            chosen = key_of(arrays)
            assert chosen is not None
            self._check_shapes(arrays)
            return [np.asarray(o) for o in self._variant(chosen).run_arrays(arrays)]

        return numpy_call(run, inputs, list(zip(dtypes, shapes)), "sol_program")

    def _variant(self, key: Key, check: bool = True) -> Inference:
        """The inference variant for ``key``: compiled on first use, compiled again when the
        weights it holds changed (``check``: run eagerly, not while tracing). Only compiling
        takes the lock."""
        state = self._sol_state
        variant = state.variants.get(key)
        if variant is not None and (not check or variant.watch is None or not variant.watch.changed()):
            return variant
        with state.lock, tf.init_scope():  # a first call may come while a tf.function is traced
            variant = state.variants.get(key)
            if variant is None:
                log.info("sol: compiling %s again for inputs (%s); the example inputs were (%s)",
                         state.traced.name, describe(key), describe(state.primary))
                traced = self._retrace([tf.TensorSpec(s, d) for s, d in key])
            elif variant.watch is not None and variant.watch.changed(batched=False):
                log.info("sol: the weights of %s changed since it was compiled; compiling again", state.traced.name)
                traced = variant.traced
            else:
                return variant  # another thread compiled it meanwhile
            variant = compile_variant(traced, state.device, state.options, state.warned)
            state.variants[key] = variant
            return variant

    def _train(self, inputs: list[Any], training: bool) -> list[Any]:
        """Run the training variant for this mode and these shapes (compiled on first use and
        kept). After one training-mode call the layer stays on training variants for inference
        too: they read the (now trained) variables."""
        state = self._sol_state
        key = key_of(inputs) or state.primary  # open dimensions: the example's shapes
        variant = state.train_variants.get((key, training))
        if variant is None:
            with state.lock, tf.init_scope():  # the first call may come while Keras traces its train step
                variant = state.train_variants.get((key, training))
                if variant is None:
                    specs = [tf.TensorSpec(s, d) for s, d in key]
                    variant = build_variant(self._sol_model, state.traced, specs, training, state.device,
                                            state.options, state.train_warned)
                    state.train_variants[(key, training)] = variant
        if training:
            state.trained = True
        if variant.fallen:  # TensorFlow trains the model itself
            return self._run_model(inputs, training)
        return variant(inputs)

    def _run_model(self, inputs: list[Any], training: bool) -> list[Any]:
        model = self._sol_model
        if isinstance(model, (tf.types.experimental.ConcreteFunction, tf.types.experimental.PolymorphicFunction)):
            out = model(*inputs)
        else:
            out = model(list(inputs) if self._sol_state.traced.keras_inputs else inputs[0], training=training)
        return list(tf.nest.flatten(out))

    # --- shapes ---------------------------------------------------------------------------------
    def compute_output_spec(self, *args: Any, **kwargs: Any) -> Any:
        state = self._sol_state
        flat = tf.nest.flatten(args)
        shapes = self._output_shapes(flat) if len(flat) == len(state.traced.specs) else \
            [t.shape for t in state.traced.fn.outputs]
        dtypes = [t.dtype for t in state.traced.fn.outputs]
        specs = [keras.KerasTensor(tuple(s), dtype=d.name) for s, d in zip(shapes, dtypes)]
        return tf.nest.pack_sequence_as(state.traced.structure, specs)

    def _output_shapes(self, inputs: list[Any]) -> list[tf.TensorShape]:
        """The outputs' static shapes for inputs of these (possibly open) shapes, as TensorFlow
        traces the model for them (traced once per set of shapes)."""
        state = self._sol_state
        shapes = tuple(tuple(tf.TensorShape(x.shape).as_list()) for x in inputs)
        if shapes == tuple(tuple(s) for s, _ in state.primary):
            return [t.shape for t in state.traced.fn.outputs]
        found = state.relaxed.get(shapes)
        if found is None:
            model = self._sol_model
            if isinstance(model, tf.types.experimental.ConcreteFunction):
                found = [t.shape for t in model.outputs]  # its shapes are fixed
            else:
                specs = [tf.TensorSpec(s, spec.dtype) for s, spec in zip(shapes, state.traced.specs)]
                with state.lock, tf.init_scope():
                    found = [t.shape for t in self._retrace(specs, partial=True).fn.outputs]
            state.relaxed[shapes] = found
        return found

    def _retrace(self, specs: list[Any], partial: bool = False) -> Traced:
        """The model traced for other input specs, called as for the example inputs."""
        keras_list = self._sol_state.traced.keras_inputs
        return trace(self._sol_model, (specs,) if keras_list else tuple(specs), partial=partial)

    def _flat_inputs(self, args: tuple[Any, ...]) -> list[Any]:
        specs = self._sol_state.traced.specs
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
            out.append(x)
        self._check_shapes(out)
        return out

    def _check_shapes(self, inputs: Any) -> None:
        """Other shapes than the example's compile a variant unless the options or the model
        fix them: raise naming expected and given where they are fixed."""
        state = self._sol_state
        model = self._sol_model
        signature = getattr(model, "input_signature", None) if not isinstance(
            model, tf.types.experimental.ConcreteFunction) else None
        fixed = isinstance(model, tf.types.experimental.ConcreteFunction)
        for i, (x, spec) in enumerate(zip(inputs, state.traced.specs)):
            shape = tf.TensorShape(x.shape)
            if shape.is_compatible_with(spec.shape):
                continue
            want = tuple(spec.shape)
            if fixed or state.options.get("dynamic", True) is False:
                why = "a concrete function's shapes are fixed" if fixed else \
                    "optimized with dynamic=False; without it, sol compiles a variant for each new shape"
                raise ValueError(f"input {i}: expected shape {want}, got {tuple(shape)} ({why})")
            if signature is not None:
                allowed = tf.nest.flatten(signature)[i].shape
                if not shape.is_compatible_with(allowed):
                    raise ValueError(f"input {i}: expected a shape the input signature allows ({allowed}), "
                                     f"got {tuple(shape)}")

    # --- saving ---------------------------------------------------------------------------------
    def get_config(self) -> dict[str, Any]:
        raise refuse_saving(f"{self.name} cannot be serialized")

    def _trackable_children(self, save_type: str = "checkpoint", **kwargs: Any) -> dict[str, Any]:
        """Checkpoints (the model's variables) are fine; a SavedModel cannot hold the programs."""
        if save_type == "savedmodel":
            raise refuse_saving(f"{self.name} cannot be part of a SavedModel")
        return super()._trackable_children(save_type, **kwargs)  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        first = self._sol_primary
        how = (f"{len(first.programs)} sol part(s), TensorFlow runs {', '.join(first.fallback)}"
               if first.fallback else repr(first.program))
        return f"<SolKerasModel {self._sol_state.traced.name}: {how}>"


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
