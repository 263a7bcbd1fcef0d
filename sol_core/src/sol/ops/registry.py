"""The op registry: what every operation in sol's IR means, in one table.

Each :class:`OpDef` carries everything core knows about an op: its shape/dtype rule, its layer
class (the seed's five classes, which drive the planner), its NumPy reference implementation (the
ground truth for tests and ``sol.debug.compare``), for I/O-bound ops how many trailing dimensions
it works across (the rest are independent loops the planner may share with neighbouring ops:
depth-first fusion), its gradient rule (:mod:`sol.autodiff`), its FLOP count
(:mod:`sol.workload`) and its C-family lowering (:mod:`sol.lowering`: an element-wise expression
rule or a loop lowering). Nothing about an op lives in a table keyed by its name elsewhere: the
views :data:`sol.lowering.ELEMENTWISE` and :data:`sol.lowering.OP_LOWERINGS` are read from here
(:meth:`OpRegistry.table`). Plugins add ops through the ``sol_register_ops`` hook with the same
:class:`OpDef` and the same fields.

Import order (why no cycle): this module imports nothing of autodiff, lowering or workload at
run time (their callables' types are named under ``TYPE_CHECKING``). Core's op modules
(:mod:`sol.ops.elementwise`, ...) import the rule, lowering and counting modules they reference
*inside* their ``ops()`` function, which runs once, when the registry is filled on first use: those
modules use the op modules' helpers (``sol.ops.spatial.resize_tables``, ``sol.ops.window``'s
window bounds) and the planner's types, so importing them at the op modules' import time would
be a cycle. Building the table late keeps every module importable on its own.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sol.errors import SolError, UnsupportedOpError
from sol.roles import NameClaims

if TYPE_CHECKING:
    from sol.ir import Node, TensorType, Value
    from sol.lowering.cfamily import Dialect
    from sol.lowering.loops import GroupLowering
    from sol.lowering.records import BaseFields, OpRecord


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
# node -> floating-point operations (sol.workload states the counting conventions).
FlopsFn = Callable[["Node"], float]
# (dialect, operand expressions, C type of the result, lowering attributes) -> C expression of
# one element of an element-wise op (sol.lowering.elementwise; also sol.lowering.OpRule).
CExprFn = Callable[["Dialect", list[str], str, dict[str, Any]], str]
# (group lowering, node, depth, base record fields) -> (op macro name, typed record): the loop
# lowering of a non-element-wise op inside a fused group (sol.lowering.loops; also
# sol.lowering.OpLowering).
CLoopsFn = Callable[["GroupLowering", "Node", int, "BaseFields"], "tuple[str, OpRecord]"]
# (buffer names, node, base record fields) -> (op macro name, typed record): a compute-bound op's
# reference loops, run as a LIBRARY group where no vendor library claims the op
# (sol.lowering.compute; also sol.lowering.ReferenceLowering).
CReferenceFn = Callable[[Callable[["Value"], str], "Node", "BaseFields"], "tuple[str, OpRecord]"]


@dataclass
class OpDef:
    """Everything core knows about one op.

    ``attrs`` lists the accepted attributes with their defaults (``REQUIRED`` for none);
    ``normalize`` canonicalizes attribute values given the input types (negative axes, tuples).
    ``core_dims`` (I/O-bound ops) returns how many trailing dims of the output one instance
    spans: a pooling op spans H and W (2), softmax over axis a of a rank-r tensor spans r - a.
    ``gradient`` is the op's gradient rule (:mod:`sol.autodiff.rules` documents the contract).

    What each field's ``None`` means (the op's definition says it, nowhere else does):

    - ``gradient=None``: no gradient rule; differentiating through the op is an error naming it
      (an op whose outputs take no gradient, comparisons say, gives
      :func:`sol.autodiff.rules.no_gradient` instead);
    - ``flops=None``: counted by its layer class, 1 FLOP per output element for an element-wise
      op and 0 for any other (:mod:`sol.workload`);
    - ``c_expr=None`` (element-wise ops) / ``c_loops=None`` (the others): no generated C-family
      lowering; the op runs only where a library backend claims it (or a device's own
      ``Dialect.op_overrides`` spells it). An element-wise op takes no ``c_loops`` and any
      other op no ``c_expr`` (:meth:`OpRegistry.register` refuses the mix);
    - ``c_reference=None`` (compute-bound ops): no reference loops; the op runs only where a
      library backend claims it or it has ``c_loops`` (the reference-loops backend,
      :func:`sol.lowering.reference_loops`, claims the ops that have one);
    - ``recurrent=False``: the op does not reach devices as a RECURRENT group (a loop over time
      a device renders; :meth:`sol.lowering.Dialect.recurrent_ops` lists the ops that do);
    - ``monotone=False``: no pass moves the op past a max pooling (:mod:`sol.passes.commute`).
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
    # Whether the op (a unary element-wise one) is monotone the way a pass can use: it never
    # decreases (x <= y gives f(x) <= f(y) over the extended reals, -inf and +inf included),
    # f(NaN) is NaN and no other input gives NaN. Then f(max(S)) == max(f(S)) for every set S,
    # NaN-propagating max included, so sol.passes.commute may apply f after a max pooling
    # instead of before it, to fewer elements. A callable answers per node where attributes
    # decide (leaky_relu: alpha > 0). False, the default, is the safe answer.
    monotone: bool | Callable[[Node], bool] = False
    # Attributes that only the gradient rule reads (clamp's bounds_grad: whether the gradient
    # passes at the bounds, which PyTorch's hardtanh and clamp answer differently). Devices never
    # see them: the forward computation is the same either way (lowering_attrs drops them).
    gradient_attrs: tuple[str, ...] = ()
    # FLOPs of one node (sol.workload); None: by layer class (see above).
    flops: FlopsFn | None = None
    # C-family code (sol.lowering): an element-wise op's expression rule, written once for every
    # dialect, or another op's loop lowering into a typed record for the device's op macro.
    c_expr: CExprFn | None = None
    c_loops: CLoopsFn | None = None
    # A compute-bound op's stand-alone loop nest (sol.lowering.compute): the typed record of the
    # C-family generator's reference loops, rendered where no vendor library claims the op.
    c_reference: CReferenceFn | None = None
    # An execution-order-constrained op that planners hand devices as a RECURRENT group (a loop
    # over time in the device's templates); lstm/gru are not (a pass splits them first).
    recurrent: bool = False

    def check(self) -> None:
        """Refuse a definition whose lowering does not fit its layer class: the planner puts an
        element-wise op into pointwise stages (an expression) and every other op into op stages
        (a loop lowering), so the other field would never be read."""
        elementwise = self.layer_class is LayerClass.ELEMENTWISE
        if elementwise and self.c_loops is not None:
            raise SolError(f"op {self.name!r} is element-wise: give it a C expression (c_expr), not c_loops")
        if not elementwise and self.c_expr is not None:
            raise SolError(f"op {self.name!r} is {self.layer_class.value}: give it a loop lowering (c_loops), "
                           f"not c_expr (an expression is for element-wise ops)")
        if self.c_reference is not None and self.layer_class not in (LayerClass.COMPUTE_BOUND,
                                                                      LayerClass.PARAM_BOUND):
            raise SolError(f"op {self.name!r} is {self.layer_class.value}: reference loops (c_reference) are for "
                           f"compute- and parameter-bound ops, which a library group runs")
        if self.monotone is not False and (not elementwise or self.arity != (1, 1)):
            raise SolError(f"op {self.name!r}: only a unary element-wise op can be monotone (monotone=...), "
                           f"it is {self.layer_class.value} with {self.arity[0]}..{self.arity[1]} inputs")
        if self.recurrent and self.layer_class is not LayerClass.ORDER_CONSTRAINED:
            raise SolError(f"op {self.name!r} is {self.layer_class.value}: only an execution-order-constrained op "
                           f"runs as a recurrent group (recurrent=True)")

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
        opdef.check()
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

    def table(self, field_name: str) -> Mapping[str, Any]:
        """A live, read-only view ``op name -> OpDef.<field_name>`` over the registered ops that
        have one (not None): what used to be side tables keyed by op name
        (:data:`sol.lowering.ELEMENTWISE`, :data:`sol.lowering.OP_LOWERINGS`) are these views."""
        return OpFieldView(self, field_name)

    def layer_class(self, node: Node) -> LayerClass:
        return self.get(node.op, node).layer_class

    def run_reference(self, node: Node, inputs: list[np.ndarray]) -> list[np.ndarray]:
        return self.get(node.op, node).reference(inputs, node.attrs)

    def lowering_attrs(self, node: Node) -> dict[str, Any]:
        """The attributes a device's templates take for ``node``: all but the gradient-only ones."""
        return lowering_attrs(self.get(node.op, node), node.attrs)


class OpFieldView(Mapping[str, Any]):
    """See :meth:`OpRegistry.table`. Read on every access, so ops a plugin registers later (and
    ops a withdrawn plugin took back) show as they are."""

    def __init__(self, ops: OpRegistry, field_name: str) -> None:
        if field_name not in OpDef.__dataclass_fields__:
            raise SolError(f"OpDef has no field {field_name!r}")
        self._ops, self._field = ops, field_name

    def __getitem__(self, name: str) -> Any:
        value = getattr(self._ops.get(name), self._field) if name in self._ops else None
        if value is None:
            raise KeyError(name)
        return value

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name in self._ops and getattr(self._ops.get(name), self._field) is not None

    def __iter__(self) -> Iterator[str]:
        return iter([n for n in self._ops.names() if getattr(self._ops.get(n), self._field) is not None])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __repr__(self) -> str:
        return f"<op registry view: {self._field} of {len(self)} ops>"


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
