"""``torch.nn.Module`` -> sol IR, through ``torch.export``.

Why ``torch.export`` (non-strict) and not ``torch.fx.symbolic_trace``: symbolic tracing runs
``forward`` on proxy objects that have no shapes, so ordinary model code that branches or loops on
shapes (``if x.shape[1] != c:``, ``x.view(x.size(0), -1)`` passed through helpers,
``for d in range(x.dim())``) fails or is recorded wrongly, and its graph holds module calls and
Python-level torch functions whose signatures vary. ``torch.export`` runs ``forward`` on fake
tensors that carry real shapes, so such code simply runs; the graph holds normalized ATen overloads
with fixed schemas, every node's result as a fake tensor (``meta["val"]``: the exact shape and
dtype PyTorch computes, which the importer checks each conversion against) and the user's stack
trace (for error messages that point at the user's line).

Which ATen: the graph ``torch.export`` returns is converted as is, not lowered to core ATen with
``run_decompositions()``: lowering costs ~0.3 s per model and splits ops sol has as one op
(``linear`` -> ``permute`` + ``addmm``, ``silu`` -> ``x * sigmoid(x)``, ``hardswish``, ``matmul``
-> ``expand`` + ``bmm``), which would then have to be pattern-matched back. Two targeted
decompositions are run only when needed: in-place ops (``relu_``, ``+=``) are functionalized,
because sol's IR is SSA and a mutation seen through a view must not be lost; and ops sol has no
converter for are decomposed where PyTorch knows how (``einsum`` -> ``bmm``, ``mT``), before
anything is reported as unsupported.

Ops that stay unsupported after that are either an error naming them (``fallback=False``) or run
by PyTorch between the parts sol compiles (the default; :mod:`sol_pytorch.fallback` cuts the
graph). Both rest on one conversion pass, :func:`classify`, that converts every node it can and
lets a node whose input PyTorch computes read that input as a graph input: so it finds exactly
the nodes sol cannot convert, not everything downstream of them.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import operator
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import numpy as np
import torch
from torch import fx
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind

from sol.plugin_api import (
    INPUT_UPDATES,
    Graph,
    Node,
    SolError,
    UnsupportedOpError,
    Value,
    ValueKind,
    mark_framework_node,
)
from sol.plugin_api import user_stacklevel as core_user_stacklevel
from sol_pytorch import locations
from sol_pytorch.aten import CONVERTERS, Emitter, Unsupported, tensor_type
from sol_pytorch.aten.base import DATA_DEPENDENT
from sol_pytorch.guard import TRACE_LOCK, tracing_copy
from sol_pytorch.prepare import calls, functionalize_simple, mutates, unknown_ops
from sol_pytorch.structure import NotFlattenable, Rebuild, Restructured, flattening_forward

TRAINING_MODE_MESSAGE = ("the model is in training mode, but sol compiles its eval-mode behaviour here "
                         "(training=False); call model.eval() to silence (optimize puts the model in eval mode, "
                         "as training=True puts it in training mode), or leave training unset to train through sol")
LATER = ("With fallback=True (the default) PyTorch runs such operations and sol compiles the rest of the "
         "model; or express them with supported operations (sol_pytorch.supported_ops() lists the ATen "
         "operators sol compiles).")
log = logging.getLogger("sol")
LAYOUT_KEY = "pytorch.outputs"
IN_PLACE = "in-place update"
"""The ``op`` of the refusal of in-place updates where PyTorch runs parts of the forward."""
NO_EQUIVALENT = "sol has no equivalent operation"

# Nodes that check metadata at run time in PyTorch and compute nothing.
_IGNORED = frozenset({
    "aten._assert_tensor_metadata.default", "aten._assert_scalar.default", "aten._assert_async.msg",
    "aten._assert_async.default", "aten.sym_constrain_range_for_size.default",
    "aten.sym_constrain_range.default",
})


RUN_TIME_SIZE = "a size known only at run time"
"""Why arithmetic on a data-dependent size (``nonzero(x).shape[0]``) is PyTorch's: listed with
the operation that made the size, not on its own line."""


def _data_dependent(val: Any) -> bool:
    """Whether a node's fake result has a shape that depends on tensor values (``nonzero``)."""
    vals = val if isinstance(val, (tuple, list)) else (val,)
    return any(isinstance(v, torch.Tensor) and any(not isinstance(d, int) for d in v.shape) for v in vals)


class SolTrainingModeWarning(UserWarning):
    """The model was in training mode, but sol was asked for its eval-mode behaviour."""


@dataclass(frozen=True)
class Constant:
    """A non-tensor leaf of the model's output (``None``, an int) returned as is."""

    value: Any


@dataclass(frozen=True)
class OutputLayout:
    """How the program's flat outputs rebuild the model's output structure: ``slots[i]`` is an
    index into the program's outputs or a :class:`Constant`; ``spec`` is torch's pytree spec."""

    spec: Any
    slots: tuple[int | Constant, ...]
    updates: tuple[tuple[int, int], ...] = ()
    """In-place updates of the forward's tensor inputs and of the model's buffers (a KV cache's
    ``index_copy_``, a counter's ``add_``), as (program input position, program output): the
    program computes the new value, the caller copies it into the tensor after the run, as eager
    would have written it."""
    buffers: tuple[tuple[int, torch.Tensor], ...] = ()
    """The buffers the forward updates in place, as (program input position, the model's buffer):
    read live as program inputs at every call (never folded into the program as weights are),
    the forward's tensor arguments filling the other positions in order."""


def output_layout(graph: Graph) -> OutputLayout | None:
    """The layout :func:`import_module` recorded on ``graph`` (None for graphs from elsewhere)."""
    return graph.meta.get(LAYOUT_KEY)


# --- entry point ------------------------------------------------------------------------------


def import_module(model: torch.nn.Module, example_inputs: Sequence[Any], options: dict[str, Any]) -> Graph:
    """Trace ``model`` with ``example_inputs`` (one per forward argument: tensors, shapes, or
    None/bool/int/float values) and return its whole inference graph; parameters stay NumPy views
    of the model's tensors. Raises :class:`UnsupportedOpError` listing every operation sol cannot
    compile (``sol.optimize`` runs those in PyTorch instead unless ``fallback=False``)."""
    ep = trace(model, example_inputs, options)
    found = classify(ep, model)
    if found.problems:
        raise found.unsupported()
    return found.finish()


def trace(model: torch.nn.Module, example_inputs: Sequence[Any], options: dict[str, Any]) -> ExportedProgram:
    """``torch.export`` of the model's eval-mode behaviour, ready for conversion (training
    imports: :mod:`sol_pytorch.training`). The model itself is not touched: a copy of it is
    switched to eval mode and traced (:mod:`sol_pytorch.guard`). Raises :class:`NotExportable`
    where ``torch.export`` cannot take the model."""
    examples = example_values(model, example_inputs)
    with TRACE_LOCK:
        twin = tracing_copy(model)
        with eval_mode(twin):
            exported, rebuild = export_structured(twin, examples)
        return remember_rebuild(prepare(exported), rebuild)


class NotExportable(SolError):
    """``torch.export`` cannot take the model as it is (data-dependent control flow, inputs
    it does not know, ...): ``reason`` says why in one line; the exception is the cause."""

    def __init__(self, model_name: str, reason: str) -> None:
        super().__init__(f"torch.export cannot trace {model_name}: {reason}")
        self.reason = reason


def export_failure(exc: BaseException) -> str:
    """One line saying why ``torch.export`` failed (its messages run to pages)."""
    from torch.fx.experimental.symbolic_shapes import GuardOnDataDependentSymNode

    if isinstance(exc, GuardOnDataDependentSymNode) or "data-dependent" in str(exc):
        return ("Python code branches on, or takes a size from, a tensor's values (data-dependent control "
                "flow or shape, e.g. `if x.sum() > 0:`, `.item()`, `.tolist()`)")
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    first = first if len(first) <= 240 else first[:237] + "..."
    return f"{type(exc).__name__}: {first}" if first else type(exc).__name__


def export_structured(model: torch.nn.Module, examples: tuple[Any, ...],
                      exporter: Callable[[torch.nn.Module, tuple[Any, ...]], ExportedProgram] | None = None,
                      ) -> tuple[ExportedProgram, Rebuild | None]:
    """:func:`export`, with a result of any structure (:mod:`sol_pytorch.structure`): where it
    holds objects ``torch.export`` does not know, the trace returns their tensors flat and the
    :class:`Rebuild` says how to build the result again. ``model`` is a :func:`tracing_copy`
    (its ``forward`` is swapped for the trace). Raises :class:`NotExportable` where
    ``torch.export`` fails (the cause chained)."""
    found: list[Rebuild] = []
    forward = model.forward
    model.forward = functools.wraps(forward)(flattening_forward(forward, found))  # type: ignore[method-assign]
    try:
        ep = (exporter or export)(model, examples)
    except NotFlattenable as exc:
        raise NotExportable(type(model).__name__, f"its result holds {exc}") from exc
    except SolError:
        raise
    except Exception as exc:  # noqa: BLE001 - whatever torch.export raises: the caller decides what to do
        raise NotExportable(type(model).__name__, export_failure(exc)) from exc
    finally:
        del model.forward
    return ep, (found[0] if found else None)


_REBUILDS: weakref.WeakKeyDictionary[ExportedProgram, Rebuild] = weakref.WeakKeyDictionary()


def remember_rebuild(ep: ExportedProgram, rebuild: Rebuild | None) -> ExportedProgram:
    if rebuild is not None:
        _REBUILDS[ep] = rebuild
    return ep


def out_spec(ep: ExportedProgram) -> Any:
    """How the program's output leaves make the model's result: the exported program's pytree
    spec, or a :class:`Restructured` one where the result held objects pytree does not know."""
    rebuild = _REBUILDS.get(ep)
    spec = ep.call_spec.out_spec
    return spec if rebuild is None else Restructured(spec, rebuild)


# --- example inputs ---------------------------------------------------------------------------

SCALARS = (bool, int, float, type(None))
"""Non-tensor forward arguments sol takes: they are constants of the traced graph, so a compiled
variant holds for one value of each (``SolModule`` keys its variants on them)."""


def _is_shape(x: Any) -> bool:
    return isinstance(x, (torch.Size, tuple, list)) and all(
        isinstance(d, (int, np.integer)) and not isinstance(d, bool) and d >= 0 for d in x)


def _is_example(x: Any) -> bool:
    return isinstance(x, torch.Tensor) or _is_shape(x)


def _describe(x: Any) -> str:
    text = repr(x)
    return f"{type(x).__name__} {text if len(text) <= 60 else text[:57] + '...'}"


def example_values(model: torch.nn.Module, example_inputs: Sequence[Any]) -> tuple[Any, ...]:
    """One example value per forward argument. Shapes become float32 zeros (zeros, not random:
    tracing must not consume the user's random number stream); None, bools, ints and floats are
    passed as they are. A single tuple of tensors/shapes is unpacked, as in
    ``optimize(model, (x.size(), y.size()))``."""
    items = tuple(example_inputs)
    if len(items) == 1 and isinstance(items[0], (tuple, list)) and not _is_shape(items[0]) and items[0] \
            and all(_is_example(e) for e in items[0]):
        items = tuple(items[0])
    values: list[Any] = []
    for i, x in enumerate(items):
        if isinstance(x, torch.Tensor):
            if x.device.type != "cpu":
                raise TypeError(f"example input {i} is on {x.device}; this sol version takes CPU tensors")
            values.append(x.detach())
        elif _is_shape(x):
            values.append(torch.zeros(tuple(int(d) for d in x), dtype=torch.float32))
        elif isinstance(x, SCALARS):
            values.append(x)
        else:
            raise TypeError(f"example input {i} must be a torch.Tensor or a shape (torch.Size or tuple of "
                            f"non-negative ints), or a None/bool/int/float argument, got {_describe(x)}")
    _check_arity(model, len(values))
    return tuple(values)


def _check_arity(model: torch.nn.Module, given: int) -> None:
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):  # no introspectable signature: let torch.export judge
        return
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p for p in positional if p.default is p.empty]
    variadic = any(p.kind is p.VAR_POSITIONAL for p in params)
    if given < len(required) or (given > len(positional) and not variadic):
        names = ", ".join(p.name for p in positional)
        count = (f"{len(required)}" if len(required) == len(positional) or variadic
                 else f"{len(required)} to {len(positional)}")
        raise TypeError(f"{type(model).__name__}.forward takes {count} input(s) ({names}), "
                        f"got {given} example input(s)")


# --- tracing ----------------------------------------------------------------------------------


user_stacklevel = partial(core_user_stacklevel, "torch")
"""Stack level of the first caller outside sol and torch, so warnings point at the user's line
(also from inside ``nn.Module.__call__`` or a ``torch.compile``d frame)."""


def warn_training_mode(model: torch.nn.Module) -> None:
    """Warn that a model (or a submodule) in training mode is compiled for its eval behaviour."""
    if any(m.training for m in model.modules()):
        warnings.warn(TRAINING_MODE_MESSAGE, SolTrainingModeWarning, stacklevel=user_stacklevel())


@contextlib.contextmanager
def eval_mode(model: torch.nn.Module) -> Iterator[None]:
    """Trace eval-mode behaviour, then restore every submodule's own mode (a model may mix)."""
    modes = [(m, m.training) for m in model.modules()]
    warn_training_mode(model)
    model.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training


@contextlib.contextmanager
def quiet_torch() -> Iterator[None]:
    """PyTorch's own deprecation notices about its internals are not the user's business."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"(torch|copyreg)(\.|$)")
        warnings.filterwarnings("ignore", message=r".*LeafSpec.*", category=FutureWarning)
        # nn.LSTM/GRU rebuild their _flat_weights list while traced; the weights are parameters.
        warnings.filterwarnings("ignore", message=r"The tensor attributes .*_flat_weights\[", category=UserWarning)
        yield


def export(model: torch.nn.Module, examples: tuple[Any, ...]) -> ExportedProgram:
    """``torch.export`` (non-strict) of ``model``, one trace at a time in the process. ``model``
    is what gets traced, attribute swaps and all: callers pass a :func:`tracing_copy`."""
    with TRACE_LOCK, torch.no_grad(), quiet_torch():
        try:
            return torch.export.export(model, examples, strict=False)
        except Exception as exc:
            if hasattr(exc, "add_note"):
                shapes = ", ".join(describe_value(t) for t in examples)
                exc.add_note(f"(while sol traced {type(model).__name__} with torch.export for inputs {shapes})")
            raise


def dtype_str(t: torch.Tensor) -> str:
    return str(t.dtype).replace("torch.", "")


def describe_value(x: Any) -> str:
    """``float32[2, 8]`` for a tensor, ``repr`` for anything else: for messages."""
    return f"{dtype_str(x)}{list(x.shape)}" if isinstance(x, torch.Tensor) else repr(x)


def _op_name(target: Any) -> str:
    if isinstance(target, torch._ops.OpOverload):
        return str(target)
    return getattr(target, "__name__", str(target))


def prepare(ep: ExportedProgram) -> ExportedProgram:
    """Functionalize in-place ops if there are any; decompose ops sol has no converter for. Both
    re-trace the model (``run_decompositions``), so the cheap paths of :mod:`sol_pytorch.prepare`
    come first: in-place ops on the graph's own tensors rewritten in place, unknown ops on
    constants left for the importer to fold."""
    if any(mutates(n) for n in calls(ep.graph)):
        if functionalize_simple(ep.graph):
            ep.graph_module.recompile()
        else:
            ep = _decompose(ep, {})
    for _ in range(4):  # a decomposition may produce ops that decompose further
        unknown = unknown_ops(ep.graph, CONVERTERS.keys() | _IGNORED)
        if not unknown:
            break
        table = torch.export.default_decompositions()
        wanted = {op: table[op] for op in unknown if op in table}
        if not wanted:
            break
        try:
            ep = _decompose(ep, wanted)
        except Exception as exc:  # noqa: BLE001 - e.g. torch.take's decomposition needs values (data-dependent)
            # Undecomposed, the ops stay unknown: PyTorch runs them (fallback) or, with
            # fallback=False, sol refuses each by name, never a raw tracing error.
            log.debug("sol: decomposing %s failed (%s): left to PyTorch", sorted(map(str, wanted)), exc)
            break
    return ep


def _decompose(ep: ExportedProgram, table: dict[Any, Any]) -> ExportedProgram:
    with TRACE_LOCK, torch.no_grad(), quiet_torch():  # decomposing traces the graph again
        return ep.run_decompositions(table)


# --- conversion -------------------------------------------------------------------------------


def numpy_view(t: torch.Tensor, name: str) -> np.ndarray:
    """The tensor's memory as a NumPy array, never a copy: sol reads weights in place."""
    t = t.detach()
    if t.device.type != "cpu":
        raise SolError(f"parameter {name!r} is on {t.device}; this sol version compiles CPU models")
    try:
        arr = t.numpy()
        tensor_type(arr)
    except (TypeError, RuntimeError, Unsupported):
        raise SolError(f"parameter {name!r} has dtype {dtype_str(t)}, which sol does not support") from None
    return arr


def state_tensors(ep: ExportedProgram, model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The model's own parameters and buffers (the live tensors, not export's copies) and the
    tensor constants export lifted, by the names the graph signature uses."""
    found: dict[str, torch.Tensor] = {**ep.state_dict, **ep.constants}
    found.update(model.named_parameters(remove_duplicate=False))
    found.update(model.named_buffers(remove_duplicate=False))
    return found


def classify(ep: ExportedProgram, model: torch.nn.Module, forced: dict[fx.Node, str] | None = None,
             mark: bool = False) -> _Importer:
    """Convert every node of ``ep`` that sol can; ``.problems`` lists the others (``forced``
    nodes among them, with the reason given), ``.failed`` holds every node PyTorch must run.
    ``mark``: each of those becomes a framework node of the graph (:func:`sol.fallback.mark`,
    handle :class:`TorchCall`), for core to cut the graph into parts."""
    importer = _Importer(ep, model, forced or {}, mark=mark)
    importer.convert_all()
    return importer


def is_static(node: fx.Node) -> bool:
    """Shape arithmetic (``x.size(0) * 2``): a Python number known once the graph is traced."""
    return isinstance(node.meta.get("val"), (bool, int, float))


def is_ignored(node: fx.Node) -> bool:
    return node.op == "call_function" and _op_name(node.target) in _IGNORED


class _Env(dict):  # type: ignore[type-arg]
    """fx node -> converted value; a node not converted here is asked of ``outside``."""

    def __init__(self, outside: Any) -> None:
        super().__init__()
        self.outside = outside

    def __missing__(self, node: fx.Node) -> Any:
        value = self.outside(node)
        self[node] = value
        return value


class _Importer:
    """Walks one exported graph node by node, building the sol graph.

    A node sol cannot convert is recorded as a problem and left to PyTorch; a node that reads
    its result reads it as a graph input of the same type (:meth:`_boundary`), so the walk goes
    on and tells exactly which nodes sol can convert.
    """

    def __init__(self, ep: ExportedProgram, model: torch.nn.Module, forced: dict[fx.Node, str],
                 name: str | None = None, mark: bool = False) -> None:
        self.mark = mark
        self.marks: dict[fx.Node, Node] = {}  # failed node -> its framework node (mark)
        self.ep = ep
        self.model = model
        self.forced = forced
        self.graph = Graph(name=name or type(model).__name__)
        self.em = Emitter(self.graph)
        self.env: dict[fx.Node, Any] = _Env(self._outside)
        self.problems: list[tuple[str, fx.Node, str]] = []  # (op, node, why)
        self.failed: set[fx.Node] = set()
        self.input_specs = {s.arg.name: s for s in ep.graph_signature.input_specs}
        self.tensors = state_tensors(ep, model)
        self.updated_buffers = set(ep.graph_signature.buffers_to_mutate.values())
        self.buffer_inputs: list[tuple[Value, torch.Tensor]] = []

    # --- whole graph --------------------------------------------------------------------------
    def convert_all(self) -> None:
        for node in self.ep.graph.nodes:
            if node.op == "placeholder":
                self._placeholder(node)
            elif node.op == "call_function":
                self._call(node)
            elif node.op == "get_attr":  # a subgraph of a higher-order op: whoever reads it is reported
                self.failed.add(node)
            elif node.op != "output":
                self._problem(node, node.op, "graph construct sol does not compile")

    def finish(self) -> Graph:
        """The whole graph with its outputs, once :meth:`convert_all` found no problems."""
        assert not self.problems
        self._outputs()
        self.graph.prune_unused()
        return self.graph

    def _outside(self, node: fx.Node) -> Any:
        if node in self.failed:
            return self._boundary(node)
        raise KeyError(node)

    def _boundary(self, node: fx.Node) -> Value:
        """A value PyTorch computes, read by a node sol converts: a graph input of its type (or,
        marking, the framework node's result)."""
        val = node.meta.get("val")
        if not isinstance(val, torch.Tensor):
            raise Unsupported(f"reads a {type(val).__name__} from PyTorch")
        try:
            kind = tensor_type(val)
        except Unsupported:
            raise Unsupported(f"reads a {dtype_str(val)} tensor from PyTorch") from None
        marked = self.marks.get(node)
        if marked is not None and marked.outputs:
            return marked.output
        if self.mark:
            raise Unsupported("reads a result PyTorch computes without a framework node")
        return self.graph.add_input(node.name, kind)

    # --- inputs, parameters, constants --------------------------------------------------------
    def _placeholder(self, node: fx.Node) -> None:
        spec = self.input_specs[node.name]
        val = node.meta.get("val")
        if spec.kind is InputKind.USER_INPUT and isinstance(val, torch.Tensor):
            self.env[node] = self.graph.add_input(node.name, tensor_type(val))
        elif spec.kind is InputKind.USER_INPUT and isinstance(val, SCALARS):
            self.env[node] = val  # a non-tensor argument: a constant of this trace
        elif spec.kind is InputKind.BUFFER and str(spec.target) in self.updated_buffers:
            self.env[node] = self.graph.add_input(node.name, tensor_type(val))  # read live: the forward updates it
            self.buffer_inputs.append((self.env[node], self.tensors[str(spec.target)]))
        elif spec.kind in (InputKind.PARAMETER, InputKind.BUFFER, InputKind.CONSTANT_TENSOR):
            name = str(spec.target)
            self.env[node] = self.graph.add_param(name, numpy_view(self.tensors[name], name))
        else:
            self._problem(node, f"{spec.kind.name.lower()} input {spec.target}", "not a tensor")

    # --- operations ---------------------------------------------------------------------------
    def _call(self, node: fx.Node) -> None:
        name = _op_name(node.target)
        if name in _IGNORED:
            return
        if node in self.forced:
            self._problem(node, name, self.forced[node])
            return
        if node.target is operator.getitem and node.args[0] in self.failed:
            self.failed.add(node)  # PyTorch takes apart what PyTorch computed
            if self.mark:
                self._mark(node, name)
            return
        val = node.meta.get("val")
        if isinstance(val, (bool, int, float)):  # shape arithmetic, static after export
            self.env[node] = val
            return
        if isinstance(val, (torch.SymInt, torch.SymFloat, torch.SymBool)):  # a size known at run time only
            self._problem(node, name, RUN_TIME_SIZE)
            return
        if _data_dependent(val):
            self._problem(node, name, DATA_DEPENDENT)
            return
        if node.target is operator.getitem:
            self._getitem(node)
            return
        self.em.source = locations.describe(node)
        self.em.val = val
        self.em.node = node
        try:
            args = self._bind(node)
            converter = CONVERTERS.get(name)
            result = converter(self.em, args) if converter else self._fold(node, args)
            self.env[node] = self._checked(node, name, result)
        except Unsupported as exc:
            self._problem(node, name, str(exc))
        except SolError as exc:
            raise SolError(f"sol could not import {name} {locations.describe_long(node)}: {exc}") from exc

    def _value(self, arg: Any) -> Any:
        if isinstance(arg, fx.Node):
            return self.env[arg]
        if isinstance(arg, (list, tuple)):
            return type(arg)(self._value(a) for a in arg)
        return arg

    def _bind(self, node: fx.Node) -> dict[str, Any]:
        """The node's arguments by schema name, defaults filled in, graph tensors as Values."""
        target = node.target
        if not isinstance(target, torch._ops.OpOverload):
            raise Unsupported("not an ATen operator")
        out: dict[str, Any] = {}
        for i, arg in enumerate(target._schema.arguments):
            if i < len(node.args) and not arg.kwarg_only:
                out[arg.name] = self._value(node.args[i])
            elif arg.name in node.kwargs:
                out[arg.name] = self._value(node.kwargs[arg.name])
            elif arg.has_default_value():
                out[arg.name] = arg.default_value
            else:
                out[arg.name] = None
        return out

    def _fold(self, node: fx.Node, args: dict[str, Any]) -> Value:
        """An op sol has no converter for, on constants only (``torch.arange(4)``,
        ``torch.zeros(3)``): run it once in PyTorch; its result is a constant of the graph."""
        target = node.target
        values = [v for v in _leaves(list(args.values())) if isinstance(v, Value)]
        nondeterministic = torch.Tag.nondeterministic_seeded in getattr(target, "tags", ())
        if nondeterministic or any(v.kind is not ValueKind.CONST for v in values):
            raise Unsupported(NO_EQUIVALENT)

        def real(a: Any) -> Any:
            if isinstance(a, fx.Node):
                v = self.env[a]
                return torch.tensor(np.array(v.data)) if isinstance(v, Value) else v
            if isinstance(a, (list, tuple)):
                return type(a)(real(x) for x in a)
            return a

        with torch.no_grad():
            result = target(*real(node.args), **{k: real(v) for k, v in node.kwargs.items()})  # type: ignore[operator]
        if not isinstance(result, torch.Tensor):
            raise Unsupported(NO_EQUIVALENT)
        data = result.detach().numpy()
        tensor_type(data)
        return self.graph.add_const(data, hint="k")

    def _checked(self, node: fx.Node, name: str, result: Any) -> Any:
        """Compare the conversion with PyTorch's own result type: cast if only the dtype
        differs (promotion rules), fail loudly if the shape does (a converter bug)."""
        val = node.meta.get("val")
        if isinstance(result, tuple):
            vals = val if isinstance(val, (tuple, list)) else (val,)
            return tuple(r if r is None else self._checked_one(name, r, v) for r, v in zip(result, vals))
        return self._checked_one(name, result, val)

    def _checked_one(self, name: str, v: Value, val: Any) -> Value:
        want = tensor_type(val)
        if v.shape != want.shape:
            raise SolError(f"sol's conversion of {name} gives {v.type}, PyTorch computes {want} "
                           f"(a bug in sol_pytorch; please report it)")
        return self.em.cast(v, want.dtype)

    def _getitem(self, node: fx.Node) -> None:
        source, index = node.args
        item = self.env[source][index]  # type: ignore[index]
        if item is None and node.users:
            self._problem(node, f"{_op_name(source.target)}[{index}]",  # type: ignore[union-attr]
                          "training-only output (saved statistics or pooling indices)")
            return
        self.env[node] = item

    # --- outputs ------------------------------------------------------------------------------
    def _outputs(self) -> None:
        leaves = user_outputs(self.ep, self.graph.name, inputs_may_change=True)
        slots: list[int | Constant] = []
        index: dict[Value, int] = {}

        def output(v: Value, leaf: fx.Node) -> int:
            if v not in index:  # a tensor returned twice is one program output, as in PyTorch
                index[v] = len(self.graph.outputs)
                self.graph.outputs.append(self.own_buffer(v, leaf))
            return index[v]

        for leaf in leaves:
            v = self.env[leaf] if isinstance(leaf, fx.Node) else leaf
            if not isinstance(v, Value):  # None, a Python number, a size: returned as is
                slots.append(Constant(v))
                continue
            slots.append(output(v, leaf))
        positions = {v.name: i for i, v in enumerate(self.graph.inputs)}
        updates = tuple((positions[str(target)], output(self.env[leaf], leaf))
                        for target, leaf in input_updates(self.ep))
        buffers = tuple((self.graph.inputs.index(v), tensor) for v, tensor in self.buffer_inputs)
        self.graph.meta[LAYOUT_KEY] = OutputLayout(out_spec(self.ep), tuple(slots), updates, buffers)
        if updates:
            self.graph.meta[INPUT_UPDATES] = updates

    def own_buffer(self, v: Value, leaf: fx.Node) -> Value:
        """An input, weight or constant returned as is gets a copy: outputs are fresh tensors."""
        if v.kind is ValueKind.NODE:
            return v
        self.em.source = locations.describe(leaf)
        return self.em.emit("identity", [v])

    # --- problems -----------------------------------------------------------------------------
    def _problem(self, node: fx.Node, op: str, why: str) -> None:
        self.problems.append((op, node, why))
        self.failed.add(node)
        if self.mark and node.op == "call_function":
            self._mark(node, op)

    def _mark(self, node: fx.Node, op: str) -> None:
        """``node`` as a framework node: it reads the values sol computes (or folded) through its
        inputs; weights, the forward's arguments and Python values the wrapper holds itself;
        what other PyTorch nodes compute is read on PyTorch's side (``after``)."""
        reads, values, after = [], [], []
        for a in node.all_input_nodes:
            if a in self.failed:
                if a in self.marks:
                    after.append(self.marks[a])
                continue
            v = dict.get(self.env, a)
            if isinstance(v, Value) and a.op != "placeholder":  # placeholders: the wrapper's own
                reads.append(a)
                values.append(v)
        val = node.meta.get("val")
        try:
            out = [tensor_type(val)] if isinstance(val, torch.Tensor) else []
        except Unsupported:
            out = []  # a complex tensor: only PyTorch holds it
        self.marks[node] = mark_framework_node(self.graph, TorchCall(node, tuple(reads)), values, out, after=after,
                                              label=op, source=locations.describe(node))

    def problem_lines(self) -> list[str]:
        """One line per distinct unsupported op and place: ``op [why] in module at file:line``."""
        lines, seen = [], set()
        for op, node, why in self.problems:
            if why == RUN_TIME_SIZE:
                continue
            where = locations.describe_long(node)
            if (op, why, where) in seen:
                continue
            seen.add((op, why, where))
            reason = "" if why == NO_EQUIVALENT else f" [{why}]"
            lines.append(f"  {op}{reason} {where}")
        return lines

    def unsupported(self) -> UnsupportedOpError:
        lines = self.problem_lines()
        first_op, first_node, _ = self.problems[0]
        message = (f"{self.graph.name} uses {len(lines)} operation(s) sol cannot compile yet "
                   f"(sol has no equivalent operation unless said otherwise):\n" + "\n".join(lines) + f"\n{LATER}")
        return UnsupportedOpError(message, op=first_op, source=locations.describe(first_node))


@dataclass(frozen=True, eq=False)
class TorchCall:
    """The handle of a framework node: the fx node PyTorch runs, and the fx nodes through which
    it reads the framework node's inputs (in order); its output, if any, is ``node``'s value."""

    node: fx.Node
    reads: tuple[fx.Node, ...]


def output_node(ep: ExportedProgram) -> fx.Node:
    return next(n for n in reversed(ep.graph.nodes) if n.op == "output")


def user_outputs(ep: ExportedProgram, name: str, inputs_may_change: bool = False) -> list[Any]:
    """The model's output leaves (fx nodes or Python values), in ``call_spec.out_spec`` order;
    refuses forward functions that update buffers in place, and inputs too unless
    ``inputs_may_change`` (whole programs copy the new values back: :class:`OutputLayout`)."""
    specs = ep.graph_signature.output_specs
    allowed = (OutputKind.USER_OUTPUT, OutputKind.USER_INPUT_MUTATION, OutputKind.BUFFER_MUTATION) \
        if inputs_may_change else (OutputKind.USER_OUTPUT,)
    mutated = [str(s.target) for s in specs if s.kind not in allowed]
    if mutated:
        raise UnsupportedOpError(
            f"{name}.forward updates {', '.join(mutated)} in place; sol compiles such a forward whole only (here "
            f"PyTorch runs parts of it, and in-place updates are not carried between the parts): return the new "
            f"value instead.",
            op=IN_PLACE)
    results: Sequence[Any] = output_node(ep).args[0]  # type: ignore[assignment]
    return [leaf for s, leaf in zip(specs, results) if s.kind is OutputKind.USER_OUTPUT]


def input_updates(ep: ExportedProgram) -> list[tuple[str, fx.Node]]:
    """(input placeholder name, node computing its new value) for each tensor input and buffer
    the forward updates in place."""
    placeholder = {str(s.target): s.arg.name for s in ep.graph_signature.input_specs
                   if s.kind is InputKind.BUFFER}
    specs = ep.graph_signature.output_specs
    results: Sequence[Any] = output_node(ep).args[0]  # type: ignore[assignment]
    return [(str(s.target) if s.kind is OutputKind.USER_INPUT_MUTATION else placeholder[str(s.target)], leaf)
            for s, leaf in zip(specs, results)
            if s.kind in (OutputKind.USER_INPUT_MUTATION, OutputKind.BUFFER_MUTATION)]


def _leaves(items: list[Any]) -> Iterator[Any]:
    for x in items:
        if isinstance(x, (list, tuple)):
            yield from _leaves(list(x))
        else:
            yield x
