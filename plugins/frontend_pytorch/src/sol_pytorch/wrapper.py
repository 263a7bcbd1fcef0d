"""A compiled sol program as a ``torch.nn.Module`` that behaves like the model it came from.

Same call signature (positional or by argument name), same output structure (tensor, tuple, dict,
...), same ``state_dict`` keys and submodule attributes: the model's own children, parameters and
buffers are registered on the wrapper under their original names (the same objects, not copies),
so ``sol_module.state_dict()`` equals ``model.state_dict()`` and a parent module's checkpoint keys
do not change when a child is replaced by its optimized version. The model itself stays reachable
as ``.model`` without being registered a second time.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils import _pytree as pytree

from sol.errors import SolError
from sol.ir import Graph
from sol.program import Program
from sol_pytorch.importer import Constant, OutputLayout, output_layout


class TrainingNotSupportedError(SolError, RuntimeError):
    """Gradients were asked of a sol module; this version compiles inference only. A
    RuntimeError too, PyTorch's usual type for autograd misuse."""


class SolModule(torch.nn.Module):
    """Runs ``program`` (compiled from ``model``) on PyTorch tensors."""

    def __init__(self, program: Program, model: torch.nn.Module, graph: Graph) -> None:
        super().__init__()
        self.program = program
        self.graph_name = graph.name
        self._layout = output_layout(graph) or _flat_layout(len(program.output_types))
        self._mirror(model)
        object.__setattr__(self, "model", model)  # reachable, not a registered child (after
        # mirroring: attribute reads fall through to it, which registration would take as a clash)
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

    # --- calling ------------------------------------------------------------------------------
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        tensors = self._bind(args, kwargs)
        self._check_autograd(tensors)
        self.program.check_inputs(tensors)
        outputs = self.program(*(_host_array(t) for t in tensors))
        return self._rebuild(outputs)

    def _bind(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> list[torch.Tensor]:
        """Positional and keyword arguments (by the forward's argument names) in input order,
        each checked to be a CPU tensor."""
        names = self.program.input_names
        given: list[Any] = list(args)
        if kwargs:
            if len(given) > len(names):
                self.program.check_inputs(given)  # raises: says how many inputs are expected
            given += [_MISSING] * (len(names) - len(given))
            for key, value in kwargs.items():
                if key not in names:
                    raise TypeError(f"{self.graph_name}: unexpected input {key!r}; inputs are {', '.join(names)}")
                i = names.index(key)
                if given[i] is not _MISSING:
                    raise TypeError(f"{self.graph_name}: got two values for input {key!r}")
                given[i] = value
            missing = [n for n, v in zip(names, given) if v is _MISSING]
            if missing:
                raise TypeError(f"{self.graph_name}: missing input(s) {', '.join(missing)}")
        for i, value in enumerate(given):
            label = f"input {i} ({names[i]})" if i < len(names) else f"input {i}"
            if not isinstance(value, torch.Tensor):
                raise TypeError(f"{label}: expected a torch.Tensor, got {type(value).__name__}")
            if value.device.type != "cpu":
                raise TypeError(f"{label}: expected a CPU tensor (sol device {self.program.device} reads host "
                                f"memory), got a tensor on {value.device}")
        return given

    def _check_autograd(self, tensors: list[torch.Tensor]) -> None:
        if not torch.is_grad_enabled():
            return
        hint = ("sol compiles inference only; training support (gradients through sol) comes in a later "
                "version. Call it under torch.no_grad() or torch.inference_mode()")
        if self.training:
            raise TrainingNotSupportedError(f"{self.graph_name} is in training mode: {hint}, after .eval()")
        for i, t in enumerate(tensors):
            if t.requires_grad:
                raise TrainingNotSupportedError(
                    f"input {i} ({self.program.input_names[i]}) requires grad: {hint}, or pass .detach()")

    def _rebuild(self, outputs: list[np.ndarray]) -> Any:
        tensors = [_torch_tensor(a) for a in outputs]
        leaves = [s.value if isinstance(s, Constant) else tensors[s] for s in self._layout.slots]
        return pytree.tree_unflatten(leaves, self._layout.spec)

    # --- display ------------------------------------------------------------------------------
    def extra_repr(self) -> str:
        ins = ", ".join(f"{n}: {t}" for n, t in zip(self.program.input_names, self.program.input_types))
        outs = ", ".join(map(str, self.program.output_types))
        return f"{self.graph_name} on {self.program.device}: ({ins}) -> ({outs})"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


_MISSING: Any = object()


def _flat_layout(n: int) -> OutputLayout:
    """One tensor for one output, a tuple for several: for graphs not made by our importer."""
    leaves = list(range(n))
    spec = pytree.tree_flatten(leaves[0] if n == 1 else tuple(leaves))[1]
    return OutputLayout(spec, tuple(leaves))


def _host_array(t: torch.Tensor) -> np.ndarray:
    """A NumPy view of the tensor's memory (a copy only when the layout needs one)."""
    t = t.detach()
    if t.is_conj() or t.is_neg():
        t = t.resolve_conj().resolve_neg()
    if not t.is_contiguous():
        t = t.contiguous()
    return t.numpy()


def _torch_tensor(a: np.ndarray) -> torch.Tensor:
    a = np.asarray(a)
    if not a.flags.writeable:  # torch tensors are writable: give the caller its own memory
        a = a.copy()
    return torch.from_numpy(a)
