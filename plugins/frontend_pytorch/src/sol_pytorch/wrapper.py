"""A compiled sol program as a ``torch.nn.Module`` that behaves like the model it came from.

Same call signature (positional or by argument name, non-tensor arguments included), same output
structure (tensor, tuple, dict, ...), same ``state_dict`` keys and submodule attributes: the
model's own children, parameters and buffers are registered on the wrapper under their original
names (the same objects, not copies), so ``sol_module.state_dict()`` equals ``model.state_dict()``
and a parent module's checkpoint keys do not change when a child is replaced by its optimized
version. The model itself stays reachable as ``.model`` without being registered a second time.

Shapes: a call whose tensors have other shapes than the example inputs (batch 3 after batch 8,
another image size) is compiled again for those shapes, once, and the variant kept (one per
signature; ``variants`` lists them), with a log message on ``logging.getLogger("sol")``. At most
``max_variants`` (default 8) inference variants and as many training variants are kept; beyond
that the least recently used one is dropped (logged; its library is unloaded once no call uses
it) and compiled again if needed (from the compile cache: fast). A different rank or dtype is an
error naming expected and given, as is any other shape with ``optimize(..., dynamic=False)``.
Non-tensor arguments (None, bools, ints, floats) are constants of a trace, so each value gets its
variant too.

Modes: the module starts in the mode it was compiled for (``optimize`` follows the model's own
mode unless ``training=`` says otherwise) and ``.train()`` / ``.eval()`` switch it, and the model
with it, as in PyTorch. In training mode (or in eval mode when an input requires grad) calls run
a training variant (:mod:`sol_pytorch.training`): sol's compiled forward and backward as one
autograd node over the model's own parameters, PyTorch's training-mode semantics (BatchNorm batch
statistics and running-statistics updates, dropout masks from PyTorch's RNG). In eval mode they
run an inference variant. Each kind is compiled when first needed and kept.

What is snapshotted and what is live (checked at every call by :mod:`sol_pytorch.weights`):
inference programs hold the weights' values as they were when compiled, and every program's code
holds the model's configuration (attributes such as ``eps`` or ``padding``, submodules, the code
of ``forward``, forward hooks). A call notices when any of that changed since (``load_state_dict``,
an optimizer step, a new parameter or submodule, ``w.data = t``, ``w.data.mul_(0.5)``,
``bn.eps = 1.0``, ``model.forward = f``, a hook added or removed) and compiles again first, with
a log message. Training programs read parameters and buffers live at every call (new values,
and new tensors of the same shape, need no recompile); a configuration change recompiles them
too. The limits of the check are listed in :mod:`sol_pytorch.weights`.

Threads: one module may be called from several threads at once. Compiling a variant takes the
module's lock (one compile per new signature however many threads ask for it; the others wait
for it), and tracing is serialized process-wide and works on a copy of the model
(:mod:`sol_pytorch.guard`): the model's modules, parameters and modes are never touched, even
when tracing fails (the exception reaches the caller, the module stays usable).

Copies: ``copy.deepcopy``, ``pickle`` and ``torch.save`` of the module save the model (its
weights and modes), the example input signature, the device and the options; loading optimizes
the loaded model again, which is fast from the compile cache (``torch.load(..., weights_only=False)``,
as for any pickled module).
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sol.ir import Graph
from sol.program import Program
from sol_pytorch import training
from sol_pytorch.importer import SCALARS, describe_value
from sol_pytorch.variants import (
    KEY,
    OPTIONS,
    Signature,
    Variant,
    compile_variant,
    make_variant,
    max_variants,
    signature,
)
from sol_pytorch.weights import ConfigWatch, ValuesWatch

log = logging.getLogger("sol")

_MISSING: Any = object()


@dataclass(frozen=True)
class ForwardSignature:
    """The model's ``forward`` parameters, to bind a call's arguments as ``forward`` would."""

    names: tuple[str, ...]  # positional parameters
    defaults: tuple[Any, ...]  # _MISSING where required
    variadic: bool  # forward(*args)

    @classmethod
    def of(cls, model: torch.nn.Module) -> ForwardSignature:
        try:
            params = list(inspect.signature(model.forward).parameters.values())
        except (TypeError, ValueError):
            return cls((), (), True)
        positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        return cls(tuple(p.name for p in positional),
                   tuple(_MISSING if p.default is p.empty else p.default for p in positional),
                   any(p.kind is p.VAR_POSITIONAL for p in params))

    def name(self, i: int) -> str:
        return self.names[i] if i < len(self.names) else f"args[{i - len(self.names)}]"


class SolModule(torch.nn.Module):
    """Runs the programs sol compiled from ``model`` on PyTorch tensors (see the module doc)."""

    def __init__(self, program: Program, model: torch.nn.Module, graph: Graph) -> None:
        super().__init__()
        self.graph_name = type(model).__name__
        self._device = program.device
        # The mode is the module's own (train/eval), not an option of later compiles.
        self._options: dict[str, Any] = {k: v for k, v in (graph.meta.get(OPTIONS) or {}).items()
                                         if k != "training"}
        self._max_variants = max_variants(self._options)
        self._lock = threading.RLock()  # held while compiling a variant or reacting to a change
        self._signature = ForwardSignature.of(model)
        self._variants: OrderedDict[Signature, Variant] = OrderedDict()  # least recently used first
        self._train_variants: OrderedDict[training.TrainingKey, training.TrainingVariant] = OrderedDict()
        compiled_for_training = training.TRAIN_KEY in graph.meta
        if compiled_for_training:
            trained = training.make_variant(program, graph, model)
            self._warned = set(trained.fallen)  # import_graph warned about these
            self._train_variants[trained.key] = trained
            self._primary: Signature = graph.meta[KEY]
        else:
            first = make_variant(program, graph)
            self._warned = set(first.fallen)
            self._variants[first.key] = first
            self._primary = first.key  # what the example inputs were: checks and messages
        self.program = program
        self._mirror(model)
        object.__setattr__(self, "model", model)  # reachable, not a registered child (after
        # mirroring: attribute reads fall through to it, which registration would take as a clash)
        self._config = ConfigWatch(model)
        self._values = ValuesWatch(model)
        # The mode compiled for (set without touching the children: a model may mix modes).
        self.training = compiled_for_training

    def _mirror(self, model: torch.nn.Module) -> None:
        non_persistent: set[str] = getattr(model, "_non_persistent_buffers_set", set())
        for name, child in model.named_children():
            self.add_module(name, child)
        for name, param in model.named_parameters(recurse=False):
            self.register_parameter(name, param)
        for name, buf in model.named_buffers(recurse=False):
            self.register_buffer(name, buf, persistent=name not in non_persistent)

    def _remirror(self, model: torch.nn.Module) -> None:
        """The model's children, parameters or buffers were replaced: register the new ones (into
        the registries directly: ``add_module`` would see the model's own attributes through
        ``__getattr__`` and refuse them as clashes)."""
        self._modules = dict(model.named_children())
        self._parameters = dict(model.named_parameters(recurse=False))
        self._buffers = dict(model.named_buffers(recurse=False))
        self._non_persistent_buffers_set = set(getattr(model, "_non_persistent_buffers_set", ()))

    def __getattr__(self, name: str) -> Any:
        """Other attributes of the original model (``num_classes``, helper methods) read through."""
        try:
            return super().__getattr__(name)
        except AttributeError:
            model = self.__dict__.get("model")
            if model is None:
                raise
            return getattr(model, name)

    def train(self, mode: bool = True) -> SolModule:
        """Switch modes as PyTorch does, the original model with it: training mode runs the
        training programs, eval mode the inference programs (each compiled on first use)."""
        super().train(mode)
        model = self.__dict__.get("model")
        if model is not None:
            model.train(mode)
        return self

    @property
    def variants(self) -> list[Variant | training.TrainingVariant]:
        """The compiled variants: inference ones, then training ones, each in compile order."""
        return [*self._variants.values(), *self._train_variants.values()]

    # --- calling ------------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._config.stale():
            self._config_changed()
        values = self._bind(args, kwargs)
        if self.training or (torch.is_grad_enabled() and any(
                isinstance(v, torch.Tensor) and v.requires_grad for v in values)):
            return self._train_call(values)  # eval mode with an input requiring grad: eval behaviour, differentiable
        if self._values.stale():
            self._values_changed()
        key = signature(values)
        variant = self._variants.get(key)
        if variant is None:
            variant = self._specialize(values, key)
        else:
            _touch(self._variants, key)
        return variant(values)

    def _config_changed(self) -> None:
        """Attributes, submodules, hooks or ``forward`` changed: every program is stale."""
        model = self.model
        with self._lock:
            if not self._config.stale():
                return  # another thread saw it first
            log.info("sol: %s changed since it was compiled (attributes, submodules, hooks or forward); "
                     "compiling again", self.graph_name)
            self._variants.clear()
            self._train_variants.clear()
            self._remirror(model)
            self._signature = ForwardSignature.of(model)
            self._config.refresh()
            self._values.refresh()

    def _values_changed(self) -> None:
        """Weights changed: the inference programs hold the old ones (training programs read them
        at every call)."""
        with self._lock:
            if not self._values.stale():
                return
            log.info("sol: the weights of %s changed since it was compiled; compiling again", self.graph_name)
            self._variants.clear()
            self._values.refresh()

    def _train_call(self, values: list[Any]) -> Any:
        key = training.variant_key(self.model, signature(values), values)
        variant = self._train_variants.get(key)
        if variant is None:
            variant = self._specialize_training(values, key)
        else:
            _touch(self._train_variants, key)
        return variant(values)

    def _specialize_training(self, values: list[Any], key: training.TrainingKey) -> training.TrainingVariant:
        with self._lock:  # one compile per key, however many threads ask
            variant = self._train_variants.get(key)
            if variant is not None:
                return variant
            if key[0] != self._primary:
                self._check_compatible(values)
            log.info("sol: compiling %s for training (or gradients) with inputs (%s) and its current modes",
                     self.graph_name, ", ".join(map(describe_value, values)))
            variant = training.compile_variant(self.model, values, self._device, self._options, self._warned)
            self._keep(self._train_variants, key, variant)
            return variant

    def _specialize(self, values: list[Any], key: Signature) -> Variant:
        with self._lock:  # one compile per signature, however many threads ask
            variant = self._variants.get(key)
            if variant is not None:
                return variant
            if key != self._primary:
                self._check_compatible(values)
                log.info("sol: compiling %s again for inputs (%s); the example inputs were (%s)", self.graph_name,
                         ", ".join(map(describe_value, values)), ", ".join(_describe_key(self._primary)))
            variant = compile_variant(self.model, values, self._device, self._options, self._warned)
            self._keep(self._variants, key, variant)
            if key == self._primary:
                self.program = variant.program
            return variant

    def _keep(self, variants: OrderedDict[Any, Any], key: Any, variant: Any) -> None:
        """Store a new variant; drop the least recently used beyond ``max_variants``."""
        variants[key] = variant
        while len(variants) > self._max_variants:
            old, _ = variants.popitem(last=False)
            log.info("sol: %s keeps at most %d variants of a kind (max_variants); dropped the least recently "
                     "used one, for inputs (%s)", self.graph_name, self._max_variants,
                     ", ".join(_describe_key(old[0] if isinstance(variant, training.TrainingVariant) else old)))

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
        """Positional and keyword arguments in ``forward``'s order, trailing omitted defaults left
        out (as ``forward`` is called), each checked to be a CPU tensor or a None/bool/int/float."""
        sig = self._signature
        given: list[Any] = list(args)
        if not sig.variadic or kwargs:
            if len(given) > len(sig.names) and not sig.variadic:
                raise self._count_error(len(given))
            given += [_MISSING] * (len(sig.names) - len(given))
            for key, value in kwargs.items():
                if key not in sig.names:
                    raise TypeError(f"{self.graph_name}: unexpected input {key!r}; inputs are {', '.join(sig.names)}")
                i = sig.names.index(key)
                if given[i] is not _MISSING:
                    raise TypeError(f"{self.graph_name}: got two values for input {key!r}")
                given[i] = value
            while given and given[-1] is _MISSING:
                given.pop()
            for i, value in enumerate(given):
                if value is _MISSING and sig.defaults[i] is not _MISSING:
                    given[i] = sig.defaults[i]
            missing = [n for n, v, d in zip(sig.names, given + [_MISSING] * len(sig.names), sig.defaults)
                       if v is _MISSING and d is _MISSING]
            if missing:
                if not kwargs:
                    raise self._count_error(len(args))
                raise TypeError(f"{self.graph_name}: missing input(s) {', '.join(missing)}")
        primary = self._primary
        for i, value in enumerate(given):
            label = f"input {i} ({sig.name(i)})"
            tensor_expected = i < len(primary) and isinstance(primary[i][0], tuple)
            if isinstance(value, torch.Tensor):
                if value.device.type != "cpu":
                    raise TypeError(f"{label}: expected a CPU tensor (sol device {self._device} reads host "
                                    f"memory), got a tensor on {value.device}")
            elif tensor_expected or not isinstance(value, SCALARS):
                raise TypeError(f"{label}: expected a torch.Tensor, got {type(value).__name__}")
        return given

    def _count_error(self, given: int) -> TypeError:
        expected = self._primary
        return TypeError(f"{self.graph_name} expects {len(expected)} input(s) "
                         f"({', '.join(_describe_key(expected))}), got {given}")

    def _check_compatible(self, values: list[Any]) -> None:
        """Another shape compiles a new variant; another rank or dtype is a mistake (as is
        another shape with ``dynamic=False``): raise naming expected and given."""
        dynamic = self._options.get("dynamic", True) is not False
        for i, (value, known) in enumerate(zip(values, self._primary)):
            if not isinstance(value, torch.Tensor) or not isinstance(known[0], tuple):
                continue
            shape, dtype = known
            label = f"input {i} ({self._signature.name(i)})"
            given_shape = tuple(value.shape)
            if value.dtype != dtype:
                raise TypeError(f"{label}: expected dtype {_dtype(dtype)}, got {_dtype(value.dtype)}")
            if len(given_shape) != len(shape):
                raise ValueError(f"{label}: expected rank {len(shape)} with shape {shape}, "
                                 f"got rank {len(given_shape)} with shape {given_shape}")
            if given_shape != shape and not dynamic:
                raise ValueError(f"{label}: expected shape {shape}, got {given_shape} (optimized with "
                                 f"dynamic=False; without it, sol compiles a variant for each new shape)")

    # --- copies -------------------------------------------------------------------------------
    def __reduce_ex__(self, protocol: Any) -> Any:
        """Pickled as the model, example inputs of the primary signature, device, mode and
        options (and the hooks registered on this module); loading optimizes again."""
        examples = tuple(torch.zeros(a, dtype=b) if isinstance(a, tuple) else b for a, b in self._primary)
        hooks = {k: v for k, v in self.__dict__.items() if "hook" in k}
        return _restore, (self.model, examples, self._device, self.training, dict(self._options)), hooks

    # --- display ------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        program = self.program
        ins = ", ".join(f"{n}: {t}" for n, t in zip(program.input_names, program.input_types))
        outs = ", ".join(map(str, program.output_types))
        more = f", {len(self._variants)} variants" if len(self._variants) > 1 else ""
        return f"{self.graph_name} on {program.device}: ({ins}) -> ({outs}){more}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


def _restore(model: torch.nn.Module, examples: tuple[Any, ...], device: str, training: bool,
             options: dict[str, Any]) -> SolModule:
    from sol.api import optimize

    restored: SolModule = optimize(model, *examples, device=device, training=training, **options)
    return restored


def _touch(variants: OrderedDict[Any, Any], key: Any) -> None:
    """Mark a variant used (for least-recently-used dropping)."""
    try:
        variants.move_to_end(key)
    except KeyError:  # dropped by another thread meanwhile; this call still holds it
        pass


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _describe_key(key: Sequence[Any]) -> list[str]:
    out = []
    for a, b in key:
        out.append(f"{_dtype(b)}[{', '.join(map(str, a))}]" if isinstance(a, tuple) else repr(b))
    return out
