"""Plan -> one C translation unit for the Vector Engine (jinja2 templates in ``templates/``).

Two variants of the same network, chosen at render time:

* ``ncc``: plain C loops annotated with NEC pragmas (``#pragma _NEC ivdep``, ``vreg``,
  ``outerloop_unroll``) for NEC's vectorizing compiler;
* ``vel``: explicit VEL intrinsics (``<velintrin.h>``) for LLVM's VE backend, which does not
  vectorize loops itself: strip-mined loops over 256-lane registers.

Both are freestanding C11 (math through compiler builtins) so that clang's VE target compiles
them without a VE sysroot, and both compile for the host too: that is how the emulation runs them.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

from sol.codegen import environment, render
from sol.errors import SolError
from sol.ir import Node, Value
from sol.lowering import CTYPES, GroupLowering, PointwiseStage, ctype, elementwise_renderer, numel
from sol.planner.plan import Group, GroupKind, Plan, Storage
from sol.roles import Source
from sol.sourcetext import comment_text
from sol_sxaurora import kernels, recurrent
from sol_sxaurora.libraries import is_static
from sol_sxaurora.vectorize import VectorCode, VectorOp, load, store

PACKAGE = "sol_sxaurora"
VARIANTS = ("vel", "ncc")
ENTRY = "network.c"
ALIGN = 64


@functools.cache
def elementwise_ops() -> frozenset[str]:
    """Element-wise ops the templates can generate (a macro in elementwise.j2 each)."""
    macros = environment(PACKAGE).get_template("elementwise.j2").module
    return frozenset(name for name in dir(macros) if not name.startswith("_") and name != "fn")


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _literal(x: Any, dtype: str) -> str:
    if dtype == "bool":
        return "1" if x else "0"
    if dtype.startswith("float"):
        single = dtype == "float32"
        if math.isnan(x):
            return "SOL_NANF" if single else "SOL_NAN"
        if math.isinf(x):
            return ("-" if x < 0 else "") + ("SOL_INFF" if single else "SOL_INF")
        return f"{float(x)!r}" + ("f" if single else "")
    return f"{int(x)}LL" if dtype == "int64" else str(int(x))


class NetworkRenderer:
    def __init__(self, plan: Plan, variant: str) -> None:
        if variant not in VARIANTS:
            raise SolError(f"ve: unknown code variant {variant!r}; variants are {', '.join(VARIANTS)}")
        self.plan = plan
        self.variant = variant
        env = environment(PACKAGE)
        self.scalar = elementwise_renderer(env)
        self.vector = VectorCode(env.get_template("vector.j2").module, self.scalar)
        self.ops = {v: env.get_template(f"ops_{v}.j2").module for v in VARIANTS}
        self.symbols = {v: f"v{i}" for i, v in enumerate(plan.graph.values())}
        self.prepared: list[kernels.Prepared] = []
        self.prep_offset = 0

    def sym(self, v: Value) -> str:
        return self.symbols[v]

    # --- memory ---------------------------------------------------------------------------
    def pointer(self, v: Value, in_create: bool = False) -> str:
        """C expression of ``v``'s device address (in a group function, or in sol_create where
        only parameters and constants exist)."""
        owner, slot = self.plan.memory.resolve(v)
        ct = ctype(owner)
        if slot.storage is Storage.PARAM:
            return f"((const {ct}*){'params' if in_create else 'net->params'}[{slot.index}])"
        if slot.storage is Storage.CONST:
            return f"K{slot.index}"
        if in_create:
            raise SolError(f"ve: {v} is needed at load time but is not a parameter")
        if slot.storage is Storage.INPUT:
            return f"((const {ct}*)in[{slot.index}])"
        if slot.storage is Storage.OUTPUT:
            return f"(({ct}*)out[{slot.index}])"
        return f"(({ct}*)(net->arena + {slot.index}))"

    def decl(self, v: Value) -> str:
        owner, slot = self.plan.memory.resolve(v)
        const = "const " if slot.storage in (Storage.INPUT, Storage.PARAM, Storage.CONST) else ""
        return f"{const}{ctype(owner)}* restrict {self.sym(v)} = {self.pointer(v)};"

    def prepare(self, v: Value, kind: str, dims: dict[str, int]) -> kernels.Prepared:
        static = is_static(v)
        p = kernels.Prepared(len(self.prepared), self.pointer(v, in_create=static), kind, dims, v.type.nbytes,
                             per_call=not static)
        self.prepared.append(p)
        return p

    # --- groups -----------------------------------------------------------------------------
    def comment(self, step: int, node: Node) -> str:
        """``// #step op <- where it came from``: the source is model text (module paths, file
        names), made harmless for a comment (no line break, backslash, comment end, trigraph)."""
        src = f" <- {comment_text(node.source)}" if node.source else ""
        return f"// #{step} {comment_text(node.op)}{src}"

    def title(self, g: Group) -> str:
        ops = ", ".join(f"#{i + 1} {n.op}" for i, n in enumerate(g.nodes))
        if g.kind is GroupKind.LIBRARY:
            return f"generated {g.anchor.op} kernel ({g.layer_class.value}) with fused epilogue: {ops}"
        assert g.kernel is not None
        over = "x".join(map(str, g.kernel.outer_shape)) or "1"
        return f"fused loop nest ({g.layer_class.value}), depth-first over {over}: {ops}"

    def _decls(self, g: Group) -> list[str]:
        return [self.decl(v) for v in dict.fromkeys(g.inputs + g.outputs)]

    def fused(self, g: Group) -> dict[str, Any]:
        lowered = GroupLowering(g, self.sym, self.scalar, self.comment).lower()
        outer_index = []
        for k in range(len(lowered.outer)):
            if lowered.outer[k] > 1:
                inner = numel(tuple(lowered.outer[k + 1:]))
                outer_index.append(f"const long o{k} = (o / {inner}) % {lowered.outer[k]};")
        stages = []
        for st in lowered.stages:
            if st.kind == "pointwise":
                stages.append(self._pointwise(st))
            else:
                stages.append({"kind": "op", "comment": st.comment, "code": self._op(st.op, st.s)})
        return {"kind": "fused", "label": g.label, "id": g.id, "title": self.title(g), "decls": self._decls(g),
                "outer_size": lowered.outer_size, "parallel": lowered.parallel_outer, "outer_index": outer_index,
                "locals": lowered.locals, "stages": stages}

    def _pointwise(self, st: PointwiseStage) -> dict[str, Any]:
        values = [a.value for a in st.loads + st.stores] + [op.node.output for op in st.ops]
        vectorize = self.variant == "vel" and all(v.dtype == "float32" for v in values)
        out: dict[str, Any] = {"kind": "pointwise", "loops": st.loops, "parallel": st.parallel, "work": st.work,
                               "vector": vectorize, "statements": st.statements}
        if vectorize:
            var = st.loops[-1].var
            lines = [load(a.reg, a.base, f"{a.offset} + {var} * {a.stride}" if a.stride else a.offset, a.stride)
                     for a in st.loads]
            ops = [VectorOp(op.node, op.out, op.args, op.comment) for op in st.ops]
            lines += self.vector.ops(ops, {a.reg for a in st.stores}, [a.reg for a in st.loads])
            lines += [store(a.reg, a.base, f"{a.offset} + {var} * {a.stride}" if a.stride else a.offset, a.stride)
                      for a in st.stores]
            out["statements"] = lines
        return out

    def _op(self, op: str, s: dict[str, Any]) -> str:
        s = dict(s)
        use_vel = self.variant == "vel" and s["T"] == "float"
        if op == "pool":
            kw, sw, dw, pl, width = s["kw"], s["sw"], s["dw"], s["pl"], s["W"]
            lo = -(-pl // sw)  # first output column whose window starts inside the input
            hi = (width - 1 - (kw - 1) * dw + pl) // sw + 1  # one past the last that ends inside
            s["owlo"], s["owhi"] = min(lo, s["OW"]), max(min(hi, s["OW"]), min(lo, s["OW"]))
        module = self.ops["vel" if use_vel else "ncc"]
        return str(getattr(module, op)(s))

    def library(self, g: Group) -> dict[str, Any]:
        anchor = g.anchor
        lane_axis = 1 if anchor.op in ("conv2d", "conv_transpose2d") else anchor.output.type.rank - 1
        epi = kernels.Epilogue(g, self.sym, self.comment, self.scalar,
                               self.vector if self.variant == "vel" else None, lane_axis)
        if anchor.op == "conv2d":
            w = anchor.inputs[1]
            o, cg, kh, kw = w.shape
            groups = anchor.attrs["groups"]
            prep = self.prepare(w, "conv", {"G": groups, "OG": o // groups, "CG": cg, "kh": kh, "kw": kw})
            s = kernels.conv_context(g, self.sym, prep, epi, self.variant)
        elif anchor.op == "conv_transpose2d":
            w = anchor.inputs[1]
            c, og, kh, kw = w.shape
            groups = anchor.attrs["groups"]
            prep = self.prepare(w, "deconv", {"G": groups, "OG": og, "CG": c // groups, "kh": kh, "kw": kw})
            s = kernels.deconv_context(g, self.sym, prep, epi, self.variant)
        elif anchor.op == "dense":
            w = anchor.inputs[1]
            prep = self.prepare(w, "dense", {"N": w.shape[0], "K": w.shape[1]})
            s = kernels.gemm_context(g, self.sym, prep, epi, self.variant)
        elif anchor.op == "matmul":
            prep = None
            s = kernels.gemm_context(g, self.sym, None, epi, self.variant)
        else:
            raise SolError(f"ve: no generated kernel for {anchor.op!r}")
        code = str(getattr(self.ops[self.variant], s["op"])(s))
        per_call = [prep] if prep is not None and prep.per_call else []
        return {"kind": "library", "label": g.label, "id": g.id, "title": self.title(g), "decls": self._decls(g),
                "comment": self.comment(1, anchor), "code": code, "per_call": per_call}

    def recurrent(self, g: Group) -> dict[str, Any]:
        """A loop over time (sol_sxaurora.recurrent); W_hh is prepared like a dense weight."""
        ctx = recurrent.context(self, g)
        module = environment(PACKAGE).get_template(f"recurrent_{self.variant}.j2").module
        k = g.recurrent
        assert k is not None
        prep = ctx["prep"]
        return {"kind": "recurrent", "label": g.label, "id": g.id, "decls": self._decls(g),
                "title": (f"sequential loop ({g.layer_class.value}) over {k.steps} steps: #1 {g.nodes[0].op}; "
                          f"per step h @ W_hh^T and one fused {k.cell} cell pass"),
                "comment": self.comment(1, g.nodes[0]), "code": str(module.recurrence(ctx)),  # type: ignore[attr-defined]
                "per_call": [prep] if prep.per_call else []}

    # --- network ----------------------------------------------------------------------------
    def render(self) -> Source:
        p = self.plan
        groups: list[dict[str, Any]] = []
        for g in p.groups:
            if g.kind is GroupKind.FUSED:
                groups.append(self.fused(g))
            elif g.kind is GroupKind.LIBRARY:
                groups.append(self.library(g))
            elif g.kind is GroupKind.RECURRENT:
                groups.append(self.recurrent(g))
        consts = []
        for i, c in enumerate(p.graph.consts):
            flat = np.asarray(c.data).reshape(-1)
            consts.append({"sym": f"K{i}", "ctype": CTYPES[c.dtype],
                           "literals": [_literal(x, c.dtype) for x in flat.tolist()] or ["0"]})
        prep_offsets, offset = [], _aligned(p.memory.arena_bytes)
        for prep in self.prepared:
            prep_offsets.append(offset)
            offset += _aligned(prep.nbytes)
        text = render(PACKAGE, "network.c.j2", name=p.graph.name, variant=self.variant, groups=groups,
                      consts=consts, num_params=len(p.graph.params), arena_bytes=p.memory.arena_bytes,
                      prepared=[{"p": prep, "offset": off} for prep, off in zip(self.prepared, prep_offsets)],
                      extra_bytes=offset)
        return Source({ENTRY: text}, entry=ENTRY,
                      meta={"variant": self.variant, "num_params": len(p.graph.params)})
