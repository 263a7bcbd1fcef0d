"""Training through sol: gradients into the model's own parameters, PyTorch's training-mode
semantics, one compiled forward and one compiled backward per variant.

How a call runs. A *training variant* is the model imported in its current modes (each
submodule's ``training`` flag as it is: a model may freeze some BatchNorms in eval mode) and
differentiated by core autodiff (:func:`sol.autodiff.differentiate`) with respect to the
parameters that require grad and the inputs that do. Its forward runs inside a
``torch.autograd.Function`` whose inputs are the call's tensors *and the model's parameters and
buffers themselves*, fetched from the model at every call:

* an optimizer built on either module updates tensors the next call reads: no copy, no
  recompile (parameters and buffers are inputs of the training programs, not constants placed
  once);
* autograd sees the real ``nn.Parameter`` objects as inputs, so ``loss.backward()`` fills their
  ``.grad`` through their own gradient accumulators, where hooks (``DistributedDataParallel``'s
  all-reduce, ``register_hook``, gradient clipping) work as with eager PyTorch;
* every tensor the backward reads (an input, a weight, an output it returned, an activation
  only the backward needs) is kept with ``save_for_backward``, so modifying it in place before
  ``backward`` is PyTorch's usual error, not a silently wrong gradient;
* an output the loss does not use gets no gradient, and what only such outputs depend on gets
  ``None``, not zeros: ``.grad`` stays None as in eager (momentum and weight decay leave it).

Gradient stops are core's ``stop_gradient`` (:mod:`sol.ops.gradient`): ``x.detach()``,
``x.detach_()``, ``torch.no_grad()`` / ``torch.set_grad_enabled(False)`` blocks and
``@torch.no_grad()`` helpers inside ``forward`` (traced with gradients on, so that
``torch.export`` records them: :func:`stop_gradient_regions`), and values computed under
``torch.inference_mode()``. ``nn.Embedding(padding_idx=...)`` is a gather whose gradient skips
that row; ``scale_grad_by_freq`` and ``sparse`` embeddings are refused (PyTorch trains them).

Training-mode semantics (see :mod:`sol_pytorch.aten.training`): BatchNorm normalizes with batch
statistics and the new running statistics (and ``num_batches_tracked``) are outputs of the
forward program, written into the model's buffers after each call (InstanceNorm's with
``track_running_stats`` too, which ``torch.export`` does not record: :meth:`TrainingImporter._instance_norm`);
dropout masks are drawn by PyTorch's own RNG call at the point eager makes it, so a seed gives
eager's masks. Hooks are not traced (:func:`_without_hooks`): the wrapper runs them.

Tracing (``torch.export``) neither moves the RNG nor touches the real buffers; a variant is
keyed on the argument signature, the modes of all submodules and which parameters and inputs
require grad, so switching any of them compiles (once) rather than computing the wrong thing.
A model sol cannot compile completely trains in eager PyTorch (one warning; ``fallback=False``
raises instead): gradients through a partly compiled model are not supported. Its graph is then
one framework node standing for the whole model (:func:`_eager_graph`), so core compiles nothing
for it (:func:`sol.fallback.compile_partitioned` of a graph without sol nodes).
"""

from __future__ import annotations

import contextlib
import warnings
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx
from torch.autograd.function import once_differentiable
from torch.export import ExportedProgram
from torch.export.graph_signature import InputKind, OutputKind
from torch.utils import _pytree as pytree

from sol.plugin_api import (
    Differentiated,
    Graph,
    PartitionedProgram,
    Program,
    SavedSource,
    TrainingProgram,
    UnsupportedOpError,
    Value,
    compile_partitioned,
    differentiate,
    is_partitioned,
)
from sol.plugin_api import mark_framework_node as mark
from sol_pytorch import fallback, locations
from sol_pytorch.aten import Unsupported, tensor_type
from sol_pytorch.aten.training import CUMULATIVE_MOMENTUM, RANDOM_KEY, RandomInput, instance_norm_training
from sol_pytorch.guard import TRACE_LOCK, tracing_copy
from sol_pytorch.importer import (
    LAYOUT_KEY,
    SCALARS,
    Constant,
    NotExportable,
    OutputLayout,
    _decompose,
    _Importer,
    _op_name,
    describe_value,
    example_values,
    export_structured,
    out_spec,
    output_node,
    prepare,
    quiet_torch,
    remember_rebuild,
    user_stacklevel,
)
from sol_pytorch.structure import unflatten
from sol_pytorch.variants import KEY, OPTIONS, host_array, signature, torch_tensor

TRAIN_KEY = "pytorch.training"
"""``Graph.meta`` key of a training import: its :class:`TrainingImport`."""

TrainingKey = tuple[Any, ...]
Feed = tuple[str, "int | StateRef | RandomInput"]


def variant_key(model: torch.nn.Module, signature: Any, values: Sequence[Any]) -> TrainingKey:
    """What a training variant is specialized on besides the arguments' signature: every
    submodule's mode, which parameters require grad, which tensor arguments require grad."""
    return (signature, tuple(m.training for m in model.modules()),
            tuple(p.requires_grad for p in model.parameters()),
            tuple(isinstance(v, torch.Tensor) and v.requires_grad for v in values))


@dataclass(frozen=True)
class StateRef:
    """A parameter or buffer of the model by place (module and attribute), read at every call:
    what a call uses is whatever tensor the model holds there now."""

    name: str
    module: torch.nn.Module
    attr: str

    def get(self) -> torch.Tensor:
        return getattr(self.module, self.attr)

    @classmethod
    def of(cls, model: torch.nn.Module, name: str) -> StateRef:
        prefix, _, attr = name.rpartition(".")
        return cls(name, model.get_submodule(prefix) if prefix else model, attr)


@dataclass
class TrainingImport:
    """What a training variant needs besides its programs, recorded at import.

    ``feeds``: per forward-graph input, where its tensor comes from at a call: ``("arg", i)``
    the i-th forward argument, ``("state", StateRef)`` a parameter or buffer of the model,
    ``("random", RandomInput)`` a mask drawn by PyTorch's RNG. ``outputs``: the model's output
    count; graph outputs after them are new buffer values, ``updates[k]`` names the buffer of
    output ``outputs + k``. ``diff``: the differentiation, None when nothing takes a gradient."""

    key: TrainingKey
    feeds: list[Feed]
    layout: OutputLayout
    outputs: int
    updates: list[StateRef]
    diff: Differentiated | None = None
    fallen: list[str] = field(default_factory=list)  # set when PyTorch runs the whole model


# --- import -----------------------------------------------------------------------------------


def _is_scalar(v: Any) -> bool:
    return isinstance(v, SCALARS)


@contextlib.contextmanager
def _tracing(model: torch.nn.Module) -> Iterator[None]:
    """Trace without side effects on the user's RNG, and with ``momentum=None`` BatchNorms
    made traceable (their factor is computed in Python from a buffer; see
    :data:`~sol_pytorch.aten.training.CUMULATIVE_MOMENTUM`)."""
    cumulative = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)
                  and m.training and m.track_running_stats and m.momentum is None]
    for m in cumulative:
        m.momentum = CUMULATIVE_MOMENTUM
    try:
        with torch.random.fork_rng(devices=[]):
            yield
    finally:
        for m in cumulative:
            m.momentum = None


def trace_training(model: torch.nn.Module, values: tuple[Any, ...]) -> ExportedProgram:
    """``torch.export`` of the model in its current modes, functionalized: buffer updates
    (BatchNorm's running statistics) become outputs of the graph. A copy of the model is traced
    (:mod:`sol_pytorch.guard`): the model itself is never touched.

    Traced with gradients enabled (inference traces run under ``torch.no_grad()``): only then
    does ``torch.export`` record where ``forward`` turns them off (``torch.no_grad()`` blocks,
    ``@torch.no_grad()`` helpers, ``torch.set_grad_enabled(False)``), which
    :func:`stop_gradient_regions` turns into gradient stops. The whole model's own hooks are
    not traced: the wrapper runs them around the compiled call, at every call, as PyTorch does."""
    with TRACE_LOCK:
        twin = tracing_copy(model)
        _without_hooks(twin)
        with _tracing(twin):
            ep, rebuild = export_structured(twin, values, _export_with_grad)
        return remember_rebuild(prepare(stop_gradient_regions(ep)), rebuild)


def _without_hooks(twin: torch.nn.Module) -> None:
    """Take every hook out of a :func:`tracing_copy` (its own hook dicts: the model keeps its
    hooks). Why: a hook is user code that expects each call's real tensors; run while tracing it
    would see fake ones, once. The wrapper runs the model's own hooks around the compiled call,
    and makes PyTorch run calls while submodules have hooks (:mod:`sol_pytorch.wrapper`), so no
    training program ever needs them."""
    for m in twin.modules():
        m.__dict__.update(  # not setattr: nothing of the user's changed (no configuration generation)
            _forward_pre_hooks=OrderedDict(), _forward_pre_hooks_with_kwargs={}, _forward_hooks=OrderedDict(),
            _forward_hooks_with_kwargs={}, _forward_hooks_always_called={}, _backward_hooks=OrderedDict(),
            _backward_pre_hooks=OrderedDict())


def _export_with_grad(model: torch.nn.Module, values: tuple[Any, ...]) -> ExportedProgram:
    """:func:`sol_pytorch.importer.export` with gradients enabled (see :func:`trace_training`)."""
    with TRACE_LOCK, torch.enable_grad(), quiet_torch():
        try:
            return torch.export.export(model, values, strict=False)
        except Exception as exc:
            if hasattr(exc, "add_note"):
                shapes = ", ".join(describe_value(t) for t in values)
                exc.add_note(f"(while sol traced {type(model).__name__} for training with torch.export for "
                             f"inputs {shapes})")
            raise


_SET_GRAD = torch.ops.higher_order.wrap_with_set_grad_enabled
_DETACH = torch.ops.aten.detach.default


def stop_gradient_regions(ep: ExportedProgram) -> ExportedProgram:
    """Where ``forward`` stops gradients, as explicit ``aten.detach`` nodes (imported as core's
    ``stop_gradient``), in a graph without higher-order ops.

    * A region run with gradients off (``wrap_with_set_grad_enabled(False, body, ...)``): each
      tensor the body returns is detached inside the body, then the region is inlined
      (``run_decompositions``). What the region computes is still compiled; nothing flows back
      through it, so weights used only there keep ``.grad is None`` as in eager.
    * ``x.detach_()``: functionalization drops it (it changes no value), so it becomes the
      out-of-place ``detach``, read by every later reader of ``x``.
    * A value computed under ``torch.inference_mode()`` (an inference tensor, which takes no
      gradient) is detached where ordinary code reads it (the mark is on ``torch.export``'s fake
      values, which decomposing would lose).

    ``torch.export`` splits a ``torch.enable_grad()`` block nested in such a region off at the
    top level, so what it computes keeps its gradient (as in eager) without anything here."""
    graph = ep.graph
    regions = changed = False
    order = {n: i for i, n in enumerate(graph.nodes)}
    for node in list(graph.nodes):
        if node.op != "call_function":
            continue
        if node.target is torch.ops.aten.detach_.default:
            source = node.args[0]
            with graph.inserting_after(node):
                out = graph.call_function(_DETACH, (source,))
            out.meta = dict(node.meta)
            node.replace_all_uses_with(out)
            for user in list(source.users):  # type: ignore[union-attr]
                if user is not out and user is not node and order.get(user, -1) > order[node]:
                    user.replace_input_with(source, out)  # type: ignore[arg-type]
            graph.erase_node(node)
            changed = True
        elif node.target is _SET_GRAD:
            regions = True
            if not node.args[0]:
                _detach_region_results(ep, node)
        elif _is_inference(node) and any(_reads_with_gradient(u) for u in node.users):
            with graph.inserting_after(node):  # computed under torch.inference_mode(): no gradient
                held = graph.call_function(_DETACH, (node,))
            held.meta = dict(node.meta)
            for user in [u for u in node.users if u is not held and _reads_with_gradient(u)]:
                user.replace_input_with(node, held)
            changed = True
    if not (regions or changed):
        return ep
    ep.graph_module.recompile()
    return _decompose(ep, {}) if regions else ep


def _is_inference(node: fx.Node) -> bool:
    val = node.meta.get("val")
    return isinstance(val, torch.Tensor) and val.is_inference()


def _reads_with_gradient(user: fx.Node) -> bool:
    """Ordinary code reading an inference tensor (not inference-mode code, not the graph's
    output list, whose names the export signature holds)."""
    return user.op != "output" and not _is_inference(user)


def _detach_region_results(ep: ExportedProgram, node: fx.Node) -> None:
    body: fx.GraphModule = getattr(ep.graph_module, node.args[1].target)  # type: ignore[union-attr, arg-type]
    inner = body.graph
    out = next(n for n in inner.nodes if n.op == "output")

    def detached(v: Any) -> Any:
        if isinstance(v, fx.Node) and isinstance(v.meta.get("val"), torch.Tensor):
            with inner.inserting_before(out):
                d = inner.call_function(_DETACH, (v,))
            d.meta = dict(v.meta)
            return d
        return v

    out.args = (pytree.tree_map(detached, out.args[0]),)
    body.recompile()


class TrainingImporter(_Importer):
    """The importer with parameters and buffers as graph inputs (they change between calls),
    random masks as inputs, and buffer updates as extra outputs."""

    def __init__(self, ep: ExportedProgram, model: torch.nn.Module) -> None:
        super().__init__(ep, model, {})
        self.graph.meta[RANDOM_KEY] = []
        self.feeds: dict[Value, Feed] = {}
        self.state_inputs: dict[str, Value] = {}
        self.user_args = 0
        self.updates: list[StateRef] = []
        # Buffers updated by a converter (InstanceNorm's running statistics: torch.export does
        # not see that update), by name: the latest value.
        self.computed_updates: dict[str, Value] = {}

    def _call(self, node: fx.Node) -> None:
        if node.target is torch.ops.aten.instance_norm.default and self._instance_norm(node):
            return
        super()._call(node)

    def _instance_norm(self, node: fx.Node) -> bool:
        """InstanceNorm with ``track_running_stats`` in training mode: normalized with each
        sample's own statistics, and the running statistics updated as eager does (a side effect
        ``torch.export`` does not record). False: the ordinary conversion does it all."""
        try:
            args = self._bind(node)
            rm, rv = args["running_mean"], args["running_var"]
            names = {v: k for k, v in self.state_inputs.items()}
            if not args["use_input_stats"] or not isinstance(rm, Value) or rm not in names:
                return False
            self.em.source = locations.describe(node)
            self.em.val = node.meta.get("val")
            y, mean, var = instance_norm_training(self.em, args, self.computed_updates.get(names[rm], rm),
                                                  self.computed_updates.get(names.get(rv, ""), rv))
        except Unsupported as exc:
            self._problem(node, _op_name(node.target), str(exc))
            return True
        self.env[node] = self._checked(node, "aten.instance_norm.default", y)
        self.computed_updates[names[rm]] = mean
        if isinstance(rv, Value) and rv in names:
            self.computed_updates[names[rv]] = var
        return True

    def _placeholder(self, node: fx.Node) -> None:
        spec = self.input_specs[node.name]
        if spec.kind in (InputKind.PARAMETER, InputKind.BUFFER):
            name = str(spec.target)
            v = self.graph.add_input(name, tensor_type(node.meta["val"]))
            self.feeds[v] = ("state", StateRef.of(self.model, name))
            self.state_inputs[name] = v
            self.env[node] = v
            return
        inputs = len(self.graph.inputs)
        super()._placeholder(node)
        if spec.kind is InputKind.USER_INPUT and len(self.graph.inputs) > inputs:
            self.feeds[self.graph.inputs[-1]] = ("arg", self.user_args)  # the k-th tensor argument
            self.user_args += 1

    def _outputs(self) -> None:
        specs = self.ep.graph_signature.output_specs
        results: Sequence[Any] = output_node(self.ep).args[0]  # type: ignore[assignment]
        other = [f"{s.kind.name.lower()} {s.target}" for s in specs
                 if s.kind not in (OutputKind.USER_OUTPUT, OutputKind.BUFFER_MUTATION)]
        if other:
            raise UnsupportedOpError(f"{self.graph.name}.forward has outputs sol cannot train with: "
                                     f"{', '.join(other)}", op="in-place update")
        slots: list[int | Constant] = []
        index: dict[Value, int] = {}
        for s, leaf in zip(specs, results):
            if s.kind is not OutputKind.USER_OUTPUT:
                continue
            v = self.env[leaf] if isinstance(leaf, fx.Node) else leaf
            if not isinstance(v, Value):
                slots.append(Constant(v))
                continue
            if v not in index:
                index[v] = len(self.graph.outputs)
                self.graph.outputs.append(self.own_buffer(v, leaf))
            slots.append(index[v])
        self.graph.meta[LAYOUT_KEY] = OutputLayout(out_spec(self.ep), tuple(slots))
        for s, leaf in zip(specs, results):
            if s.kind is OutputKind.BUFFER_MUTATION:
                v = self.env[leaf]
                name = str(s.target)
                if v is self.state_inputs.get(name):
                    continue  # "updated" to itself (BatchNorm in eval mode)
                self.graph.outputs.append(self.own_buffer(v, leaf))
                self.updates.append(StateRef.of(self.model, name))
        for name, v in self.computed_updates.items():
            self.graph.outputs.append(v)
            self.updates.append(StateRef.of(self.model, name))

    def finish(self) -> Graph:
        graph = super().finish()
        used = {v for n in graph.nodes for v in n.inputs} | set(graph.outputs)
        # Weights of submodules forward does not call take no gradient (PyTorch leaves their
        # .grad None): they are not inputs at all.
        graph.inputs = [v for v in graph.inputs if v in used or self.feeds.get(v, ("",))[0] == "arg"]
        return graph


def import_training(model: torch.nn.Module, example_inputs: Sequence[Any], options: dict[str, Any],
                    warned: set[str] | None = None) -> Graph:
    """The forward graph to compile for a training variant (``diff.forward`` when something
    takes a gradient), with its :class:`TrainingImport` in ``graph.meta[TRAIN_KEY]``.
    ``example_inputs`` as for ``optimize``; tensors among them that require grad get a gradient."""
    if not model.training and options.get("training"):
        model.train()  # optimize(..., training=True): the model trains, as after model.train()
    values = example_values(model, example_inputs)
    given = tuple(example_inputs)
    if len(given) != len(values):  # one tuple of inputs, unpacked
        given = tuple(given[0])
    key = variant_key(model, signature(values), given)
    try:
        ep = trace_training(model, values)
    except NotExportable as exc:
        if not options.get("fallback", True):
            raise
        name = type(model).__name__
        return _eager_graph(name, [f"  {exc.reason}"], key, options, warned,
                            f"torch.export cannot trace {name} for training; PyTorch trains the whole model:")
    importer = TrainingImporter(ep, model)
    importer.convert_all()
    if importer.problems:
        if not options.get("fallback", True):
            raise importer.unsupported()
        lines = importer.problem_lines()
        return _eager_graph(importer.graph.name, lines, key, options, warned,
                            f"sol cannot compile {len(lines)} operation(s) of {importer.graph.name} for training; "
                            f"PyTorch trains the whole model (gradients through a partly compiled model are not "
                            f"supported):")
    graph = importer.finish()
    randoms: list[RandomInput] = graph.meta.pop(RANDOM_KEY)
    by_name = {r.name: r for r in randoms}
    feeds: list[Feed] = [importer.feeds[v] if v in importer.feeds else ("random", by_name[v.name])
                         for v in graph.inputs]
    layout: OutputLayout = graph.meta[LAYOUT_KEY]
    outputs = len(graph.outputs) - len(importer.updates)
    arg_grads = [isinstance(v, torch.Tensor) and v.requires_grad for v in given if not _is_scalar(v)]
    wrt = [v for v, (_, src) in zip(graph.inputs, feeds) if v.dtype.startswith("float") and (
        (isinstance(src, StateRef) and src.get().requires_grad) or (isinstance(src, int) and arg_grads[src]))]
    differentiable = [i for i in range(outputs) if graph.outputs[i].dtype.startswith("float")]
    info = TrainingImport(key, feeds, layout, outputs, importer.updates)
    graph.meta.update({KEY: signature(values), OPTIONS: dict(options)})
    if wrt and differentiable:
        info.diff = differentiate(graph, wrt, differentiable)
        graph = info.diff.forward
    graph.meta[TRAIN_KEY] = info
    return graph


def _eager_graph(name: str, lines: list[str], key: TrainingKey, options: dict[str, Any],
                 warned: set[str] | None, header: str) -> Graph:
    """PyTorch trains the whole model: a graph of one framework node (no values in or out),
    which core cuts into no sol part, so nothing is compiled (an empty graph would still be a
    compile, and a program that does nothing). Warns ``header`` and ``lines`` (the lines not
    in ``warned`` yet)."""
    new = [line for line in lines if line not in (warned if warned is not None else ())]
    if new:
        if warned is not None:
            warned.update(new)
        warnings.warn(header + "\n" + "\n".join(lines), fallback.SolFallbackWarning, stacklevel=user_stacklevel())
    graph = Graph(name=f"{name}_eager")
    mark(graph, None, [], [], label="PyTorch trains the whole model")
    graph.meta.update({KEY: key[0], OPTIONS: dict(options)})
    graph.meta[TRAIN_KEY] = TrainingImport(key, [], OutputLayout(None, ()), 0, [], fallen=lines)
    return graph


# --- variants ---------------------------------------------------------------------------------


class TrainingVariant:
    """One compiled training variant: called with the forward arguments (validated)."""

    def __init__(self, model: torch.nn.Module, info: TrainingImport, forward: Program | PartitionedProgram,
                 backward: Program | None) -> None:
        self.model = model
        self.info = info
        self.key = info.key
        self.program = forward  # partitioned (with no compiled part) where PyTorch trains the whole model
        self.training_program = (TrainingProgram(info.diff, forward, backward)
                                 if info.diff is not None and backward is not None and isinstance(forward, Program)
                                 else None)
        self._wrt = set(info.diff.wrt_inputs) if info.diff is not None else set()

    @property
    def programs(self) -> list[Program]:
        if isinstance(self.program, PartitionedProgram):
            return self.program.programs  # none: PyTorch trains the whole model
        tp = self.training_program
        return [self.program] if tp is None else [tp.forward_program, tp.backward_program]

    @property
    def fallen(self) -> list[str]:
        return list(self.info.fallen)

    def __call__(self, values: Sequence[Any]) -> Any:
        info = self.info
        if info.fallen:
            return self.model(*values)
        assert isinstance(self.program, Program)  # a partitioned one only where the model fell back
        args = [v for v in values if isinstance(v, torch.Tensor)]
        tensors = []
        for _, src in info.feeds:  # masks are drawn in graph order: eager's order
            tensors.append(args[src] if isinstance(src, int) else src.get() if isinstance(src, StateRef)
                           else src.draw())
        tp = self.training_program
        if tp is not None and torch.is_grad_enabled() and any(tensors[i].requires_grad for i in self._wrt):
            results = _SolFunction.apply(self, *tensors)
        else:
            arrays = self.program(*(host_array(t) for t in tensors))
            results = tuple(torch_tensor(a) for a in arrays[:info.outputs + len(info.updates)])
        with torch.no_grad():
            for ref, new in zip(info.updates, results[info.outputs:]):
                ref.get().copy_(new)
        leaves = [s.value if isinstance(s, Constant) else results[s] for s in info.layout.slots]
        return unflatten(leaves, info.layout.spec)


class _SolFunction(torch.autograd.Function):
    """The compiled forward and backward as one autograd node; its inputs are the forward
    program's tensors (arguments, the model's parameters and buffers, masks).

    Everything the backward reads goes through ``ctx.save_for_backward`` as a tensor, so
    autograd's version check guards it as it guards eager's saved tensors: changing a saved
    input or a saved output in place before ``backward()`` (``out.mul_(3)`` where the backward
    reads ``out``) raises PyTorch's "modified by an inplace operation" error instead of giving a
    gradient computed from the changed values. The forward's extra outputs (activations only the
    backward reads) are saved the same way, so autograd frees them once the backward has run
    (unless ``retain_graph``): their memory goes back to the device's output pool for the next
    step, even while the caller still holds this step's loss.

    An output the loss does not use gets no gradient (``None``: gradients are not
    materialized), and a parameter or input that only such outputs depend on gets ``None``
    back, not zeros (:meth:`Differentiated.unreached`): its ``.grad`` stays None as in eager,
    so momentum and weight decay leave it alone."""

    @staticmethod
    def forward(ctx: Any, variant: TrainingVariant, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:  # type: ignore[override]
        tp = variant.training_program
        assert tp is not None
        outs, saved = tp.forward(*(host_array(t) for t in tensors))
        results = tuple(torch_tensor(a) for a in outs)
        keep = []
        for s, array in zip(tp.diff.saved, saved):
            kind = _saved_kind(s, tp.num_outputs)
            keep.append(tensors[s.index] if kind == "input" else results[s.index] if kind == "output"
                        else torch.from_numpy(array))
        ctx.save_for_backward(*keep)
        ctx.variant = variant
        ctx.set_materialize_grads(False)
        differentiable = set(tp.grad_output_indices)
        ctx.mark_non_differentiable(*(r for i, r in enumerate(results) if i not in differentiable))
        return results

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        tp: TrainingProgram = ctx.variant.training_program
        saved = [host_array(t) for t in ctx.saved_tensors]  # raises if one was changed in place
        given = [grads[i] for i in tp.grad_output_indices]
        unreached = tp.diff.unreached([g is not None for g in given])
        out: list[torch.Tensor | None] = [None] * (len(ctx.needs_input_grad) - 1)
        wanted = [ctx.needs_input_grad[i + 1] and not skip for i, skip in zip(tp.wrt_inputs, unreached)]
        if not any(wanted):
            return (None, *out)
        results = tp.backward(saved, [None if g is None else host_array(g) for g in given])
        for i, g, want in zip(tp.wrt_inputs, results, wanted):
            if want:
                out[i] = torch_tensor(g)
        return (None, *out)


def _saved_kind(source: SavedSource, num_outputs: int) -> str:
    """How the backward gets a saved value: "input" (a tensor of the caller's), "output" (one
    the forward returns to the caller) or "extra" (a forward output only the backward reads)."""
    if source.kind == "input":
        return "input"
    return "output" if source.index < num_outputs else "extra"


def make_variant(program: Program | PartitionedProgram, graph: Graph, model: torch.nn.Module) -> TrainingVariant:
    """The training variant for ``program`` (compiled from ``graph`` as :func:`import_training`
    made it); the backward is compiled here, for the same device."""
    from sol.plugin_api import compile_graph

    info: TrainingImport = graph.meta[TRAIN_KEY]
    backward = None
    if info.diff is not None:
        options = {k: v for k, v in (graph.meta.get(OPTIONS) or {}).items() if k != "training"}
        backward = compile_graph(info.diff.backward, program.device, training=True, options=options)
    return TrainingVariant(model, info, program, backward)


def compile_variant(model: torch.nn.Module, values: Sequence[Any], device: str | None, options: dict[str, Any],
                    warned: set[str] | None = None) -> TrainingVariant:
    """Import ``model`` for training with these arguments and compile both programs."""
    from sol.plugin_api import compile_graph

    graph = import_training(model, values, options, warned)
    if is_partitioned(graph):  # PyTorch trains the whole model: nothing to compile
        return make_variant(compile_partitioned(graph, device, training=True, options=options), graph, model)
    return make_variant(compile_graph(graph, device, training=True, options=options), graph, model)
