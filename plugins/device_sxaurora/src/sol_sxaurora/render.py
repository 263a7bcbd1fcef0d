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

import math
from typing import Any

from sol.plugin_api import CRenderer, Dialect, Group, OpStage, Plan, PointwiseStage, SolError, Source, Value
from sol.plugin_api import render_template as render
from sol.plugin_api import template_environment as environment
from sol_sxaurora import kernels, recurrent
from sol_sxaurora.libraries import is_static
from sol_sxaurora.vectorize import VectorCode, VectorOp, load, store

PACKAGE = "sol_sxaurora"
VARIANTS = ("vel", "ncc")
ENTRY = "network.c"
ALIGN = 64
VECTOR_LANES = 256


class VeDialect(Dialect):
    """Freestanding C11 for ncc and clang's VE target: math through the ``sol_<fn>[f]`` builtins
    and NaN/infinity through the ``SOL_NANF``/``SOL_INFF`` macros of network.c.j2 (no libc
    headers), NEC's ``ivdep`` on inner loops, OpenMP across the VE's cores."""

    name = "ve"
    vector_width = VECTOR_LANES
    inner_pragma = "#pragma _NEC ivdep"

    def math(self, fn: str, T: str) -> str:
        return f"sol_{fn}{'f' if T == 'float' else ''}"

    def infinity(self, T: str) -> str:
        return self.const(T, "SOL_INFF")

    def nan(self, T: str) -> str:
        return self.const(T, "SOL_NANF")

    def special_literal(self, x: float, T: str) -> str:
        single = T == "float"
        if math.isnan(x):
            return "SOL_NANF" if single else "SOL_NAN"
        return ("-" if x < 0 else "") + ("SOL_INFF" if single else "SOL_INF")


def _aligned(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


class NetworkRenderer(CRenderer):
    def __init__(self, plan: Plan, variant: str, dialect: VeDialect | None = None) -> None:
        if variant not in VARIANTS:
            raise SolError(f"ve: unknown code variant {variant!r}; variants are {', '.join(VARIANTS)}")
        super().__init__(plan, dialect or VeDialect())
        self.variant = variant
        env = environment(PACKAGE)
        self.scalar = self.dialect.elementwise
        self.vector = VectorCode(env.get_template("vector.j2").module, self.scalar)
        self.ops = {v: env.get_template(f"ops_{v}.j2").module for v in VARIANTS}
        self.prepared: list[kernels.Prepared] = []

    def prepare(self, v: Value, kind: str, dims: dict[str, int]) -> kernels.Prepared:
        static = is_static(v)
        p = kernels.Prepared(len(self.prepared), self.pointer(v, in_create=static), kind, dims, v.type.nbytes,
                             per_call=not static)
        self.prepared.append(p)
        return p

    # --- groups -----------------------------------------------------------------------------
    def library_title(self, g: Group, ops: str) -> str:
        return f"generated {g.anchor.op} kernel ({g.layer_class.value}) with fused epilogue: {ops}"

    def fused(self, g: Group) -> dict[str, Any]:
        ctx = super().fused(g)
        ctx["stages"] = [self._pointwise(st) if isinstance(st, PointwiseStage) else self._op(st)
                         for st in ctx["lowered"].stages]
        return ctx

    def _pointwise(self, st: PointwiseStage) -> dict[str, Any]:
        values = [a.value for a in st.loads + st.stores] + [op.node.output for op in st.ops]
        vectorize = self.variant == "vel" and all(v.dtype == "float32" for v in values)
        out: dict[str, Any] = {"kind": "pointwise", "loops": st.loops, "parallel": st.parallel, "work": st.work,
                               "vector": vectorize, "statements": st.statements,
                               "inner_pragma": self.dialect.inner_pragma}
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

    def _op(self, st: OpStage) -> dict[str, Any]:
        use_vel = self.variant == "vel" and st.record.T == "float"
        module = self.ops["vel" if use_vel else "ncc"]
        return {"kind": "op", "comment": st.comment, "code": str(getattr(module, st.op)(st.record))}

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
        return {"kind": "library", "label": g.label, "id": g.id, "title": self.title(g), "decls": self.decls(g),
                "comment": self.comment(1, anchor), "code": code, "per_call": per_call}

    def recurrent(self, g: Group) -> dict[str, Any]:
        """A loop over time (sol_sxaurora.recurrent); W_hh is prepared like a dense weight."""
        ctx = recurrent.context(self, g)
        module = environment(PACKAGE).get_template(f"recurrent_{self.variant}.j2").module
        k = g.recurrent
        assert k is not None
        prep = ctx["prep"]
        return {"kind": "recurrent", "label": g.label, "id": g.id, "decls": self.decls(g),
                "title": (f"sequential loop ({g.layer_class.value}) over {k.steps} steps: #1 {g.nodes[0].op}; "
                          f"per step h @ W_hh^T and one fused {k.cell} cell pass"),
                "comment": self.comment(1, g.nodes[0]), "code": str(module.recurrence(ctx)),  # type: ignore[attr-defined]
                "per_call": [prep] if prep.per_call else []}

    # --- network ----------------------------------------------------------------------------
    def render(self) -> Source:
        p = self.plan
        groups = self.groups()
        consts = self.consts()
        prep_offsets, offset = [], _aligned(p.memory.arena_bytes)
        for prep in self.prepared:
            prep_offsets.append(offset)
            offset += _aligned(prep.nbytes)
        text = render(PACKAGE, "network.c.j2", name=p.graph.name, variant=self.variant, groups=groups,
                      consts=consts, num_params=len(p.graph.params), arena_bytes=p.memory.arena_bytes,
                      prepared=[{"p": prep, "offset": off} for prep, off in zip(self.prepared, prep_offsets)],
                      extra_bytes=offset, helpers=self.helpers())
        return Source({ENTRY: text}, entry=ENTRY,
                      meta={"variant": self.variant, "num_params": len(p.graph.params)})
