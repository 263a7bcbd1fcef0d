"""``torch.compile(model, backend="sol")``: sol as a TorchDynamo backend.

Registered through the ``torch_dynamo_backends`` entry point, so PyTorch finds it by name once
this distribution is installed. Dynamo hands over one FX graph per piece of Python it could trace
(a graph break, e.g. ``print`` or a branch on ``.item()``, ends one graph and starts the next; the
Python between them runs as usual), with example inputs. Each graph goes the way a model goes
through ``sol.optimize``: ``torch.export`` to ATen, conversion, the operations sol cannot compile
run by PyTorch between compiled parts, and one compiled variant per input signature.

Why specialize inside the backend rather than ask Dynamo for static shapes: after a shape change
Dynamo retraces with symbolic sizes (automatic dynamic shapes) and hands over a graph with
``SymInt`` inputs. sol's code is shape-specialized, so the callable returned here compiles a
variant for the concrete shapes of each call (cached per shape, as ``SolModule`` does) and
changes no global Dynamo setting.

Weights: Dynamo passes parameters and buffers as graph inputs. Those become parameters of the
sol graph (read in place, foldable into convolutions), and the variants are dropped when their
identity or version counter changes (as when the graph holds weights itself), so a weight update
is compiled again rather than read stale.

Where sol cannot help, the graph runs in PyTorch as Dynamo traced it, with a warning: when
gradients are needed (grad mode on and an input or weight requires grad: sol compiles inference
only) or when the graph cannot be imported at all (e.g. it updates buffers in place).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.fx.traceback as fx_traceback
from torch import fx

from sol_pytorch.errors import torch_errors
from sol_pytorch.importer import user_stacklevel
from sol_pytorch.variants import Signature, Variant, compile_variant, signature
from sol_pytorch.weights import WeightsWatch

_BUFFER = re.compile(r"(^|_)buffers_")
"""How Dynamo names a placeholder that holds a module buffer (``L_self_modules_bn_buffers_running_mean_``)."""


_WARNED: set[str] = set()
"""What was warned about already (operations PyTorch runs, graphs run eagerly and why): Dynamo
retraces a graph for new shapes and hands over one graph per break, one warning each will do."""


class SolDynamoWarning(UserWarning):
    """A graph Dynamo handed to sol runs in PyTorch instead (the warning says why)."""


def sol_backend(gm: fx.GraphModule, example_inputs: Sequence[Any], **kwargs: Any) -> Callable[..., Any]:
    """The backend: ``torch.compile(model, backend="sol", options={"device": "x86", ...})``;
    ``options`` are those of ``sol.optimize`` (``device``, ``fallback``, ...)."""
    options = dict(kwargs.get("options") or {})
    device = options.pop("device", None)
    if not any(n.op in ("call_function", "call_method", "call_module") for n in gm.graph.nodes):
        return gm.forward  # nothing to compute: nothing to compile
    return CompiledGraph(gm, example_inputs, device, options)


class DynamoGraph(torch.nn.Module):
    """Dynamo's graph as a module whose weights are its own buffers: ``torch.export`` then lifts
    them as weights (sol graph parameters) and only the other arguments stay inputs. The graph
    runs through an FX interpreter that keeps each node's metadata, so the ATen nodes keep the
    user's source lines and module paths for sol's messages."""

    def __init__(self, gm: fx.GraphModule, positions: Sequence[int], weights: Sequence[torch.Tensor], n: int) -> None:
        super().__init__()
        self.gm = gm
        self._positions = frozenset(positions)
        self._n = n
        for i, w in zip(positions, weights):
            self.register_buffer(f"arg{i}", w.detach(), persistent=False)  # same memory and version counter
        self.eval()

    def forward(self, *inputs: Any) -> Any:
        args: list[Any] = []
        rest = iter(inputs)
        for i in range(self._n):
            args.append(getattr(self, f"arg{i}") if i in self._positions else next(rest))
        with fx_traceback.preserve_node_meta():
            return fx.Interpreter(self.gm).run(*args)


class CompiledGraph:
    """What the backend returns for one graph: runs the variant compiled for each call's shapes."""

    def __init__(self, gm: fx.GraphModule, example_inputs: Sequence[Any], device: str | None,
                 options: dict[str, Any]) -> None:
        self.gm = gm
        self.device = device
        self.options = options
        names = [n.name for n in gm.graph.nodes if n.op == "placeholder"]
        self.weights = [i for i, (name, x) in enumerate(zip(names, example_inputs))
                        if isinstance(x, torch.nn.Parameter) or (isinstance(x, torch.Tensor) and _BUFFER.search(name))]
        self._is_weight = frozenset(self.weights)
        self.n = len(names)
        self.variants: dict[Signature, Variant] = {}
        self._own_weights = WeightsWatch(gm)  # weights the graph holds itself (get_attr), if any
        self._weights_key: tuple[tuple[int, int], ...] | None = None
        self._eager_reason: str | None = None

    @torch_errors  # a failed factorization check raises PyTorch's LinAlgError, as eager does
    def __call__(self, *args: Any) -> Any:
        if torch.is_grad_enabled() and any(isinstance(a, torch.Tensor) and a.requires_grad for a in args):
            return self._eager(args, "gradients are needed (grad mode is on and an input or weight requires "
                                     "grad), and sol compiles inference only; call it under torch.no_grad() or "
                                     "torch.inference_mode() to run it compiled")
        if self._eager_reason is not None:
            return self.gm(*args)
        weights = [args[i] for i in self.weights]
        key = tuple((id(w), w._version) for w in weights)
        if self._own_weights.changed() or key != self._weights_key:  # new weights: the variants read the old ones
            self.variants.clear()
            self._weights_key = key
        inputs = [a for i, a in enumerate(args) if i not in self._is_weight]
        sig = signature(inputs)
        variant = self.variants.get(sig)
        if variant is None:
            try:
                module = DynamoGraph(self.gm, self.weights, weights, self.n)
                variant = compile_variant(module, inputs, self.device, self.options, _WARNED)
            except Exception as exc:  # noqa: BLE001 - torch.compile must still run the model
                self._eager_reason = f"sol could not compile it: {exc}"
                return self._eager(args, self._eager_reason)
            self.variants[sig] = variant
        return variant(inputs)

    def _eager(self, args: Sequence[Any], why: str) -> Any:
        if why not in _WARNED:
            _WARNED.add(why)
            warnings.warn(f"sol: a graph torch.compile handed to sol runs in PyTorch: {why}", SolDynamoWarning,
                          stacklevel=user_stacklevel())
        return self.gm(*args)
