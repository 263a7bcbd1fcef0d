"""A compiled sol program as a Gluon ``HybridBlock`` that MXNet users use like the block it came from.

``SolBlock`` is a ``HybridBlock`` whose child is the original block, so ``collect_params()``
returns the original ``Parameter`` objects (a ``gluon.Trainer`` built on either updates the same
weights) and it nests inside larger networks, hybridized or not.

How a call runs:

* **NDArrays, autograd not recording**: the program runs directly on the arrays (inputs and
  parameters handed over through DLPack, no copies; results wrapped the same way). A call in
  training mode (``autograd.train_mode()``) runs the training-mode graph (BatchNorm with batch
  statistics and running-statistics updates, Dropout with a mask).
* **Under ``autograd.record()``**, or **inside a hybridized outer network** (Symbols): the program
  runs as an MXNet custom operator (``mx.nd.Custom``/``mx.sym.Custom``) whose backward is core
  autodiff's compiled backward (:func:`sol.plugin_api.compile_training`), so ``loss.backward()``
  fills the ``Parameter``\\ s' gradients and ``trainer.step`` trains the original block. The
  parameters the graph only reads (BatchNorm's running statistics) are the operator's auxiliary
  states: a training-mode call writes their new values (MXNet's momentum convention).

Weights: an inference call (NDArrays, not recording, not in training mode) runs a program with the
weights compiled in (BatchNorm folded, weights prepacked for the device's library once). Before
each such call the block reads MXNet's write counters of every parameter array
(:mod:`sol_mxnet.versions`: a few microseconds for hundreds of parameters, included in every
call's time); when a weight changed (``trainer.step``, ``set_data``, ``load_parameters``,
``param.data()[:] = ...``, ``initialize(force_reinit=True)``, ``cast``, ``reset_ctx``, a
training-mode call updating BatchNorm's running statistics) the program is built again from the
new weights before the call runs (a plan and a load, the compiled code comes from the cache:
about 0.1-0.5 s). Calls under ``autograd.record()``, training-mode calls and the custom operator
read the parameters at every call (graph inputs), as do all calls where MXNet's write counters
cannot be read (no C++ compiler) or with ``optimize(..., live_weights=True)``.

Inputs are checked first: another number of inputs, dtype, rank, or a context other than the CPU
raise ``MXNetError`` (MXNet's own error type) naming expected and given. Other shapes compile a
variant for them, once (``dynamic=False``: an error instead).

Fallback: MXNet runs the operators sol cannot compile between the compiled parts of an inference
call; a differentiable or training-mode call of such a block runs the original block in MXNet
(gradients through a partly compiled graph are not supported), with one warning.
"""

from __future__ import annotations

import itertools
import threading
import warnings
import weakref
from dataclasses import dataclass, field
from typing import Any

import mxnet as mx
import numpy as np

from sol.plugin_api import (
    Graph,
    PartitionedProgram,
    Program,
    SolFallbackWarning,
    TensorType,
    TrainingProgram,
    UnsupportedOpError,
    compile_graph,
    compile_partitioned,
    compile_training,
    is_partitioned,
    user_stacklevel,
)
from sol_mxnet.arrays import mxnet_error, to_ndarray, to_numpy
from sol_mxnet.importer import IMPORT_KEY, Imported, SymbolModel, convert, nest, param_shape, problem_lines
from sol_mxnet.versions import WeightsWatch

OP_TYPE = "sol_mxnet_program"
Key = tuple[tuple[tuple[int, ...], str], ...]


@dataclass
class Variant:
    """One compiled graph of the block: for one set of input types, one mode."""

    imported: Imported
    program: Program | PartitionedProgram | None = None
    training_program: TrainingProgram | None = None
    fallen: list[str] = field(default_factory=list)  # why MXNet runs the whole block instead

    @property
    def programs(self) -> list[Program]:
        if self.training_program is not None:
            return [self.training_program.forward_program, self.training_program.backward_program]
        if isinstance(self.program, PartitionedProgram):
            return self.program.programs
        return [self.program] if self.program is not None else []


class _State:
    """What a SolBlock keeps beside Gluon's tracking (none of it is a parameter)."""

    def __init__(self, block: Any, model: SymbolModel, device: str, options: dict[str, Any],
                 watch: WeightsWatch | None = None) -> None:
        self.block = block
        self.model = model
        self.device = device
        self.options = options
        self.watch = watch  # inference programs hold the weights (see the module doc); None: they read them
        self.ctx = mx.cpu()  # the context of the last inference call (where the weights are read)
        self.variants: dict[tuple[Key, bool, bool], Variant] = {}
        self.warned: set[str] = set()
        self.lock = threading.RLock()
        self.primary: Key = ()
        self.params = list(model.params.items())
        self.args = [n for n, p in self.params if p.grad_req != "null"]
        self.aux = [n for n, p in self.params if p.grad_req == "null"]
        self.inferred_shapes: dict[tuple[tuple[int, ...], ...], list[tuple[int, ...]]] = {}
        self.inferred_dtypes: dict[tuple[tuple[str, ...], tuple[str, ...]], list[str]] = {}

    def out_shapes(self, data: list[tuple[int, ...]]) -> list[tuple[int, ...]]:
        """The block's output shapes for these input shapes (MXNet's inference, memoized).

        Why memoized and computed before the custom operator is invoked (:meth:`SolBlock._custom`):
        MXNet's inference called from inside the operator's ``infer_shape`` callback can corrupt
        the shapes the callback hands back (seen with stacked LSTMs: "Shape inconsistent")."""
        key = tuple(data)
        found = self.inferred_shapes.get(key)
        if found is None:
            shapes = dict(zip(self.model.data_names, data))
            for name, p in self.params:
                shapes[name] = param_shape(p)
            _, outs, _ = self.model.symbol.infer_shape(**shapes)
            found = [tuple(int(d) for d in sh) for sh in outs]
            self.inferred_shapes[key] = found
        return found

    def out_dtypes(self, data: list[str]) -> list[str]:
        """The block's output dtypes for these input dtypes and the parameters' dtypes now
        (memoized, as :meth:`out_shapes`); MXNet's error where they do not fit together."""
        params = tuple(np.dtype(p.dtype).name for _, p in self.params)  # a cast changes them
        key = (tuple(data), params)
        found = self.inferred_dtypes.get(key)
        if found is None:
            _, outs, _ = self._infer_type(data, params)
            found = [np.dtype(t).name for t in outs]
            self.inferred_dtypes[key] = found
        return found

    def check_dtypes(self, data: list[str]) -> None:
        """MXNet's own error (``MXNetError``) where inputs of these dtypes do not fit the parameters'
        dtypes as they are now (after a ``cast``, MXNet wants inputs of the new dtype)."""
        self._infer_type(data, tuple(np.dtype(p.dtype).name for _, p in self.params))

    def _infer_type(self, data: list[str], params: tuple[str, ...]) -> Any:
        dtypes = {n: np.dtype(t) for n, t in zip(self.model.data_names, data)}
        for (name, _), dtype in zip(self.params, params):
            dtypes[name] = np.dtype(dtype)
        return self.model.symbol.infer_type(**dtypes)

    def variant(self, key: Key, training: bool, differentiable: bool) -> Variant:
        if self.watch is not None and not training and not differentiable:
            return self.held(key, self.ctx)
        found = self.variants.get((key, training, differentiable))
        if found is not None:
            return found
        with self.lock:
            found = self.variants.get((key, training, differentiable))
            if found is None:
                found = self._build(key, training, differentiable)
                self.variants[(key, training, differentiable)] = found
            return found

    def held(self, key: Key, ctx: Any) -> Variant:
        """The inference variant for ``key`` holding the weights as they are now on ``ctx`` (built
        again first where they changed since it was built; see the module doc)."""
        watch = self.watch
        assert watch is not None
        generation = watch.check(ctx)
        found = self.variants.get((key, False, False))
        if found is not None and found.imported.weights_generation == generation:
            return found
        with self.lock:
            self.ctx = ctx
            found = self.variants.get((key, False, False))
            if found is None or found.imported.weights_generation != watch.generation:
                self.check_dtypes([d for _, d in key])  # inputs that no longer fit (a cast): MXNet's error
                # the other shapes' programs hold old weights too: free them now, each is built
                # again on its next call
                for k in [k for k, v in self.variants.items() if v.imported.weights_generation is not None]:
                    del self.variants[k]
                found = self._build(key, False, False, watch.values(ctx))
                self.variants[(key, False, False)] = found
            return found

    def _build(self, key: Key, training: bool, differentiable: bool,
               weights: tuple[int, dict[str, np.ndarray]] | None = None) -> Variant:
        types = [TensorType(s, d) for s, d in key]
        graph = convert(self.model, types, training, self.options, self.warned, weights=weights)
        imported: Imported = graph.meta[IMPORT_KEY]
        if is_partitioned(graph):
            if not differentiable and not imported.updates and not any(k == "mask" for k, _ in imported.feeds):
                return Variant(imported, compile_partitioned(graph, self.device, training=training,
                                                              options=self.options))
            return self._fallen(imported, training)
        if not differentiable:
            return Variant(imported, compile_graph(graph, self.device, training=training, options=self.options))
        outs = [i for i in range(imported.num_outputs) if graph.outputs[i].dtype.startswith("float")]
        if imported.wrt and outs:
            tp = compile_training(graph, [graph.inputs[i] for i in imported.wrt], self.device,
                                  options=self.options, outputs=outs)
            return Variant(imported, training_program=tp)
        return Variant(imported, compile_graph(graph, self.device, training=True, options=self.options))

    def _fallen(self, imported: Imported, training: bool) -> Variant:
        lines = problem_lines(imported.problems)
        text = (f"sol cannot compile {len(lines)} MXNet operator(s) of {self.model.name} for "
                f"{'training' if training else 'a differentiable call'}; MXNet runs the whole block (gradients "
                f"through a partly compiled graph are not supported):\n" + "\n".join(lines))
        if self.options.get("fallback", True) is False:
            op, node, _ = imported.problems[0]
            raise UnsupportedOpError(text, op=op, source=node)
        new = [line for line in lines if f"train:{line}" not in self.warned]
        if new:
            self.warned.update(f"train:{line}" for line in new)
            warnings.warn(text, SolFallbackWarning, stacklevel=user_stacklevel("mxnet", "sol_mxnet"))
        return Variant(imported, fallen=lines)


_STATES: weakref.WeakValueDictionary[str, _State] = weakref.WeakValueDictionary()
_KEYS = itertools.count()


class SolBlock(mx.gluon.HybridBlock):
    """Runs the programs sol compiled from a Gluon block (see the module doc)."""

    def __init__(self, state: _State) -> None:
        super().__init__(prefix=f"sol_{_safe(state.model.name)}_")
        self._sol_model = state.block  # a child: collect_params() gives its Parameters
        self._sol_key = f"sol{next(_KEYS)}"
        self.__dict__["_sol"] = state
        _STATES[self._sol_key] = state
        # hybrid_forward receives each parameter's array (NDArray or Symbol) under these keys
        self._reg_params = {f"sol_p{i}": p for i, (_, p) in enumerate(state.params)}
        self._sol_by_name = {name: f"sol_p{i}" for i, (name, _) in enumerate(state.params)}

    @classmethod
    def from_compiled(cls, program: Program | PartitionedProgram, graph: Graph) -> SolBlock:
        imported: Imported = graph.meta[IMPORT_KEY]
        options = dict(graph.meta.get("mxnet.options") or {})
        state = _State(graph.meta["mxnet.block"], imported.model, program.device, options,
                       graph.meta.get("mxnet.watch"))
        key = tuple((t.shape, t.dtype) for t in imported.input_types)
        state.primary = key
        state.ctx = graph.meta.get("mxnet.context") or mx.cpu()
        state.variants[(key, False, False)] = Variant(imported, program)
        state.warned.update(problem_lines(imported.problems))
        return cls(state)

    # --- what users read ------------------------------------------------------------------------
    @property
    def _sol_state(self) -> _State:
        return self.__dict__["_sol"]  # type: ignore[no-any-return]

    @property
    def model(self) -> Any:
        """The original block."""
        return self._sol_model

    @property
    def programs(self) -> list[Program]:
        """The compiled programs for the example inputs (one unless MXNet runs some operators between
        parts), holding the weights as they are now (built again first where they changed)."""
        state = self._sol_state
        return state.variant(state.primary, False, False).programs

    @property
    def program(self) -> Program | None:
        programs = self.programs
        return programs[0] if programs else None

    @property
    def fallback_ops(self) -> list[str]:
        """The MXNet operators MXNet runs (empty when sol compiles the whole block)."""
        state = self._sol_state
        return sorted({op for op, _, _ in state.variant(state.primary, False, False).imported.problems})

    def __repr__(self) -> str:
        state = self._sol_state
        return f"<SolBlock {state.model.name} on {state.device}: {len(self.programs)} program(s)>"

    def hybridize(self, active: bool = True, **kwargs: Any) -> None:
        """Nothing to do: sol compiled the block already. An outer network's ``hybridize`` reaches
        here too; the outer graph then calls this block with Symbols (the custom operator), and the
        original block is left as the user set it."""

    # --- calling --------------------------------------------------------------------------------
    def forward(self, x: Any, *args: Any) -> Any:
        """An inference call on NDArrays with the weights held runs here, without Gluon gathering
        every parameter's array for ``hybrid_forward`` (the watch reads them); every other call
        goes the HybridBlock way."""
        state = self._sol_state
        if (state.watch is not None and isinstance(x, mx.nd.NDArray) and not mx.autograd.is_recording()
                and not mx.autograd.is_training()):
            data = [x, *args]
            key = self._check(data)
            ctx = x.context
            variant = state.held(key, ctx)
            if variant.fallen:
                return self._sol_model(*data)
            return self._direct(variant, data, {}, ctx)
        return super().forward(x, *args)

    def hybrid_forward(self, F: Any, x: Any, *args: Any, **params: Any) -> Any:
        data = [x, *args]
        state = self._sol_state
        if F is mx.sym:
            primary = state.variant(state.primary, False, False)
            if primary.imported.problems:
                return self._sol_model(*data)  # MXNet's own operators in the outer graph
            return self._custom(F, data, params)
        key = self._check(data)
        training = mx.autograd.is_training()
        if mx.autograd.is_recording():
            variant = state.variant(key, training, True)
            if variant.fallen:
                return self._sol_model(*data)
            return self._custom(F, data, params)
        ctx = data[0].context
        variant = state.held(key, ctx) if state.watch is not None and not training else \
            state.variant(key, training, False)
        if variant.fallen:
            return self._sol_model(*data)
        return self._direct(variant, data, params, ctx)

    def _custom(self, F: Any, data: list[Any], params: dict[str, Any]) -> Any:
        state = self._sol_state
        args = [params[self._sol_by_name[n]] for n in state.args]
        aux = [params[self._sol_by_name[n]] for n in state.aux]
        if F is mx.nd:  # MXNet's inference now, not inside the operator's callbacks (_State.out_shapes)
            state.out_shapes([tuple(int(d) for d in x.shape) for x in data])
            state.out_dtypes([np.dtype(x.dtype).name for x in data])
        out = F.Custom(*data, *args, *aux, op_type=OP_TYPE, sol_key=self._sol_key, sol_inputs=str(len(data)))
        return self._structure(list(out) if isinstance(out, (list, tuple)) else [out])

    def _direct(self, variant: Variant, data: list[Any], params: dict[str, Any], ctx: Any) -> Any:
        """Run ``variant`` on NDArrays (``params``: the parameters' arrays by registered key, for a
        variant that reads them; a variant holding its weights needs none)."""
        values = feed_values(variant.imported, data, {n: params[k] for n, k in self._sol_by_name.items()
                                                      if k in params})
        if isinstance(variant.program, PartitionedProgram):
            from sol_mxnet.fallback import Runner

            results = variant.program.run(values, Runner(self._sol_state.model))
        else:
            assert variant.program is not None
            results = variant.program(*values)
        imp = variant.imported
        for name, new in zip(imp.updates, results[imp.num_outputs:]):
            params[self._sol_by_name[name]][:] = to_ndarray(np.asarray(new), ctx)
        return self._structure([to_ndarray(np.asarray(r), ctx) for r in results[:imp.num_outputs]])

    def _structure(self, outs: list[Any]) -> Any:
        model = self._sol_state.model
        if model.single:
            return outs[0]
        return list(outs) if model.structure is None else nest(model.structure, list(outs))

    def _check(self, data: list[Any]) -> Key:
        """The call's input types; ``MXNetError`` naming expected and given where they cannot be run."""
        state = self._sol_state
        want = state.primary
        if len(data) != len(want):
            raise mxnet_error(f"{self.name}: expected {len(want)} input(s), got {len(data)}")
        key = []
        for i, (x, (shape, dtype)) in enumerate(zip(data, want)):
            if not isinstance(x, mx.nd.NDArray):
                raise mxnet_error(f"{self.name}: input {i}: expected an NDArray, got {type(x).__name__}")
            if x.context.device_type != "cpu":
                raise mxnet_error(f"{self.name}: input {i}: expected context cpu(0) (sol device "
                                  f"{state.device!r} runs on host memory), got {x.context}")
            given = np.dtype(x.dtype).name
            if given != dtype and not self._cast_to(given, data):
                raise mxnet_error(f"{self.name}: input {i}: expected dtype {dtype}, got {given}")
            if len(x.shape) != len(shape):
                raise mxnet_error(f"{self.name}: input {i}: expected rank {len(shape)} with shape {shape}, "
                                  f"got rank {len(x.shape)} with shape {x.shape}")
            if tuple(x.shape) != shape and state.options.get("dynamic", True) is False:
                raise mxnet_error(f"{self.name}: input {i}: expected shape {shape}, got {x.shape} (optimized with "
                                  f"dynamic=False; without it sol compiles a variant for each new shape)")
            key.append((tuple(int(d) for d in x.shape), given))
        return tuple(key)

    def _cast_to(self, dtype: str, data: list[Any]) -> bool:
        """Whether a float input of another dtype than the example's fits the block as it is now
        (its parameters cast to that dtype, as MXNet then requires): a variant is compiled for it."""
        state = self._sol_state
        if state.options.get("dynamic", True) is False or dtype not in ("float32", "float64") or \
                not all(isinstance(x, mx.nd.NDArray) for x in data):
            return False
        try:
            state.check_dtypes([np.dtype(x.dtype).name for x in data])
        except mx.base.MXNetError:
            return False
        return True


def feed_values(imp: Imported, data: list[Any], params: dict[str, Any]) -> list[np.ndarray]:
    """The graph's input arrays for a call: data, parameters (views of their memory), masks."""
    values = []
    for kind, src in imp.feeds:
        if kind == "data":
            values.append(to_numpy(data[src]))
        elif kind == "param":
            values.append(to_numpy(params[src]))
        else:
            p, shape = src
            mask = mx.nd.Dropout(mx.nd.ones(shape), p=p, mode="always")  # MXNet's RNG draws the mask
            values.append(mask.asnumpy())
    return values


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "_" for c in name)[:40]


# --- the custom operator ------------------------------------------------------------------------


class _SolOp(mx.operator.CustomOp):
    """One program call as an MXNet operator: the compiled forward, and its compiled backward."""

    def __init__(self, state: _State, inputs: int) -> None:
        super().__init__()
        self.state = state
        self.inputs = inputs
        self.saved: list[Any] | None = None
        self.variant: Variant | None = None

    def _named(self, in_data: list[Any], aux: list[Any]) -> tuple[list[Any], dict[str, Any]]:
        s = self.state
        data = list(in_data[:self.inputs])
        params = dict(zip(s.args, in_data[self.inputs:]))
        params.update(zip(s.aux, aux))
        return data, params

    def forward(self, is_train: bool, req: list[str], in_data: list[Any], out_data: list[Any], aux: list[Any]) -> None:
        data, params = self._named(in_data, aux)
        key = tuple((tuple(int(d) for d in x.shape), np.dtype(x.dtype).name) for x in data)
        variant = self.state.variant(key, bool(is_train), True)
        if variant.fallen:
            raise RuntimeError("sol: a block MXNet trains itself reached sol's operator; please report this")
        imp = variant.imported
        values = feed_values(imp, data, params)
        tp = variant.training_program
        if tp is not None:
            results = tp.forward_program(*values)
            self.saved = [values[s.index] if s.kind == "input" else results[s.index] for s in tp.diff.saved]
        else:
            assert isinstance(variant.program, Program)
            results = variant.program(*values)
            self.saved = None
        self.variant = variant
        for i in range(imp.num_outputs):
            self.assign(out_data[i], req[i], mx.nd.array(results[i], dtype=results[i].dtype))
        if is_train:
            index = {n: i for i, n in enumerate(self.state.aux)}
            for name, new in zip(imp.updates, results[imp.num_outputs:]):
                aux[index[name]][:] = mx.nd.array(new, dtype=new.dtype)

    def backward(self, req: list[str], out_grad: list[Any], in_data: list[Any], out_data: list[Any],
                 in_grad: list[Any], aux: list[Any]) -> None:
        variant = self.variant
        assert variant is not None
        imp = variant.imported
        grads: dict[int, np.ndarray] = {}
        tp = variant.training_program
        if tp is not None and self.saved is not None:
            given = [to_numpy(out_grad[i]) for i in tp.grad_output_indices]
            results = tp.backward_program(*self.saved, *given)
            for pos, g in zip(imp.wrt, results):
                grads[pos] = g
        # graph input position -> operator input position
        s = self.state
        where = {}
        for pos, (kind, src) in enumerate(imp.feeds):
            if kind == "data":
                where[pos] = src
            elif kind == "param" and src in s.args:
                where[pos] = self.inputs + s.args.index(src)
        filled = set()
        for pos, g in grads.items():
            if pos in where:
                self.assign(in_grad[where[pos]], req[where[pos]], mx.nd.array(g, dtype=g.dtype))
                filled.add(where[pos])
        for i in range(len(in_grad)):
            if i not in filled:
                self.assign(in_grad[i], req[i], mx.nd.zeros(in_grad[i].shape, dtype=in_grad[i].dtype))


@mx.operator.register(OP_TYPE)
class _SolOpProp(mx.operator.CustomOpProp):
    def __init__(self, sol_key: str, sol_inputs: str) -> None:
        super().__init__(need_top_grad=True)
        state = _STATES.get(sol_key)
        if state is None:
            raise RuntimeError(f"sol: the block of operator {sol_key} is gone")
        self.state = state
        self.inputs = int(sol_inputs)

    def list_arguments(self) -> list[str]:
        return [f"data{i}" for i in range(self.inputs)] + [f"arg{i}" for i in range(len(self.state.args))]

    def list_outputs(self) -> list[str]:
        return [f"output{i}" for i in range(len(self.state.model.symbol.list_outputs()))]

    def list_auxiliary_states(self) -> list[str]:
        return [f"aux{i}" for i in range(len(self.state.aux))]

    def infer_shape(self, in_shape: list[Any]) -> tuple[list[Any], list[Any], list[Any]]:
        s = self.state
        data = [tuple(int(d) for d in sh) for sh in in_shape[:self.inputs]]
        params = dict(s.params)
        return (list(data) + [param_shape(params[n]) for n in s.args], s.out_shapes(data),
                [param_shape(params[n]) for n in s.aux])

    def infer_type(self, in_type: list[Any]) -> tuple[list[Any], list[Any], list[Any]]:
        s = self.state
        params = dict(s.params)
        data = [np.dtype(t).name for t in in_type[:self.inputs]]
        return ([np.dtype(t).type for t in data] + [np.dtype(params[n].dtype).type for n in s.args],
                [np.dtype(t).type for t in s.out_dtypes(data)], [np.dtype(params[n].dtype).type for n in s.aux])

    def declare_backward_dependency(self, out_grad: list[int], in_data: list[int],
                                    out_data: list[int]) -> list[int]:
        return list(out_grad) + list(in_data)

    def create_operator(self, ctx: Any, in_shapes: list[Any], in_dtypes: list[Any]) -> _SolOp:
        return _SolOp(self.state, self.inputs)
