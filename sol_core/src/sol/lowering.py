"""Lower a planned FUSED group to what a device's loop templates need: loops, offsets, expressions.

Shared by every device that generates C-family code (C++/OpenMP, CUDA, VE C): index arithmetic
is done here, once, in Python; a device's templates only lay out loops and choose pragmas. Every value a
stage touches is addressed through per-dimension strides over the stage's full iteration shape
(0 for broadcast dimensions, and for the outer dimensions of per-iteration scratch), so one rule
covers plain, broadcast and scratch operands alike. Adjacent dimensions that every operand walks
contiguously are merged so that the innermost loop is long and vectorizes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import jinja2

from sol.errors import SolError
from sol.ir import Node, Value
from sol.ops.registry import registry
from sol.planner.plan import FusedKernel, Group, Stage

# C element types of sol's dtypes.
CTYPES = {"float32": "float", "float64": "double", "int64": "int64_t", "int32": "int32_t", "int8": "int8_t",
          "uint8": "uint8_t", "bool": "bool"}


def ctype(v: Value) -> str:
    try:
        return CTYPES[v.dtype]
    except KeyError:
        raise SolError(f"generated code does not support dtype {v.dtype} (value {v.name})") from None


def contiguous_strides(shape: tuple[int, ...], rank: int) -> list[int]:
    """Strides of a row-major ``shape`` right-aligned to ``rank`` dims; broadcast dims get 0."""
    padded = (1,) * (rank - len(shape)) + tuple(shape)
    strides = [0] * rank
    acc = 1
    for k in range(rank - 1, -1, -1):
        strides[k] = 0 if padded[k] == 1 else acc
        acc *= padded[k]
    return strides


def numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


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
    kind: str
    op: str
    comment: str
    s: dict[str, Any]


@dataclass
class LoweredGroup:
    label: str
    outer: list[int]
    outer_size: int
    locals: list[tuple[str, str, int]]  # (ctype, symbol, elements)
    stages: list[Any] = field(default_factory=list)
    parallel_outer: bool = True
    work: int = 0  # elements of the largest tensor the group reads or writes


class GroupLowering:
    """Lowers one fused group. ``sym(v)`` names a global buffer; locals are named here."""

    def __init__(self, group: Group, sym: Any, elementwise: Any, comment: Any) -> None:
        assert group.kernel is not None
        self.group = group
        self.kernel: FusedKernel = group.kernel
        self.sym = sym
        self.ew = elementwise
        self.comment = comment
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
        x, y = node.inputs[0], node.outputs[0]
        s: dict[str, Any] = {"op": node.op, "T": ctype(y), "x": self._sub_tensor(x, depth),
                             "y": self._sub_tensor(y, depth)}
        a = node.attrs
        inner_in, inner_out = x.shape[depth:], y.shape[depth:]
        if node.op in ("max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"):
            s.update(planes=numel(inner_in[:-2]), H=x.shape[-2], W=x.shape[-1], OH=y.shape[-2], OW=y.shape[-1])
            if node.op != "adaptive_avg_pool2d":
                (pt, pb), (pl, pr) = a["padding"]
                dh, dw = a.get("dilation", (1, 1))
                s.update(kh=a["kernel"][0], kw=a["kernel"][1], sh=a["stride"][0], sw=a["stride"][1], dh=dh, dw=dw,
                         pt=pt, pb=pb, pl=pl, pr=pr, count_include_pad=a.get("count_include_pad", True),
                         divisor=a.get("divisor"), nan_ignore=a.get("nan") == "ignore")
            macro = "adaptive_avg_pool2d" if node.op == "adaptive_avg_pool2d" else "pool"
        elif node.op in ("softmax", "log_softmax"):
            ax = a["axis"] - depth
            # nan / masked_rows: the frameworks' special-value rules (sol.ops.reduce); log_softmax
            # has only the defaults.
            s.update(pre=numel(inner_in[:ax]), L=inner_in[ax], post=numel(inner_in[ax + 1:]),
                     nan=a.get("nan", "row"), masked_rows=a.get("masked_rows", "nan"))
            macro = node.op
        elif node.op in ("mean", "sum"):
            s.update(self._reduce(node, depth))
            macro = "reduce"
        elif node.op == "variance":
            # The reduction's fields plus the centre, shaped like the output (its sub-tensor
            # lines up with y's); templates without a form of their own take the general loops.
            s.update(self._reduce(node, depth, general=True), centre=self._sub_tensor(node.inputs[1], depth))
            macro = "variance"
        elif node.op == "concat":
            ax = a["axis"] - depth
            parts, offset = [], 0
            for v in node.inputs:
                parts.append({"x": self._sub_tensor(v, depth), "len": v.shape[a["axis"]], "offset": offset})
                offset += v.shape[a["axis"]]
            s.update(pre=numel(inner_out[:ax]), post=numel(inner_out[ax + 1:]), total=offset, parts=parts)
            macro = "concat"
        elif node.op == "transpose":
            perm = [p - depth for p in a["perm"][depth:]]
            in_st = contiguous_strides(inner_in, len(inner_in))
            out_st = contiguous_strides(inner_out, len(inner_out))
            s["dims"] = [{"extent": e} for e in inner_out]
            s["out_offset"] = _linear([out_st[j] for j in range(len(inner_out))])
            s["in_offset"] = _linear([in_st[perm[j]] if inner_in[perm[j]] > 1 else 0 for j in range(len(inner_out))])
            macro = "transpose"
        elif node.op == "slice":
            # A strided view copied out: the transpose loops with a start offset and step strides.
            in_st = contiguous_strides(x.shape, x.type.rank)
            start, step = [0] * x.type.rank, [1] * x.type.rank
            for ax, b, st in zip(a["axes"], a["starts"], a["steps"]):
                start[ax], step[ax] = b, st
            base = sum(start[d] * in_st[d] for d in range(depth, x.type.rank))
            s["x"] = f"({s['x']} + {base})" if base else s["x"]
            out_st = contiguous_strides(inner_out, len(inner_out))
            s["dims"] = [{"extent": e} for e in inner_out]
            s["out_offset"] = _linear(out_st)
            s["in_offset"] = _linear([in_st[depth + j] * step[depth + j] if inner_out[j] > 1 else 0
                                      for j in range(len(inner_out))])
            macro = "transpose"
        elif node.op == "pad":
            # Every output element: the input element it came from, or the pad value outside it.
            in_st = contiguous_strides(inner_in, len(inner_in))
            out_st = contiguous_strides(inner_out, len(inner_out))
            s["dims"] = [{"extent": e} for e in inner_out]
            s["out_offset"] = _linear(out_st)
            s["in_offset"] = " + ".join(f"(i{j} - {lo}) * {in_st[j]}" if lo else f"i{j} * {in_st[j]}"
                                        for j, (lo, _) in enumerate(a["pads"][depth:]) if in_st[j]) or "0"
            s["inside"] = " && ".join(f"i{j} >= {lo} && i{j} < {lo + inner_in[j]}"
                                      for j, (lo, hi) in enumerate(a["pads"][depth:]) if lo or hi) or "true"
            s["value"] = repr(float(a["value"]))
            macro = "pad"
        elif node.op in ("gather", "max", "min", "argmax", "argmin"):
            from sol import lowering_index

            macro, fields = lowering_index.lower(self, node, depth)
            s.update(fields)
        elif node.op in _GRAD_OPS:
            from sol import lowering_grad

            macro, fields = lowering_grad.lower(self, node, depth)
            s.update(fields)
        elif node.op == "resize2d":
            from sol import lowering_spatial

            macro, fields = lowering_spatial.lower(node, depth)
            s.update(fields)
        else:
            raise SolError(f"no loop lowering for I/O-bound op {node.op!r}")
        return OpStage("op", macro, self._comment(node), s)

    def _reduce(self, node: Node, depth: int, general: bool = False) -> dict[str, Any]:
        x, y = node.inputs[0], node.outputs[0]
        axes = [ax - depth for ax in node.attrs["axes"]]
        inner = x.shape[depth:]
        red = numel(tuple(inner[ax] for ax in axes))
        scale = 1.0 / red if node.op in ("mean", "variance") and red else 1.0
        fields: dict[str, Any] = {"scale": repr(scale), "out_numel": numel(y.shape[depth:]),
                                  "runs": reduce_runs(inner, axes, numel(y.shape[depth:]), self.serial_outer)}
        contiguous = axes == list(range(axes[0], axes[-1] + 1)) and not general
        if contiguous:
            return {**fields, "contiguous": True, "pre": numel(inner[:axes[0]]), "red": red,
                    "post": numel(inner[axes[-1] + 1:])}
        in_st = contiguous_strides(inner, len(inner))
        kept = [d for d in range(len(inner)) if d not in axes]
        out_st_kept = contiguous_strides(tuple(inner[d] for d in kept), len(kept))
        out_st = [0] * len(inner)
        for j, d in enumerate(kept):
            out_st[d] = out_st_kept[j]
        return {**fields, "contiguous": False, "dims": [{"extent": e} for e in inner], "in_offset": _linear(in_st),
                "out_offset": _linear(out_st)}


def reduce_runs(shape: tuple[int, ...], axes: list[int], out_numel: int, parallel: bool) -> dict[str, Any]:
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
    kept: list[dict[str, int]] = [{"extent": e, "stride": st} for red, e, st in runs if not red]
    # ``k`` counts output positions outside the innermost run in both forms (every output when
    # the inner run is reduced; the outer positions, each a row of ``inner`` sums, when it is
    # kept), so the innermost kept run left in ``kept`` always steps with ``k`` itself.
    div = 1
    for run in reversed(kept):
        run["div"] = div
        div *= run["extent"]
    outer = max(out_numel // (1 if inner_reduced else inner), 1)
    tile = 256
    # Enough tiles to share among the threads when the kept inner run is all the output.
    while not inner_reduced and tile > 16 and outer * -(-inner // tile) < 16:
        tile //= 2
    tile = min(tile, inner)
    return {"kept": kept, "reduced": [{"extent": e, "stride": st} for red, e, st in runs if red],
            "inner": inner, "inner_reduced": inner_reduced, "outer": outer, "tile": tile,
            "tiles": -(-inner // tile), "parallel": parallel, "work": numel(shape)}


# Backward ops lowered by sol.lowering_grad (kept in step with lowering_grad.OPS by a test).
_GRAD_OPS = ("max_pool2d_backward", "max_pool2d_select", "gather_backward", "conv2d_backward_data",
             "conv2d_backward_weight")


def _linear(strides: list[int]) -> str:
    terms = [f"i{j} * {s}" if s != 1 else f"i{j}" for j, s in enumerate(strides) if s]
    return " + ".join(terms) or "0"


def elementwise_renderer(env: jinja2.Environment, template: str = "elementwise.j2") -> Any:
    """``fn(node, operand_exprs, ctype) -> C expression`` from a device's element-wise macros:
    one jinja2 macro per op, named like the op, taking the operands, the C type and the op's
    attributes."""
    module = env.get_template(template).module

    def render(node: Node, args: list[str], ct: str) -> str:
        macro = getattr(module, node.op, None)
        if macro is None:
            raise SolError(f"no element-wise template for op {node.op!r} in {template}")
        return str(macro(*args, ct, **registry.lowering_attrs(node))).strip()

    return render
