"""Lower a planned FUSED group to what a device's loop templates need: loops, offsets, expressions.

Shared by every device that generates C-family code (C++/OpenMP, CUDA, VE C): index arithmetic
is done here, once, in Python; a device's templates only lay out loops and choose pragmas. Every value a
stage touches is addressed through per-dimension strides over the stage's full iteration shape
(0 for broadcast dimensions, and for the outer dimensions of per-iteration scratch), so one rule
covers plain, broadcast and scratch operands alike. Adjacent dimensions that every operand walks
contiguously are merged so that the innermost loop is long and vectorizes.

Pointwise stages become :class:`PointwiseStage` (loops and statements, plus the same computation
as loads, ops and stores for devices that vectorize by hand); every other op becomes an
:class:`OpStage` holding a typed record (:mod:`sol.lowering.records`) from the loop lowering its
:class:`~sol.ops.registry.OpDef` names (``c_loops``): core's I/O-bound families are below, the
index/selection ops' in :mod:`sol.lowering.index`, the backward ops' in :mod:`sol.lowering.grad`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sol.errors import SolError
from sol.ir import Node, Value
from sol.lowering.base import contiguous_strides, ctype, linear, numel
from sol.lowering.records import (
    COPY_BLOCK,
    AdaptivePoolRecord,
    BaseFields,
    ConcatPart,
    ConcatRecord,
    CopyDim,
    CopyRecord,
    Dim,
    OpRecord,
    PadRecord,
    PoolNhwcRecord,
    PoolRecord,
    ReduceRecord,
    ReduceRuns,
    Run,
    SoftmaxRecord,
)
from sol.ops.registry import CLoopsFn, registry
from sol.planner.plan import FusedKernel, Group, Stage

# fn(node, operand expressions, C type of the output) -> C expression of an element-wise node.
ElementwiseFn = Callable[[Node, list[str], str], str]
# fn(step, node) -> a comment naming the node (``// #2 relu <- model.act``).
CommentFn = Callable[[int, Node], str]


@dataclass
class Loop:
    var: str
    extent: int


@dataclass
class Access:
    """One operand of a pointwise stage as its innermost loop sees it: element
    ``base[offset + i * stride]`` at step ``i`` of the innermost loop, where ``offset`` (a C
    expression) covers the outer iteration and every enclosing loop. ``stride`` 0: the same element
    for the whole innermost loop (a broadcast). ``reg`` names the loaded or computed register."""

    value: Value
    base: str
    offset: str
    stride: int
    reg: str


@dataclass
class PointwiseOp:
    """One element-wise node of a stage: ``out = node(args)``, args being register names."""

    node: Node
    out: str
    args: list[str]
    comment: str


@dataclass
class PointwiseStage:
    """Nested ``loops`` around ``statements``. ``parallel``: the group has no outer loop, so
    the device should parallelize these loops itself (``work`` elements in all).

    ``loads``, ``ops`` and ``stores`` describe the same computation structurally, for devices that
    vectorize the innermost loop with explicit vector instructions (strip-mined loads with a
    stride, one vector operation per op, strided stores) instead of leaving it to a compiler."""

    kind: str
    loops: list[Loop]
    statements: list[str]
    parallel: bool = False
    work: int = 0
    loads: list[Access] = field(default_factory=list)
    ops: list[PointwiseOp] = field(default_factory=list)
    stores: list[Access] = field(default_factory=list)


@dataclass
class OpStage:
    """One op of a fused group: the device renders ``record`` with its op macro named ``op``."""

    kind: str
    op: str
    comment: str
    record: OpRecord


@dataclass
class LoweredGroup:
    label: str
    outer: list[int]
    outer_size: int
    locals: list[tuple[str, str, int]]  # (ctype, symbol, elements)
    stages: list[PointwiseStage | OpStage] = field(default_factory=list)
    parallel_outer: bool = True
    work: int = 0  # elements of the largest tensor the group reads or writes

    @property
    def outer_index(self) -> list[str]:
        """C declarations of the outer loop's per-dimension counters ``o<k>`` from the flat
        counter ``o`` (dimensions of extent 1 have none: nothing is offset by them)."""
        lines = []
        for k, extent in enumerate(self.outer):
            if extent > 1:
                lines.append(f"const long o{k} = (o / {numel(tuple(self.outer[k + 1:]))}) % {extent};")
        return lines


def _pad_value(low: GroupLowering, x: float, dtype: str) -> str:
    """Finite values as Python writes them (the template casts), NaN and infinities as the dialect spells them."""
    return repr(x) if math.isfinite(x) else low.literal(x, dtype)


def _plain_literal(x: Any, dtype: str) -> str:
    if isinstance(x, float) and not math.isfinite(x):
        raise SolError(f"a {x} constant needs a dialect to spell it (GroupLowering(..., literal=dialect.literal))")
    return repr(x)


class GroupLowering:
    """Lowers one fused group. ``sym(v)`` names a global buffer (a one-character prefix and a
    number: locals, registers and loads reuse the number with prefixes of their own);
    ``elementwise`` renders an element-wise node (a dialect's :meth:`sol.lowering.Dialect.elementwise`);
    ``comment`` names a node in a comment; ``literal(x, dtype)`` spells a constant of the model's
    (a pad value: NaN and infinities have no portable C spelling, :meth:`sol.lowering.Dialect.literal`)."""

    def __init__(self, group: Group, sym: Callable[[Value], str], elementwise: ElementwiseFn,
                 comment: CommentFn, literal: Callable[[Any, str], str] | None = None) -> None:
        assert group.kernel is not None
        self.group = group
        self.kernel: FusedKernel = group.kernel
        self.sym = sym
        self.ew = elementwise
        self.comment = comment
        self.literal = literal or _plain_literal
        self.local_sym = {v: f"L{sym(v)[1:]}" for v in self.kernel.locals}
        self.step = 0
        self.serial_outer = False

    # --- addressing ----------------------------------------------------------------------
    def _strides(self, v: Value, rank: int, depth: int) -> list[int]:
        st = contiguous_strides(v.shape, rank)
        if v in self.local_sym:
            st = [0] * depth + st[depth:]
        return st

    def _base(self, v: Value) -> str:
        return self.local_sym.get(v) or self.sym(v)

    def _outer_offset(self, v: Value, strides: list[int], depth: int) -> str:
        terms = [f"o{k} * {strides[k]}" for k in range(depth) if strides[k] and self.kernel.outer_shape[k] > 1]
        return " + ".join(terms)

    def _sub_tensor(self, v: Value, depth: int) -> str:
        """Pointer to ``v``'s sub-tensor at this outer iteration (op stages)."""
        if v in self.local_sym:
            return self.local_sym[v]
        inner = numel(v.shape[depth:])
        return f"({self.sym(v)} + o * {inner})" if self.kernel.outer_size > 1 else self.sym(v)

    # --- stages ----------------------------------------------------------------------------
    def lower(self) -> LoweredGroup:
        k = self.kernel
        pure = len(k.stages) == 1 and k.stages[0].kind == "pointwise" and not k.locals
        depth = 0 if pure else k.depth
        out = LoweredGroup(self.group.label, list(k.outer_shape[:depth]), numel(k.outer_shape[:depth]),
                           [(ctype(v), self.local_sym[v], n) for v, n in k.locals.items()])
        out.parallel_outer = not pure and out.outer_size > 1
        # Templates compare this with a threshold before starting threads: a parallel region
        # around a few thousand elements costs more than it saves, and far more when the cores
        # are busy with other work (a barrier then waits for a descheduled thread).
        out.work = max((numel(v.shape) for n in self.group.nodes for v in (*n.inputs, *n.outputs)), default=1)
        # With no parallel outer loop, each stage may start threads of its own.
        self.serial_outer = out.outer_size == 1
        for stage in k.stages:
            if stage.kind == "pointwise":
                out.stages.append(self._pointwise(stage, depth, parallel=pure or self.serial_outer))
            else:
                out.stages.append(self._op(stage.nodes[0], depth))
        return out

    def _pointwise(self, stage: Stage, depth: int, parallel: bool) -> PointwiseStage:
        full = stage.nodes[0].outputs[0].shape
        rank = len(full)
        accesses = {v: self._strides(v, rank, depth) for v in stage.loads + stage.stores}
        # Merge loop dims from the innermost outwards when every access walks them contiguously.
        dims: list[list[Any]] = [[full[d], d] for d in range(depth, rank) if full[d] != 1] or [[1, None]]
        merged: list[tuple[int, dict[Value, int]]] = []
        for extent, d in reversed(dims):
            strides = {v: (0 if d is None else st[d]) for v, st in accesses.items()}
            if merged and all(strides[v] == merged[-1][1][v] * merged[-1][0] for v in accesses):
                inner_extent, inner_strides = merged[-1]
                merged[-1] = (extent * inner_extent, inner_strides)
            else:
                merged.append((extent, strides))
        merged.reverse()
        loops = [Loop(f"i{j}", e) for j, (e, _) in enumerate(merged)]

        def terms(v: Value, loops: range) -> list[str]:
            st = accesses[v]
            out = [t for t in (self._outer_offset(v, st, depth),) if t]
            return out + [f"i{j} * {merged[j][1][v]}" if merged[j][1][v] != 1 else f"i{j}"
                          for j in loops if merged[j][1][v]]

        def at(v: Value) -> str:
            return f"{self._base(v)}[{' + '.join(terms(v, range(len(merged)))) or '0'}]"

        def access(v: Value, reg: str) -> Access:
            offset = " + ".join(terms(v, range(len(merged) - 1))) or "0"
            return Access(v, self._base(v), offset, merged[-1][1][v], reg)

        regs: dict[Value, str] = {}
        body = []
        loads = {v: access(v, f"l{self.sym(v)[1:]}") for v in stage.loads}
        ops = []
        for node in stage.nodes:
            args = [regs.get(v) or at(v) for v in node.inputs]
            out = node.outputs[0]
            reg = f"r{self.sym(out)[1:]}"
            comment = self._comment(node)
            body.append(f"const {ctype(out)} {reg} = {self.ew(node, args, ctype(out))};  {comment}")
            ops.append(PointwiseOp(node, reg, [regs.get(v) or loads[v].reg for v in node.inputs], comment))
            regs[out] = reg
        for v in stage.stores:
            body.append(f"{at(v)} = {regs[v]};")
        return PointwiseStage("pointwise", loops, body, parallel, numel(full[depth:]), list(loads.values()), ops,
                              [access(v, regs[v]) for v in stage.stores])

    def _comment(self, node: Node) -> str:
        self.step += 1
        return self.comment(self.step, node)

    def _op(self, node: Node, depth: int) -> OpStage:
        lowering = registry.get(node.op, node).c_loops
        if lowering is None:
            raise SolError(f"no loop lowering for op {node.op!r} (its OpDef has no c_loops)")
        x, y = node.inputs[0], node.outputs[0]
        base = BaseFields(op=node.op, T=ctype(y), x=self._sub_tensor(x, depth), y=self._sub_tensor(y, depth))
        macro, record = lowering(self, node, depth, base)
        return OpStage("op", macro, self._comment(node), record)

    # --- helpers the op families share ---------------------------------------------------------
    def _reduce(self, node: Node, depth: int, base: BaseFields, general: bool = False) -> ReduceRecord:
        x, y = node.inputs[0], node.outputs[0]
        axes = [ax - depth for ax in node.attrs["axes"]]
        inner = x.shape[depth:]
        red = numel(tuple(inner[ax] for ax in axes))
        scale = 1.0 / red if node.op in ("mean", "variance") and red else 1.0
        out_numel = numel(y.shape[depth:])
        runs = reduce_runs(inner, axes, out_numel, self.serial_outer)
        contiguous = axes == list(range(axes[0], axes[-1] + 1)) and not general
        if contiguous:
            return ReduceRecord(**base, scale=repr(scale), out_numel=out_numel, runs=runs, contiguous=True,
                                pre=numel(inner[:axes[0]]), red=red, post=numel(inner[axes[-1] + 1:]))
        in_st = contiguous_strides(inner, len(inner))
        kept = [d for d in range(len(inner)) if d not in axes]
        out_st_kept = contiguous_strides(tuple(inner[d] for d in kept), len(kept))
        out_st = [0] * len(inner)
        for j, d in enumerate(kept):
            out_st[d] = out_st_kept[j]
        return ReduceRecord(**base, scale=repr(scale), out_numel=out_numel, runs=runs, contiguous=False,
                            dims=[Dim(e) for e in inner], in_offset=linear(in_st),
                            out_offset=linear(out_st))


def reduce_runs(shape: tuple[int, ...], axes: list[int], out_numel: int, parallel: bool) -> ReduceRuns:
    """A sum over ``axes`` of a row-major ``shape`` as runs of adjacent kept (K) or reduced (R)
    dims, each merged into one (extent, stride), for templates that loop over the output and
    sum each element's inputs with the contiguous run innermost:

    - ``kept``: the kept runs other than the innermost run, outermost first, with ``div``: for
      the template's counter ``k`` over ``outer`` positions, the run's input offset is
      ``(k / div % extent) * stride`` (the output is contiguous over them);
    - ``reduced``: the reduced runs looped over for each output element (or tile);
    - ``inner``: the extent of the innermost run and whether it is reduced (``inner_reduced``:
      a vector reduction into one sum) or kept (a vector of sums over ``tile`` outputs, in
      ``tiles`` tiles per outer output position);
    - ``parallel``: no enclosing parallel loop, so the template may start threads; ``work``: the
      input's element count, for the template's threshold.
    """
    runs: list[tuple[bool, int, int]] = []  # (reduced, extent, stride)
    strides = contiguous_strides(shape, len(shape))
    for d, extent in enumerate(shape):
        if extent == 1:
            continue
        reduced = d in axes
        if runs and runs[-1][0] == reduced:
            runs[-1] = (reduced, runs[-1][1] * extent, strides[d])
        else:
            runs.append((reduced, extent, strides[d]))
    inner_reduced = not runs or runs[-1][0]
    inner = runs.pop()[1] if runs else 1
    kept = [Run(e, st) for red, e, st in runs if not red]
    # ``k`` counts output positions outside the innermost run in both forms (every output when
    # the inner run is reduced; the outer positions, each a row of ``inner`` sums, when it is
    # kept), so the innermost kept run left in ``kept`` always steps with ``k`` itself.
    div = 1
    for run in reversed(kept):
        run.div = div
        div *= run.extent
    outer = max(out_numel // (1 if inner_reduced else inner), 1)
    tile = 256
    # Enough tiles to share among the threads when the kept inner run is all the output.
    while not inner_reduced and tile > 16 and outer * -(-inner // tile) < 16:
        tile //= 2
    tile = min(tile, inner)
    return ReduceRuns(kept=kept, reduced=[Run(e, st) for red, e, st in runs if red], inner=inner,
                      inner_reduced=inner_reduced, outer=outer, tile=tile, tiles=-(-inner // tile),
                      parallel=parallel, work=numel(shape))


# --- the loop lowerings of core's I/O-bound ops (each op's OpDef.c_loops names its own) ------------


def pool(low: GroupLowering, node: Node, depth: int, base: BaseFields) -> tuple[str, OpRecord]:
    x, y = node.inputs[0], node.outputs[0]
    a = node.attrs
    planes, (h, w), (oh, ow) = numel(x.shape[depth:-2]), x.shape[-2:], y.shape[-2:]
    if node.op == "adaptive_avg_pool2d":
        return "adaptive_avg_pool2d", AdaptivePoolRecord(**base, planes=planes, H=h, W=w, OH=oh, OW=ow)
    (pt, pb), (pl, pr) = a["padding"]
    dh, dw = a.get("dilation", (1, 1))
    return "pool", PoolRecord(**base, planes=planes, H=h, W=w, OH=oh, OW=ow, kh=a["kernel"][0],
                              kw=a["kernel"][1], sh=a["stride"][0], sw=a["stride"][1], dh=dh, dw=dw, pt=pt,
                              pb=pb, pl=pl, pr=pr, count_include_pad=a.get("count_include_pad", True),
                              divisor=a.get("divisor"), nan_ignore=a.get("nan") == "ignore")


def pool_nhwc(low: GroupLowering, node: Node, depth: int, base: BaseFields) -> tuple[str, OpRecord]:
    x, y = node.inputs[0], node.outputs[0]
    a = node.attrs
    (pt, pb), (pl, pr) = a["padding"]
    dh, dw = a.get("dilation", (1, 1))
    return "pool_nhwc", PoolNhwcRecord(**base, images=numel(x.shape[depth:-3]), H=x.shape[1], W=x.shape[2],
                                       C=x.shape[3], OH=y.shape[1], OW=y.shape[2], kh=a["kernel"][0],
                                       kw=a["kernel"][1], sh=a["stride"][0], sw=a["stride"][1], dh=dh, dw=dw,
                                       pt=pt, pb=pb, pl=pl, pr=pr, nan_ignore=a.get("nan") == "ignore",
                                       count_include_pad=a.get("count_include_pad", True),
                                       divisor=a.get("divisor"))


def softmax(low: GroupLowering, node: Node, depth: int, base: BaseFields) -> tuple[str, OpRecord]:
    inner = node.inputs[0].shape[depth:]
    ax = node.attrs["axis"] - depth
    # nan / masked_rows: the frameworks' special-value rules (sol.ops.reduce); log_softmax
    # has only the defaults.
    return node.op, SoftmaxRecord(**base, pre=numel(inner[:ax]), L=inner[ax], post=numel(inner[ax + 1:]),
                                  nan=node.attrs.get("nan", "row"),
                                  masked_rows=node.attrs.get("masked_rows", "nan"))


def reduction(low: GroupLowering, node: Node, depth: int, base: BaseFields) -> tuple[str, OpRecord]:
    if node.op == "variance":
        # The reduction's fields plus the centre, shaped like the output (its sub-tensor
        # lines up with y's); templates without a form of their own take the general loops.
        rec = low._reduce(node, depth, base, general=True)
        rec.centre = low._sub_tensor(node.inputs[1], depth)
        return "variance", rec
    return "reduce", low._reduce(node, depth, base)


def concat(low: GroupLowering, node: Node, depth: int, base: BaseFields) -> tuple[str, OpRecord]:
    axis = node.attrs["axis"]
    ax = axis - depth
    inner_out = node.outputs[0].shape[depth:]
    parts, offset = [], 0
    for v in node.inputs:
        parts.append(ConcatPart(low._sub_tensor(v, depth), v.shape[axis], offset))
        offset += v.shape[axis]
    return "concat", ConcatRecord(**base, pre=numel(inner_out[:ax]), post=numel(inner_out[ax + 1:]),
                                  total=offset, parts=parts)


def copy_record(low: GroupLowering, base: BaseFields, extents: tuple[int, ...], src: list[int]) -> CopyRecord:
    """``y`` (contiguous, ``extents``) from ``x`` read at element strides ``src`` per dim: the
    general nest plus its simplified plan (see :class:`CopyRecord`)."""
    dst = contiguous_strides(extents, len(extents))
    src = [s if e > 1 else 0 for s, e in zip(src, extents)]
    plan = copy_plan(extents, src, dst)
    tile = None
    if plan[-1].src != 1:
        # Tiles pay where both loops span at least half a tile.
        tile = next((j for j, d in enumerate(plan[:-1]) if d.src == 1 and d.extent >= _HALF_TILE), None)
        if plan[-1].extent < _HALF_TILE:
            tile = None
    return CopyRecord(
        **base, dims=[Dim(e) for e in extents], out_offset=linear(dst), in_offset=linear(src),
        plan=plan, src_at=_counters([d.src for d in plan]), dst_at=_counters([d.dst for d in plan]),
        tile=tile, parallel=low.serial_outer, work=numel(extents))


_HALF_TILE = COPY_BLOCK // 2


def copy_plan(extents: tuple[int, ...], src: list[int], dst: list[int]) -> list[CopyDim]:
    """The loops of a strided copy with dims of extent 1 dropped and each dim merged into the
    one outside it where both tensors step over it as over one longer dim."""
    plan: list[CopyDim] = []
    for e, s, d in zip(extents, src, dst):
        if e == 1:
            continue
        prev = plan[-1] if plan else None
        if prev is not None and prev.src == s * e and prev.dst == d * e:
            plan[-1] = CopyDim(prev.extent * e, s, d)
        else:
            plan.append(CopyDim(e, s, d))
    return plan or [CopyDim(1, 0, 0)]


def _counters(strides: list[int]) -> str:
    terms = [f"c{j} * {s}" if s != 1 else f"c{j}" for j, s in enumerate(strides) if s]
    return " + ".join(terms) or "0"


def transpose(low: GroupLowering, node: Node, depth: int, base: BaseFields) -> tuple[str, OpRecord]:
    inner_in, inner_out = node.inputs[0].shape[depth:], node.outputs[0].shape[depth:]
    perm = [p - depth for p in node.attrs["perm"][depth:]]
    in_st = contiguous_strides(inner_in, len(inner_in))
    return "transpose", copy_record(low, base, inner_out, [in_st[perm[j]] for j in range(len(inner_out))])


def slice_(low: GroupLowering, node: Node, depth: int, base: BaseFields) -> tuple[str, OpRecord]:
    # A strided view copied out: the transpose loops with a start offset and step strides.
    x, a = node.inputs[0], node.attrs
    inner_out = node.outputs[0].shape[depth:]
    in_st = contiguous_strides(x.shape, x.type.rank)
    start, step = [0] * x.type.rank, [1] * x.type.rank
    for ax, b, st in zip(a["axes"], a["starts"], a["steps"]):
        start[ax], step[ax] = b, st
    first = sum(start[d] * in_st[d] for d in range(depth, x.type.rank))
    if first:
        base = base.copy()
        base["x"] = f"({base['x']} + {first})"
    return "transpose", copy_record(low, base, inner_out,
                                    [in_st[depth + j] * step[depth + j] for j in range(len(inner_out))])


def pad(low: GroupLowering, node: Node, depth: int, base: BaseFields) -> tuple[str, OpRecord]:
    # Every output element: the input element it came from, or the pad value outside it.
    inner_in, inner_out = node.inputs[0].shape[depth:], node.outputs[0].shape[depth:]
    pads = node.attrs["pads"][depth:]
    in_st = contiguous_strides(inner_in, len(inner_in))
    out_st = contiguous_strides(inner_out, len(inner_out))
    in_offset = " + ".join(f"(i{j} - {lo}) * {in_st[j]}" if lo else f"i{j} * {in_st[j]}"
                           for j, (lo, _) in enumerate(pads) if in_st[j]) or "0"
    inside = " && ".join(f"i{j} >= {lo} && i{j} < {lo + inner_in[j]}"
                         for j, (lo, hi) in enumerate(pads) if lo or hi) or "true"
    return "pad", PadRecord(**base, dims=[Dim(e) for e in inner_out], out_offset=linear(out_st),
                            in_offset=in_offset, inside=inside,
                            value=_pad_value(low, float(node.attrs["value"]), node.outputs[0].dtype))


# fn(lowering, node, depth, base record fields) -> (op macro name, record)
OpLowering = CLoopsFn

# The loop lowering of every registered non-element-wise op a C-family device can fuse, by name:
# a live view of the op table (OpDef.c_loops), plugins' ops included; not a table of its own
# (sol.lowering.cfamily derives a device's fusible ops from the op table).
OP_LOWERINGS: Mapping[str, OpLowering] = registry.table("c_loops")
