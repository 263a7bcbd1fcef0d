"""A compiled sol program as a ``torch.nn.Module`` that behaves like the model it came from.

Same call signature (positional or by argument name, non-tensor arguments included), same output
structure (tensor, tuple, dict, ...), same ``state_dict`` keys and submodule attributes: the
wrapper's registries of children, parameters and buffers *are* the model's (the very dicts, not
copies), so ``state_dict()``, ``parameters()`` and ``named_modules()`` of the wrapper equal the
model's at all times, also after ``model.w = nn.Parameter(...)`` (an optimizer built on
``fast.parameters()`` trains the model's current tensors), and a parent module's checkpoint keys
do not change when a child is replaced by its optimized version. The model itself stays
reachable as ``.model`` without being registered a second time.

Shapes: a call whose tensors have other shapes than the example inputs (batch 3 after batch 8,
another image size) is compiled again for those shapes, once, and the variant kept (one per
signature; ``variants`` lists them), with a log message on ``logging.getLogger("sol")``. At most
``max_variants`` (default 8) inference variants and as many training variants are kept; beyond
that the least recently used one is dropped (logged; its library is unloaded once no call uses
it) and compiled again if needed (from the compile cache: fast). A different rank or dtype is an
error naming expected and given, as is any other shape with ``optimize(..., dynamic=False)``.
Non-tensor arguments (None, bools, ints, floats) are constants of a trace, so each value gets its
variant too.

Modes: the model's own flags are the truth. ``optimize`` puts the model in the mode it compiles
for (``training=True``: ``model.train()``; ``training=False``, or the default for a model in eval
mode, with submodules in training mode: ``model.eval()``, with the warning that says so), and from
then on ``fast.training`` is ``model.training``;
``fast.train()`` / ``fast.eval()`` call the model's ``train()`` (its own override included), and
``model.train()`` / ``model.eval()`` / a submodule's mode switch are seen by the next call alike.
Which program a call runs, read at every call, as eager PyTorch would behave:

* any submodule in training mode, or grad mode on and a tensor argument requiring grad: a
  training variant (:mod:`sol_pytorch.training`) for the modes as they are: sol's compiled
  forward and backward as one autograd node over the model's own parameters, PyTorch's
  training-mode semantics (BatchNorm batch statistics and running-statistics updates, dropout
  masks from PyTorch's RNG) where modules train and eval behaviour where they do not;
* every module in eval mode, grad mode on, and parameters that require grad (a plain call
  outside ``torch.no_grad()``): the inference program runs, and its outputs are connected to the
  parameters as eager's are (``loss.backward()`` gives parameter gradients: frozen-BatchNorm
  fine-tuning, penalties on the weights). The gradient is computed only if a backward comes: it
  recomputes the forward with the eval-mode training variant (compiled then) and runs its
  backward; once that variant exists, such calls use it directly (it reads the weights live,
  so an optimizer step needs no recompile);
* otherwise (``torch.no_grad()``, ``torch.inference_mode()``, or nothing requires grad): the
  inference program.

Each kind is compiled when first needed and kept.

Calls sol does not compile, run by PyTorch on the model itself (each warned once):

* under ``torch.autocast("cpu", ...)``: sol has no bfloat16/float16 kernels, and float32 results
  where eager returns bfloat16 would be silently different; PyTorch runs the call, exactly;
* calls that need gradients (as above) while hooks are registered on submodules (forward,
  forward-pre or backward hooks; or PyTorch's global module hooks): they are user code that
  expects each call's real tensors (feature extraction, Grad-CAM, gradient logging), which a
  compiled graph does not have. Hooks on the model itself run around the compiled call at every
  call, as PyTorch runs them (forward pre-hooks, forward hooks, full backward hooks).

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

import functools
import inspect
import logging
import threading
import warnings
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.autograd.function import once_differentiable
from torch.nn.modules import module as _module
from torch.utils import _pytree as pytree

from sol.plugin_api import Graph, PartitionedProgram, Program, UnsupportedOpError
from sol_pytorch import fallback, generation
from sol_pytorch import training as sol_training  # (a module-level name: SolModule.training is the mode)
from sol_pytorch.errors import torch_errors
from sol_pytorch.importer import SCALARS, describe_value, user_stacklevel
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
from sol_pytorch.weights import ConfigWatch, ValuesWatch, modes_key

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

    def __init__(self, program: Program | PartitionedProgram, model: torch.nn.Module, graph: Graph) -> None:
        super().__init__()
        self.graph_name = type(model).__name__
        self._device = program.device
        # The mode is the module's own (train/eval), and the device is the program's (core passes
        # it in the options, as the device it resolved): neither is an option of later compiles.
        self._options: dict[str, Any] = {k: v for k, v in (graph.meta.get(OPTIONS) or {}).items()
                                         if k not in ("training", "device")}
        self._max_variants = max_variants(self._options)
        self._lock = threading.RLock()  # held while compiling a variant or reacting to a change
        self._signature = ForwardSignature.of(model)
        self._variants: OrderedDict[Signature, Variant] = OrderedDict()  # least recently used first
        self._train_variants: OrderedDict[sol_training.TrainingKey, sol_training.TrainingVariant] = OrderedDict()
        compiled_for_training = sol_training.TRAIN_KEY in graph.meta
        if compiled_for_training:
            trained = sol_training.make_variant(program, graph, model)
            self._warned = set(trained.fallen)  # import_graph warned about these
            self._train_variants[trained.key] = trained
            self._primary: Signature = graph.meta[KEY]
        else:
            first = make_variant(program, graph)
            self._warned = set(first.fallen)
            self._variants[first.key] = first
            self._primary = first.key  # what the example inputs were: checks and messages
        self.program = program
        # The model's own registries, shared (see the module doc); the model is reachable, not a
        # registered child.
        for name in _SHARED:
            object.__setattr__(self, name, getattr(model, name))
        object.__setattr__(self, "model", model)
        if not compiled_for_training and any(m.training for m in model.modules()):
            model.eval()  # compiled for inference (training=False): eval mode, as training=True means train mode
        self._config = ConfigWatch(model)
        self._values = ValuesWatch(model)
        self._tree: list[tuple[str, torch.nn.Module]] = list(model.named_modules())
        self._modes_seen: list[Any] = [None, False]  # [modes_key, any module training]

    @property  # type: ignore[override]
    def training(self) -> bool:
        """The model's mode (its own flag: the truth, see the module doc)."""
        model = self.__dict__.get("model")
        return bool(self.__dict__.get("_mode", True) if model is None else model.training)

    @training.setter
    def training(self, mode: bool) -> None:
        model = self.__dict__.get("model")
        if model is None:  # nn.Module.__init__, before the model is known
            self.__dict__["_mode"] = mode
        else:
            model.training = mode

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
        """``model.train(mode)`` (the model's own ``train``, overrides included): the mode is the
        model's, read at every call (see the module doc)."""
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        self.model.train(mode)
        return self

    @property
    def generate(self) -> Any:
        """``model.generate`` (Hugging Face models) with the decode steps run by sol, compiled
        once per static-cache bucket rather than once per token (:mod:`sol_pytorch.generation`)."""
        model = self.__dict__["model"]
        if not callable(getattr(type(model), "generate", None)):
            raise AttributeError(f"{type(model).__name__} has no generate method")
        return functools.partial(generation.generate, self)

    def _cache_step(self, cache: Any, names: tuple[str, ...], inputs: tuple[Any, ...]) -> SolModule:
        """The compiled decode step for caches laid out like ``cache`` and these tensor arguments
        (built on first use, for these step inputs: copies, the compile must not update the
        caller's cache)."""
        key = (generation.cache_structure(cache), names)
        with self._lock:
            steps: dict[Any, SolModule] = self.__dict__.setdefault("_cache_steps", {})
            step = steps.get(key)
            if step is None:
                from sol.plugin_api import optimize

                examples = tuple(t.clone() if isinstance(t, torch.Tensor) else t for t in inputs)
                step = optimize(generation.CacheStep(self.model, cache, names).eval(), *examples, device=self._device,
                                training=False, **self._options)
                steps[key] = step
            return step

    def _warn_once(self, message: str) -> None:
        """One SolFallbackWarning per message for this module's life."""
        if message not in self._warned:
            self._warned.add(message)
            warnings.warn(f"sol: {self.graph_name}: {message}", fallback.SolFallbackWarning,
                          stacklevel=user_stacklevel())

    @property
    def variants(self) -> list[Variant | sol_training.TrainingVariant]:
        """The compiled variants: inference ones, then training ones, each in compile order."""
        return [*self._variants.values(), *self._train_variants.values()]

    # --- calling ------------------------------------------------------------------------------
    @torch_errors  # a failed factorization check raises PyTorch's LinAlgError, as eager does
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._config.stale():
            self._config_changed()
        values = self._bind(args, kwargs)
        if torch.is_autocast_enabled("cpu"):
            return self._eager(values, AUTOCAST)
        other = [i for i, v in enumerate(values) if not isinstance(v, (torch.Tensor, *SCALARS))]
        if other:
            return self._eager(values, self._structured_inputs(other, values))
        grad = torch.is_grad_enabled()
        if self._any_training() or (grad and any(isinstance(v, torch.Tensor) and v.requires_grad for v in values)):
            return self._train_call(values)  # eval mode with an input requiring grad: eval behaviour, differentiable
        if grad and any(p is not None and p.requires_grad for _, m in self._tree for p in m._parameters.values()):
            return self._eval_grad_call(values)
        return self._inference_call(values)

    def _any_training(self) -> bool:
        """Whether any module is in training mode, read again only after a mode may have changed
        (``modes_key``: read before the flags, so a change made meanwhile is seen next call)."""
        key, seen = modes_key(), self._modes_seen  # a list: an attribute write would be a module change
        if key != seen[0]:
            seen[:] = [key, any(m.training for _, m in self._tree)]
        return bool(seen[1])

    def _inference_call(self, values: list[Any]) -> Any:
        if self._values.stale():
            self._values_changed()
        variant = self._inference_variant(values)
        if not variant.fits(values):
            return self._eager(values, OTHER_LAYOUT)
        out = variant(values)
        if getattr(variant, "updates_buffers", False):
            self._values.refresh()  # the forward's own buffer updates are not a change to compile again for
        return out

    def _inference_variant(self, values: list[Any]) -> Variant:
        key = signature(values)
        variant = self._variants.get(key)
        if variant is None:
            variant = self._specialize(values, key)
        else:
            _touch(self._variants, key)
        return variant

    def _eval_grad_call(self, values: list[Any]) -> Any:
        """Every module in eval mode, parameters requiring grad, grad mode on (see the module
        doc): the inference program, connected to the parameters through :class:`_Recompute`.
        The eval-mode training variant instead once a backward compiled it (fine-tuning in eval
        mode: it reads the weights live, where the inference program would be compiled again
        after every optimizer step), or where the inference program cannot serve (hooks, PyTorch
        running parts of it). A call that is never differentiated (validation outside
        ``torch.no_grad()``) keeps the inference program's speed and compiles no backward."""
        model = self.model
        if _root_hooked(model) or self._hooked_submodules():
            return self._train_call(values)
        if sol_training.variant_key(model, signature(values), values) in self._train_variants:
            return self._train_call(values)
        if self._values.stale():
            self._values_changed()
        variant = self._inference_variant(values)
        if variant.fallen:
            return self._train_call(values)
        out = _recompute(self, variant, values)
        if getattr(variant, "updates_buffers", False):
            self._values.refresh()  # as in _inference_call
        return out

    def _eager(self, values: list[Any], why: str) -> Any:
        """PyTorch runs the model itself (warned once per reason; see the module doc)."""
        self._warn_once(why)
        return self.model(*values)

    def _hooked_submodules(self) -> list[str]:
        """Submodules (and PyTorch's global module hooks) whose hooks need each call's real
        tensors: a call needing gradients runs in PyTorch while there are any."""
        found = [f"{name} ({', '.join(kinds)})" for name, m in self._tree[1:] for kinds in [_hook_kinds(m)] if kinds]
        if _module._global_forward_hooks or _module._global_forward_pre_hooks or \
                _module._global_backward_hooks or _module._global_backward_pre_hooks:
            found.append("global module hooks (torch.nn.modules.module.register_module_*_hook)")
        return found

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
            self._tree = list(model.named_modules())
            self._modes_seen[:] = [None, False]
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
        """A call through a training variant; the model's own hooks run around it as PyTorch runs
        them (through :func:`_hooks_shell`), hooks on submodules make PyTorch run the call."""
        hooked = self._hooked_submodules()
        if hooked:
            return self._eager(values, HOOKED + ", ".join(hooked))
        model = self.model
        if _root_hooked(model):
            return _hooks_shell(model, lambda *args: self._run_training(list(args), hooks_ran=True))(*values)
        return self._run_training(values)

    def _run_training(self, values: list[Any], hooks_ran: bool = False) -> Any:
        variant = self._training_variant(values)
        if variant.fallen and hooks_ran:
            return self.model.forward(*values)  # PyTorch trains it; the model's hooks just ran
        return variant(values)

    def _training_variant(self, values: list[Any]) -> sol_training.TrainingVariant:
        key = sol_training.variant_key(self.model, signature(values), values)
        variant = self._train_variants.get(key)
        if variant is None:
            variant = self._specialize_training(values, key)
        else:
            _touch(self._train_variants, key)
        return variant

    def _specialize_training(self, values: list[Any], key: sol_training.TrainingKey) -> sol_training.TrainingVariant:
        with self._lock:  # one compile per key, however many threads ask
            variant = self._train_variants.get(key)
            if variant is not None:
                return variant
            if key[0] != self._primary:
                self._check_compatible(values)
            log.info("sol: compiling %s for training (or gradients) with inputs (%s) and its current modes",
                     self.graph_name, ", ".join(map(describe_value, values)))
            variant = sol_training.compile_variant(self.model, values, self._device, self._options, self._warned)
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
                     ", ".join(_describe_key(old[0] if isinstance(variant, sol_training.TrainingVariant) else old)))

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[Any]:
        """Positional and keyword arguments in ``forward``'s order, trailing omitted defaults left
        out (as ``forward`` is called), each checked to be a CPU tensor or a None/bool/int/float."""
        sig = self._signature
        given: list[Any] = list(args)
        if kwargs or (not sig.variadic and len(given) != len(sig.names)):  # else: all given, in order
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
        for i, value in enumerate(given):  # the messages made only for an error: this runs every call
            if isinstance(value, torch.Tensor):
                if not value.is_cpu:
                    raise TypeError(f"input {i} ({sig.name(i)}): expected a CPU tensor (sol device {self._device} "
                                    f"reads host memory), got a tensor on {value.device}")
            elif i < len(primary) and isinstance(primary[i][0], tuple):
                raise TypeError(f"input {i} ({sig.name(i)}): expected a torch.Tensor, got {type(value).__name__}")
        return given

    def _structured_inputs(self, positions: list[int], values: list[Any]) -> str:
        """Why a call with inputs other than tensors and scalars (a KV cache object, a list of
        tensors) runs in PyTorch; with ``fallback=False`` that is an error instead."""
        sig = self._signature
        given = ", ".join(f"input {i} ({sig.name(i)}): a {type(values[i]).__name__}" for i in positions)
        hint = " (for generation, fast.generate() compiles the decode step)" if any(
            "Cache" in type(values[i]).__name__ for i in positions) else ""
        why = (f"{given}: sol compiles calls with tensor and scalar inputs (None, bool, int, float), so PyTorch "
               f"runs this call{hint}")
        if self._options.get("fallback", True) is False:
            raise UnsupportedOpError(f"{self.graph_name}: {why}; fallback=False makes that an error",
                                     op="structured input")
        return why

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


_SHARED = ("_parameters", "_buffers", "_modules", "_non_persistent_buffers_set")
"""The model's registries the wrapper uses as its own (the same objects)."""

AUTOCAST = ("calls under torch.autocast run in PyTorch: sol has no bfloat16/float16 kernels, and its float32 "
            "results would differ from autocast's")
OTHER_LAYOUT = ("calls whose tensors lie in memory otherwise than the example inputs' (other strides or storage "
                "offsets) run in PyTorch: the model reads memory layout (as_strided, resize_), which sol compiled "
                "for the example's")
HOOKED = ("calls that need gradients run in PyTorch while submodules have hooks (sol's compiled graph has no "
          "per-module tensors to call them with; hooks on the model itself run with sol): ")

def _hook_kinds(m: torch.nn.Module) -> list[str]:
    kinds = []
    if m._forward_pre_hooks:
        kinds.append("forward pre-hook")
    if m._forward_hooks:
        kinds.append("forward hook")
    if m._backward_hooks or m._backward_pre_hooks:
        kinds.append("backward hook")
    return kinds


def _root_hooked(model: torch.nn.Module) -> bool:
    return bool(model._forward_hooks or model._forward_pre_hooks or model._backward_hooks or model._backward_pre_hooks)


def _hooks_shell(model: torch.nn.Module, forward: Any) -> torch.nn.Module:
    """A stand-in for ``model`` whose ``forward`` is the compiled call: calling it runs the
    model's own hooks (its hook registries are the model's, the same dicts) exactly as
    ``nn.Module.__call__`` runs them, full backward hooks included. It is a new object of the
    model's class over the model's attributes, so the model itself is never changed."""
    shell: Any = object.__new__(type(model))
    object.__setattr__(shell, "__dict__", dict(model.__dict__))
    shell.__dict__["forward"] = forward
    return shell  # type: ignore[no-any-return]


class _Recompute(torch.autograd.Function):
    """The inference program's outputs, connected to the parameters (see the module doc): the
    forward runs the inference program; the backward, if one comes, runs the eval-mode training
    variant on the same arguments and hands back its gradients. Arguments and parameters are
    saved with ``save_for_backward``, so changing them in place in between raises as in eager."""

    @staticmethod
    def forward(ctx: Any, module: SolModule, variant: Variant, values: list[Any], out: list[Any],  # type: ignore[override]
                *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        result = variant(values)
        leaves, spec = pytree.tree_flatten(result)
        out[:] = [leaves, spec]
        ctx.save_for_backward(*tensors)
        ctx.module, ctx.values = module, values
        ctx.key = sol_training.variant_key(module.model, signature(values), values)
        ctx.set_materialize_grads(False)
        results = tuple(t for t in leaves if isinstance(t, torch.Tensor))
        ctx.mark_non_differentiable(*(t for t in results if not t.is_floating_point()))
        return results

    @staticmethod
    @once_differentiable
    def backward(ctx: Any, *grads: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:
        tensors = ctx.saved_tensors  # raises if an argument or parameter was changed in place
        module: SolModule = ctx.module
        values: list[Any] = ctx.values
        if sol_training.variant_key(module.model, signature(values), values) != ctx.key:
            raise RuntimeError(f"sol: the modes or requires_grad flags of {module.graph_name}'s modules changed "
                               f"between this forward and its backward; sol recomputes the forward for the "
                               f"backward and cannot reproduce the earlier modes")
        params = [t for t in tensors if t.requires_grad]
        none: list[torch.Tensor | None] = [None] * len(tensors)
        with torch.enable_grad():
            again = [t for t in pytree.tree_leaves(module._run_training(values)) if isinstance(t, torch.Tensor)]
        pairs = [(o, g) for o, g in zip(again, grads) if g is not None and o.requires_grad]
        if not pairs or not params:
            return (None, None, None, None, *none)
        got = iter(torch.autograd.grad([o for o, _ in pairs], params, [g for _, g in pairs], allow_unused=True))
        return (None, None, None, None, *[next(got) if t.requires_grad else None for t in tensors])


def _recompute(module: SolModule, variant: Variant, values: list[Any]) -> Any:
    """Run ``variant`` through :class:`_Recompute` and rebuild the output structure."""
    params = [p for _, m in module._tree for p in m._parameters.values() if p is not None and p.requires_grad]
    params = list({id(p): p for p in params}.values())  # a shared weight once
    args = [v for v in values if isinstance(v, torch.Tensor)]
    out: list[Any] = []
    results = iter(_Recompute.apply(module, variant, values, out, *args, *params))
    leaves, spec = out
    return pytree.tree_unflatten([next(results) if isinstance(t, torch.Tensor) else t for t in leaves], spec)


def _restore(model: torch.nn.Module, examples: tuple[Any, ...], device: str, training: bool,
             options: dict[str, Any]) -> SolModule:
    from sol.plugin_api import optimize

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
