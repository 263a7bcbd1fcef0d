"""A compiled sol program as a ``torch.nn.Module`` that behaves like the model it came from.

Same call signature (positional or by argument name, non-tensor arguments included), same output
structure (tensor, tuple, dict, ...), same ``state_dict`` keys and submodule attributes: the
model's own children, parameters and buffers are registered on the wrapper under their original
names (the same objects, not copies), so ``sol_module.state_dict()`` equals ``model.state_dict()``
and a parent module's checkpoint keys do not change when a child is replaced by its optimized
version. The model itself stays reachable as ``.model`` without being registered a second time.

Shapes: a call whose tensors have other shapes than the example inputs (batch 3 after batch 8,
another image size) is compiled again for those shapes, once, and the variant kept (one per
signature; ``variants`` lists them), with a log message on ``logging.getLogger("sol")``. A
different rank or dtype is an error naming expected and given, as is any other shape with
``optimize(..., dynamic=False)``. Non-tensor arguments (None, bools, ints, floats) are constants
of a trace, so each value gets its variant too.

Weights: the compiled programs read the model's weights as they were when compiled. A change to
them afterwards (``load_state_dict``, an optimizer step, assigning a new parameter) is seen by the
next call, which compiles again rather than use stale weights (see :mod:`sol_pytorch.weights`).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from sol.errors import SolError
from sol.ir import Graph
from sol.program import Program
from sol_pytorch.importer import SCALARS, describe_value
from sol_pytorch.variants import (
    OPTIONS,
    Signature,
    Variant,
    compile_variant,
    make_variant,
    signature,
)
from sol_pytorch.weights import WeightsWatch

log = logging.getLogger("sol")

_INFERENCE_ONLY = "sol compiles inference only; training support (gradients through sol) comes in a later version"


class TrainingNotSupportedError(SolError, RuntimeError):
    """Gradients or training-mode behaviour were asked of a sol module; this version compiles
    inference only. A RuntimeError too, PyTorch's usual type for autograd misuse."""


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
        self._options: dict[str, Any] = dict(graph.meta.get(OPTIONS) or {})
        self._signature = ForwardSignature.of(model)
        first = make_variant(program, graph)
        self._warned = set(first.fallen)  # import_graph warned about these
        self._variants: dict[Signature, Variant] = {first.key: first}
        self._primary: Signature = first.key  # what the example inputs were: checks and messages
        self.program = program
        self._mirror(model)
        object.__setattr__(self, "model", model)  # reachable, not a registered child (after
        # mirroring: attribute reads fall through to it, which registration would take as a clash)
        self._weights = WeightsWatch(model)
        self.training = False  # it computes eval-mode behaviour (without touching the children)

    def _mirror(self, model: torch.nn.Module) -> None:
        non_persistent: set[str] = getattr(model, "_non_persistent_buffers_set", set())
        for name, child in model.named_children():
            self.add_module(name, child)
        for name, param in model.named_parameters(recurse=False):
            self.register_parameter(name, param)
        for name, buf in model.named_buffers(recurse=False):
            self.register_buffer(name, buf, persistent=name not in non_persistent)

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
        """Switch modes as PyTorch does, the original model with it; calls in training mode raise
        (sol compiled eval-mode behaviour) until ``.eval()``."""
        super().train(mode)
        model = self.__dict__.get("model")
        if model is not None:
            model.train(mode)
        return self

    @property
    def variants(self) -> list[Variant]:
        """The compiled variants, the one for the example inputs first."""
        return list(self._variants.values())

    # --- calling ------------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        values = self._bind(args, kwargs)
        self._check_mode(values)
        if self._weights.changed():
            log.info("sol: the weights of %s changed since it was compiled; compiling again", self.graph_name)
            self._variants.clear()
        key = signature(values)
        variant = self._variants.get(key)
        if variant is None:
            variant = self._specialize(values, key)
        return variant(values)

    def _specialize(self, values: list[Any], key: Signature) -> Variant:
        if key != self._primary:
            self._check_compatible(values)
            log.info("sol: compiling %s again for inputs (%s); the example inputs were (%s)", self.graph_name,
                     ", ".join(map(describe_value, values)), ", ".join(_describe_key(self._primary)))
        variant = compile_variant(self.model, values, self._device, self._options, self._warned)
        self._variants[key] = variant
        if key == self._primary:
            self.program = variant.program
        return variant

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

    def _check_mode(self, values: list[Any]) -> None:
        if self.training:
            raise TrainingNotSupportedError(
                f"{self.graph_name} is in training mode (.train() was called), but sol compiled its eval-mode "
                f"behaviour: {_INFERENCE_ONLY}. Call .eval() on it to run the compiled model, or train the original "
                f"model (its .model) in PyTorch and optimize it again afterwards")
        if not torch.is_grad_enabled():
            return
        for i, t in enumerate(values):
            if isinstance(t, torch.Tensor) and t.requires_grad:
                raise TrainingNotSupportedError(
                    f"input {i} ({self._signature.name(i)}) requires grad: {_INFERENCE_ONLY}. Call it under "
                    f"torch.no_grad() or torch.inference_mode(), or pass .detach()")

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

    # --- display ------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        program = self.program
        ins = ", ".join(f"{n}: {t}" for n, t in zip(program.input_names, program.input_types))
        outs = ", ".join(map(str, program.output_types))
        more = f", {len(self._variants)} variants" if len(self._variants) > 1 else ""
        return f"{self.graph_name} on {program.device}: ({ins}) -> ({outs}){more}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


def _dtype(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _describe_key(key: Sequence[Any]) -> list[str]:
    out = []
    for a, b in key:
        out.append(f"{_dtype(b)}[{', '.join(map(str, a))}]" if isinstance(a, tuple) else repr(b))
    return out
