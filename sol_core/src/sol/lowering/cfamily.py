"""The C-family code generator shared by every device that emits C-like source (C++/OpenMP on
x86, C for the SX-Aurora VE, and CUDA C++ next): a :class:`Dialect` says how the language is
spelled on a device, a :class:`CRenderer` holds the scaffolding every such device needs around
its own templates.

What a device writes is the difference, not a copy: its dialect (casts, typed constants,
``restrict``, math-function names per element type, min/max, NaN and infinity, literal
suffixes, vector width, loop pragmas, how the outer loop of a fused group becomes parallel
work), its network template (the C ABI, memory), its op templates (one macro per
:class:`~sol.lowering.OpStage` op, reading the typed records of :mod:`sol.lowering.records`),
and its library glue. The element-wise ops come from one table (:mod:`sol.lowering.elementwise`)
rendered through the dialect, and the set of ops a device can fuse is derived from what this
generator lowers (:meth:`Dialect.fusible_ops`: the ops whose :class:`~sol.ops.registry.OpDef`
carries a C expression or a loop lowering), not listed by hand.

Parallel mapping (:meth:`Dialect.outer_loop`): a fused group is a loop over ``o`` (the group's
outer, depth-first iterations: batch x channel planes, say) around stages that run per
iteration. The dialect decides how that loop runs:

* OpenMP (x86, VE): a ``#pragma omp parallel for`` above ``for (long o = 0; o < N; ++o) {``,
  the pragma dropped when the group has too little work to pay for a parallel region;
* CUDA: the group function is a ``__global__`` kernel and ``o`` a block index, e.g. the lines
  ``const long o = blockIdx.x;`` and ``if (o < N) {`` (a grid of N blocks), with the stages'
  inner loops striding over ``threadIdx.x`` (:meth:`Dialect.inner_loop`: ``for (long i = threadIdx.x;
  i < n; i += blockDim.x)``), and groups with no outer loop (``OuterLoop.extent == 1``) mapping
  their pointwise loops onto the whole grid instead. The launch configuration is the network
  template's business (it knows N from ``LoweredGroup.outer_size``).

Either way the lines open exactly one block that the template closes with ``}``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2

from sol.errors import SolError
from sol.ir import Node, Value
from sol.lowering.base import CTYPES, ctype
from sol.lowering.compute import reference_record
from sol.lowering.elementwise import ELEMENTWISE, OpRule
from sol.lowering.loops import GroupLowering, LoweredGroup
from sol.ops.registry import LayerClass, registry
from sol.planner.plan import Group, GroupKind, Plan, Storage
from sol.sourcetext import comment_text

# The prefix under which every template environment core gives a plugin
# (``sol.plugin_api.template_environment``) finds the generator's shipped templates
# (``sol/lowering/templates``): ``{% import "sol/ops.j2" as ops with context %}`` (one macro per
# op record, plain C in the dialect's spelling: the context needs ``dialect``) and
# ``{% import "sol/groups.j2" as groups with context %}`` (``groups.body(g)``: a group's code).
TEMPLATES = "sol"


def template_loader() -> jinja2.BaseLoader:
    """The loader of the shipped templates, under :data:`TEMPLATES` (core's templates first, so
    a plugin's file of the same name cannot stand in for them by accident)."""
    return jinja2.PrefixLoader({TEMPLATES: jinja2.PackageLoader("sol.lowering", "templates")})


def recurrent_op_names() -> frozenset[str]:
    """The ops a RECURRENT group holds (the planner's RecurrentKernel), read from the op table:
    every op whose :class:`~sol.ops.registry.OpDef` says ``recurrent=True``, a plugin's included
    (lstm/gru themselves are split into an input GEMM and these before planning)."""
    return frozenset(name for name in registry.names() if registry.get(name).recurrent)


@dataclass(frozen=True)
class OuterLoop:
    """The outer loop of a fused group: ``extent`` iterations of the flat counter ``o``.
    ``parallel``: iterations may run concurrently (false when the group has a single iteration,
    or none of its own: a pure element-wise group parallelizes its stage instead); ``work``:
    elements of the largest tensor the group touches, for a dialect's threshold."""

    extent: int
    parallel: bool
    work: int


class Dialect:
    """How C-like source is spelled on one device. The defaults are plain C99 with the network
    template defining ``SOL_MIN``/``SOL_MAX`` (NaN-keeping min/max of the first operand);
    a device subclasses and overrides what differs. Every method returns C text."""

    name = "c"
    restrict = "restrict"  # spelling of the no-alias qualifier on pointer declarations
    vector_width = 1  # elements of float32 one vector instruction handles (planner hint)
    min_fn = "SOL_MIN"
    max_fn = "SOL_MAX"
    true, false = "1", "0"
    inner_pragma = ""  # above the innermost loop of a pointwise stage (``#pragma omp simd``)
    parallel_pragma = "#pragma omp parallel for schedule(static)"  # "" where there are no threads
    # How a helper function at file scope is declared (the special functions of
    # sol.lowering.special): a GPU dialect adds its device qualifier (plugin API 1.5).
    function = "static inline"
    # Single element-wise ops the device spells its own way (same rule signature as the table).
    op_overrides: Mapping[str, OpRule] = {}
    # Ops core lowers that this device's templates do not render.
    unsupported_ops: frozenset[str] = frozenset()
    # Whether the device renders RECURRENT groups (every execution-order-constrained op).
    recurrent = True
    # Whether the network template provides sol_linalg_error (plugin API 1.4): a failed
    # factorization check (a singular matrix) is then reported apart, as a LinAlgError; without,
    # through sol_index_error as an IndexOutOfRangeError, as before (the templates of older
    # devices define only that one).
    linalg_errors = False

    # --- expressions ---------------------------------------------------------------------
    def const(self, T: str, value: Any) -> str:
        """A constant of element type ``T`` (``value`` as the model has it: 0, 0.5, 1e-2)."""
        return f"({T}){value}"

    def convert(self, T: str, expr: str) -> str:
        """``expr`` converted to ``T`` (the cast op; truncation toward zero for integers)."""
        return f"(({T})({expr}))"

    def math(self, fn: str, T: str) -> str:
        """The math function ``fn`` (a C99 double name: exp, log, tanh, erf, sqrt, fabs, pow)
        for element type ``T``."""
        return f"{fn}f" if T == "float" else fn

    def infinity(self, T: str) -> str:
        return self.const(T, "INFINITY")

    def nan(self, T: str) -> str:
        return self.const(T, "NAN")

    def lowest(self, T: str) -> str:
        """The lowest finite value of floating type ``T`` (a max that skips NaN starts there)."""
        return self.const(T, "-FLT_MAX" if T == "float" else "-DBL_MAX")

    def special_literal(self, x: float, T: str) -> str:
        """A NaN or (signed) infinity as a constant initializer."""
        if math.isnan(x):
            return self.nan(T)
        return f"{'-' if x < 0 else ''}{self.infinity(T)}"

    def literal(self, x: Any, dtype: str) -> str:
        """A constant's element as C text (``0.5f``, ``3LL``, NaN and infinity spelled by the dialect)."""
        if dtype == "bool":
            return self.true if x else self.false
        if dtype.startswith("float"):
            if math.isnan(x) or math.isinf(x):
                return self.special_literal(x, CTYPES[dtype])
            return f"{float(x)!r}" + ("f" if dtype == "float32" else "")
        return f"{int(x)}LL" if dtype == "int64" else str(int(x))

    def pointer_cast(self, ptr: str, expr: str, reinterpret: bool = False) -> str:
        """``expr`` as a pointer of type ``ptr`` (``const float*``); ``reinterpret``: from bytes."""
        return f"(({ptr}){expr})" if not reinterpret else f"(({ptr})({expr}))"

    # --- loops ------------------------------------------------------------------------------
    def outer_loop(self, loop: OuterLoop) -> list[str]:
        """Lines opening a fused group's outer loop over ``o`` (see the module docstring): one
        block, closed by the template. Pragma lines start with ``#``."""
        head = [self.parallel_pragma] if loop.parallel and self.parallel_pragma else []
        return head + [f"for (long o = 0; o < {loop.extent}; ++o) {{"]

    # --- element-wise ops and capabilities ----------------------------------------------------
    def rule(self, op: str) -> OpRule | None:
        """The element-wise rule this dialect renders ``op`` with: its own override, else the
        op's (:attr:`OpDef.c_expr <sol.ops.registry.OpDef.c_expr>`); None where it has none or
        the dialect does not support the op."""
        if op in self.unsupported_ops:
            return None
        override = self.op_overrides.get(op)
        if override is not None:
            return override
        return registry.get(op).c_expr if op in registry else None

    def rules(self) -> dict[str, OpRule]:
        """Every element-wise op this dialect renders, with its rule."""
        names = {*ELEMENTWISE, *self.op_overrides}
        return {op: r for op in sorted(names) if (r := self.rule(op)) is not None}

    def elementwise(self, node: Node, args: list[str], T: str) -> str:
        """The C expression of element-wise ``node`` on operand expressions ``args``, as type ``T``."""
        rule = self.rule(node.op)
        if rule is None:
            raise SolError(f"{self.name}: no element-wise rule for op {node.op!r}")
        return rule(self, args, T, registry.lowering_attrs(node))

    def elementwise_ops(self) -> frozenset[str]:
        """Element-wise ops this dialect renders: the op table's, its overrides, less unsupported."""
        return frozenset(self.rules())

    def fusible_ops(self) -> frozenset[str]:
        """Every registered op this generator can put in a fused group on this device, read from
        the op table: the element-wise ops with a C expression (``OpDef.c_expr`` or an override),
        the others with a loop lowering (``OpDef.c_loops``; compute-bound ones among them, such as
        the convolution gradients, run as loops only where no backend claims them)."""
        out = set()
        for name in registry.names():
            opdef = registry.get(name)
            if opdef.layer_class is LayerClass.ELEMENTWISE:
                ok = self.rule(name) is not None
            else:
                ok = opdef.layer_class is not LayerClass.ORDER_CONSTRAINED and opdef.c_loops is not None
            if ok and name not in self.unsupported_ops:
                out.add(name)
        return frozenset(out)

    def recurrent_ops(self) -> frozenset[str]:
        """The ops a RECURRENT group renders (:func:`sol.planner.partition.recurrent_kernel`
        describes them), if the device has recurrent templates."""
        return recurrent_op_names() if self.recurrent else frozenset()


def indent_lines(lines: list[str], level: int) -> list[str]:
    """Indent C lines by ``level`` spaces, preprocessor lines (pragmas) kept at column 0."""
    return [line if line.startswith("#") else " " * level + line for line in lines]


class CRenderer:
    """The scaffolding of a C-family network renderer: value names, pointers into the memory
    plan, declarations, comments, group titles, fused-group lowering and the dispatch over the
    plan's groups. A device subclasses it, sets :attr:`net` and implements :meth:`library`
    (and :meth:`recurrent` if its dialect renders recurrent groups).

    Model text (op sources, network names) reaches the source only through :meth:`comment`
    and the templates' ``comment`` filter: symbols are ``v<number>``, never a model's names."""

    net = "net->"  # how group functions reach the network state (``net.`` for a C++ reference)

    def __init__(self, plan: Plan, dialect: Dialect) -> None:
        self.plan = plan
        self.dialect = dialect
        self.symbols: dict[Value, str] = {v: f"v{i}" for i, v in enumerate(plan.graph.values())}

    def sym(self, v: Value) -> str:
        return self.symbols[v]

    # --- memory ---------------------------------------------------------------------------
    def pointer(self, v: Value, in_create: bool = False) -> str:
        """C expression of ``v``'s address inside a group function, or inside ``sol_create``
        (``in_create``), where only parameters and constants exist."""
        owner, slot = self.plan.memory.resolve(v)
        ct, d = ctype(owner), self.dialect
        params = "params" if in_create else f"{self.net}params"
        if slot.storage is Storage.PARAM:
            return d.pointer_cast(f"const {ct}*", f"{params}[{slot.index}]")
        if slot.storage is Storage.CONST:
            return self.const_pointer(slot.index, ct, params)
        if in_create:
            raise SolError(f"{d.name}: {v} is needed at load time but is not a parameter")
        if slot.storage is Storage.INPUT:
            return d.pointer_cast(f"const {ct}*", f"in[{slot.index}]")
        if slot.storage is Storage.OUTPUT:
            return d.pointer_cast(f"{ct}*", f"out[{slot.index}]")
        return d.pointer_cast(f"{ct}*", f"{self.net}arena + {slot.index}", reinterpret=True)

    def const_pointer(self, index: int, ct: str, params: str) -> str:
        """Constant ``index`` of the graph: the array ``K<index>`` the network template defines
        (:meth:`consts`); a device passing large constants at load time overrides this."""
        return f"K{index}"

    def inline_const(self, index: int) -> bool:
        """Whether constant ``index`` is a literal array in the source (see :meth:`const_pointer`)."""
        return True

    def decl(self, v: Value) -> str:
        owner, slot = self.plan.memory.resolve(v)
        const = "const " if slot.storage in (Storage.INPUT, Storage.PARAM, Storage.CONST) else ""
        return f"{const}{ctype(owner)}* {self.dialect.restrict} {self.sym(v)} = {self.pointer(v)};"

    def decls(self, g: Group) -> list[str]:
        """Declarations of every buffer group ``g`` reads or writes, each once."""
        return [self.decl(v) for v in dict.fromkeys(g.inputs + g.outputs)]

    def consts(self) -> list[dict[str, Any]]:
        """The constants written into the source: symbol, element type and literals."""
        import numpy as np

        out = []
        for i, c in enumerate(self.plan.graph.consts):
            if not self.inline_const(i):
                continue
            flat = np.asarray(c.data).reshape(-1)
            out.append({"sym": f"K{i}", "ctype": ctype(c),
                        "literals": [self.dialect.literal(x, c.dtype) for x in flat.tolist()] or ["0"]})
        return out

    def helpers(self) -> str:
        """C helper functions the plan's element-wise rules call (the special functions of
        :mod:`sol.lowering.special`), for the network template to put at file scope before the
        group functions; empty when the plan uses none, so other networks compile no extra code."""
        from sol.lowering import special

        return special.helpers(self.dialect) if special.uses_helpers(self.plan.graph) else ""

    # --- text ------------------------------------------------------------------------------
    def comment(self, step: int, node: Node) -> str:
        """``// #step op <- where it came from``: the source is model text (module paths, file
        names), made harmless for a comment (no line break, backslash, comment end, trigraph)."""
        src = f" <- {comment_text(node.source)}" if node.source else ""
        return f"// #{step} {comment_text(node.op)}{src}"

    def title(self, g: Group) -> str:
        """One line describing group ``g`` (the comment above its code)."""
        ops = ", ".join(f"#{i + 1} {n.op}" for i, n in enumerate(g.nodes))
        if g.kind is GroupKind.LIBRARY:
            return self.library_title(g, ops)
        assert g.kernel is not None
        over = "x".join(map(str, g.kernel.outer_shape)) or "1"
        return f"fused loop nest ({g.layer_class.value}), depth-first over {over}: {ops}"

    def library_title(self, g: Group, ops: str) -> str:
        return f"library {g.backend} ({g.layer_class.value}): {ops}"

    # --- groups -----------------------------------------------------------------------------
    def lower(self, g: Group) -> LoweredGroup:
        return GroupLowering(g, self.sym, self.dialect.elementwise, self.comment, self.dialect.literal).lower()

    def fused(self, g: Group) -> dict[str, Any]:
        """The template context of a fused group: its lowering (``lowered``), the counters of
        its outer dims (``outer_index``) and the lines opening its outer loop (``outer_loop``)."""
        lowered = self.lower(g)
        loop = OuterLoop(lowered.outer_size, lowered.parallel_outer, lowered.work)
        return {"kind": "fused", "label": g.label, "id": g.id, "title": self.title(g), "decls": self.decls(g),
                "lowered": lowered, "outer_index": lowered.outer_index,
                "outer_loop": indent_lines(self.dialect.outer_loop(loop), 2)}

    def library(self, g: Group) -> dict[str, Any]:
        """The template context of a LIBRARY group. The default renders the generator's
        reference loops (:mod:`sol.lowering.compute`; the shipped templates' macro ``op``,
        :attr:`record` a typed record): what the reference-loops backend
        (:func:`~sol.lowering.reference_loops`) claims. A device with a vendor library overrides
        this for its backend's groups and calls ``super().library(g)`` for the others."""
        macro, record = reference_record(g, self.sym, self.dialect.name)
        return {"kind": "library", "label": g.label, "id": g.id, "title": self.title(g), "decls": self.decls(g),
                "comment": self.comment(1, g.anchor), "op": macro, "record": record}

    def recurrent(self, g: Group) -> dict[str, Any]:
        raise SolError(f"{self.dialect.name}: no recurrent template for {g.nodes[0].op!r}")

    def alias(self, g: Group) -> dict[str, Any] | None:
        """An ALIAS group (no code): None leaves it out of the template's groups."""
        return None

    def groups(self) -> list[dict[str, Any]]:
        """The template context of every group, in plan order."""
        out = []
        for g in self.plan.groups:
            if g.kind is GroupKind.FUSED:
                ctx: dict[str, Any] | None = self.fused(g)
            elif g.kind is GroupKind.LIBRARY:
                ctx = self.library(g)
            elif g.kind is GroupKind.RECURRENT:
                ctx = self.recurrent(g)
            else:
                ctx = self.alias(g)
            if ctx is not None:
                out.append(ctx)
        return out
