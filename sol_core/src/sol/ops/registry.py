"""The op registry: what every operation in sol's IR means.

Each :class:`OpDef` carries the op's shape/dtype rule, its layer class (the seed's five classes,
which drive the planner), its NumPy reference implementation (the ground truth for tests and
``sol.debug.compare``) and, for I/O-bound ops, how many trailing dimensions it works across (the
rest are independent loops the planner may share with neighbouring ops: depth-first fusion).
Plugins add ops through the ``sol_register_ops`` hook with the same :class:`OpDef`.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sol.errors import SolError, UnsupportedOpError
from sol.roles import NameClaims

if TYPE_CHECKING:
    from sol.ir import Node, TensorType


class LayerClass(enum.Enum):
    """The seed's layer classes: how an op runs best."""

    ELEMENTWISE = "element-wise"
    IO_BOUND = "I/O-memory bound"
    COMPUTE_BOUND = "compute bound"
    PARAM_BOUND = "parameter-memory bound"
    ORDER_CONSTRAINED = "execution-order constrained"
    SHAPE = "shape (no computation)"


InferFn = Callable[[list["TensorType"], dict[str, Any]], list["TensorType"]]
ReferenceFn = Callable[[list[np.ndarray], dict[str, Any]], list[np.ndarray]]
CoreDimsFn = Callable[["Node"], int]
# (builder, forward node, output gradients) -> input gradients; see sol.autodiff.rules.
GradientFn = Callable[..., list[Any]]


@dataclass
class OpDef:
    """Everything core knows about one op.

    ``attrs`` lists the accepted attributes with their defaults (``REQUIRED`` for none);
    ``normalize`` canonicalizes attribute values given the input types (negative axes, tuples).
    ``core_dims`` (I/O-bound ops) returns how many trailing dims of the output one instance
    spans: a pooling op spans H and W (2), softmax over axis a of a rank-r tensor spans r - a.
    ``gradient`` is the op's gradient rule (:mod:`sol.autodiff.rules` documents the contract).
    """

    name: str
    layer_class: LayerClass
    infer: InferFn
    reference: ReferenceFn
    arity: tuple[int, int] = (1, 1)
    attrs: dict[str, Any] = field(default_factory=dict)
    normalize: Callable[[dict[str, Any], list[TensorType]], dict[str, Any]] | None = None
    core_dims: CoreDimsFn | None = None
    doc: str = ""
    # How to differentiate the op (sol.autodiff): builds backward nodes, returns one gradient
    # (or None) per input. None here means the op has no rule yet: differentiating through it
    # is an error naming the op.
    gradient: GradientFn | None = None
    # Whether the op's float outputs are finite wherever its inputs are (float overflow aside):
    # True for relu, add, conv, softmax..., False for div, log, sqrt, exp, pow; a callable
    # answers per node where attributes decide (a clamp to +inf, a mean over nothing). False,
    # the default, is the safe answer for an op nobody has looked at. sol.passes.finite reads it.
    preserves_finite: bool | Callable[[Node], bool] = False
    # Attributes that only the gradient rule reads (clamp's bounds_grad: whether the gradient
    # passes at the bounds, which PyTorch's hardtanh and clamp answer differently). Devices never
    # see them: the forward computation is the same either way (lowering_attrs drops them).
    gradient_attrs: tuple[str, ...] = ()

    def normalize_attrs(self, attrs: dict[str, Any], in_types: list[TensorType]) -> dict[str, Any]:
        unknown = set(attrs) - set(self.attrs)
        if unknown:
            raise SolError(f"op {self.name!r} got unknown attributes {sorted(unknown)}; "
                           f"it takes {sorted(self.attrs)}")
        lo, hi = self.arity
        if not lo <= len(in_types) <= hi:
            raise SolError(f"op {self.name!r} takes {lo}..{hi} inputs, got {len(in_types)}")
        out = {}
        for key, default in self.attrs.items():
            if key in attrs:
                out[key] = attrs[key]
            elif default is REQUIRED:
                raise SolError(f"op {self.name!r} needs attribute {key!r}")
            else:
                out[key] = default
        return self.normalize(out, in_types) if self.normalize else out


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


class OpRegistry:
    """Name -> OpDef. Duplicate names are an error: two plugins must not silently disagree."""

    def __init__(self) -> None:
        self._ops: dict[str, OpDef] = {}
        self.claims = NameClaims("op")  # which plugin registered each op (sol.plugins sets current_plugin)
        self.current_plugin = "?"

    def register(self, opdef: OpDef) -> OpDef:
        self.claims.claim(opdef.name, self.current_plugin)
        self._ops[opdef.name] = opdef
        return opdef

    def remove(self, name: str) -> None:
        """Take an op out (its plugin is withdrawn: sol.plugins)."""
        self._ops.pop(name, None)
        self.claims.release(name)

    def clear(self) -> None:
        self._ops.clear()
        self.claims = NameClaims("op")

    def get(self, name: str, node: Node | None = None) -> OpDef:
        _ensure_loaded()
        try:
            return self._ops[name]
        except KeyError:
            where = f" at {node.source}" if node is not None and node.source else ""
            raise UnsupportedOpError(f"sol has no op {name!r}{where}", op=name) from None

    def __contains__(self, name: str) -> bool:
        _ensure_loaded()
        return name in self._ops

    def names(self) -> list[str]:
        _ensure_loaded()
        return sorted(self._ops)

    def layer_class(self, node: Node) -> LayerClass:
        return self.get(node.op, node).layer_class

    def run_reference(self, node: Node, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return self.get(node.op, node).reference(inputs, node.attrs)

    def lowering_attrs(self, node: Node) -> dict[str, Any]:
        """The attributes a device's templates take for ``node``: all but the gradient-only ones."""
        return lowering_attrs(self.get(node.op, node), node.attrs)


def lowering_attrs(opdef: OpDef, attrs: dict[str, Any]) -> dict[str, Any]:
    if not opdef.gradient_attrs:
        return attrs
    return {k: v for k, v in attrs.items() if k not in opdef.gradient_attrs}


registry = OpRegistry()
_loaded = False  # set by sol.plugins.load_ops once every plugin's ops are in


def _ensure_loaded() -> None:
    """Fill the registry on first use: core's builtin ops, then every plugin's (hook), each
    plugin's as one transaction (:func:`sol.plugins.load_ops`). Only a complete fill counts as
    loaded: were a failure to mark it loaded, every later lookup would answer "sol has no op
    'relu'" instead of the failure."""
    if _loaded:
        return
    from sol.plugins import load_ops

    load_ops()
