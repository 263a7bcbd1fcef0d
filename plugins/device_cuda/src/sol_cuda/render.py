"""Plan -> one CUDA C++ translation unit of kernels (jinja2 templates in ``sol_cuda/templates``),
the third dialect of core's C-family generator (:mod:`sol.lowering`), and the launch list that
runs them.

How a plan maps onto the GPU (the seed's CUDA slide):

* a FUSED group is one ``__global__`` kernel; its outer, depth-first loop (batch x channel
  planes) becomes the grid, one block per iteration (``o = blockIdx.x``). The group's
  per-iteration intermediates (``LoweredGroup.locals``) are ``__shared__`` arrays, so a conv
  -> bias -> ReLU -> pool chain keeps its plane on the SM. Each stage's loops run over the
  block's threads (one flat counter, strided by ``blockDim.x``), and a ``__syncthreads()``
  separates stages, since a stage reads what the one before wrote;
* a group that is one pointwise stage and nothing else (no outer loop) spreads over the whole
  grid instead: a grid-stride loop over every element;
* op stages (pooling, softmax, reductions, copies, gathers ...) run over the block's threads
  with this plugin's op macros (``templates/ops.j2``, one thread per output element or row,
  block reductions where a whole row is one output); an op without a CUDA macro runs the
  generator's shipped loops on the block's first thread (correct, slow: the kernel's comment
  says ``serial``);
* LIBRARY groups of the ``cuda-kernels`` backend (conv2d, conv_transpose2d, dense, matmul:
  :mod:`sol_cuda.libraries`) are kernels with one thread per output element over a grid, their
  element-wise epilogue applied before the store.

Model text never reaches the source except through comments (:meth:`CRenderer.comment`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import numpy as np

from sol.plugin_api import (
    BaseFields,
    CRenderer,
    Dialect,
    Group,
    OpStage,
    OuterLoop,
    Plan,
    PointwiseStage,
    SolError,
    Source,
    Storage,
    Value,
    contiguous_strides,
    ctype,
    numel,
    op_registry,
    share_identical_bodies,
)
from sol.plugin_api import render_template as render
from sol.plugin_api import template_environment as environment

PACKAGE = "sol_cuda"
ENTRY = "network.cu"
THREADS = 256  # threads per block on a GPU: 8 warps, enough to hide latency at one block per SM pass
SHARED_BYTES = 48 * 1024  # static __shared__ memory a block may use without opting in
# The planner's budget for a group's per-block intermediates: the rest is for block reductions
# (two buffers of THREADS doubles at most in one group).
LOCAL_BYTES = SHARED_BYTES - 2 * THREADS * 8
MAX_GRID = 1 << 20  # grid-stride loops cap the grid: a block then takes several chunks
INLINE_CONST_MAX = 64  # constants up to this many elements are literals in the source
# Op macros of templates/ops.j2: each spreads its work over threads (sol_tid / sol_nthreads).
PARALLEL_OPS = frozenset({"pool", "adaptive_avg_pool2d", "softmax", "log_softmax", "reduce", "reduce_select",
                          "argreduce", "concat", "transpose", "pad", "gather", "conv2d", "conv_transpose2d",
                          "dense", "matmul"})
# Shipped macros whose outermost loop writes disjoint outputs (the generator marks it with the
# dialect's parallel pragma): that loop is spread over the threads, as the marker says.
_MARKER = "#pragma sol_threads"
_MARKED_LOOP = re.compile(r"^(\s*)for \(long (\w+) = 0; \2 < ([^;]+); \+\+\2\)(.*)$")


class CudaDialect(Dialect):
    """CUDA C++ for NVRTC: C casts and math names (the CUDA math API spells them as C99 does),
    ``__restrict__``, NaN/infinity through the prelude's macros, no OpenMP. The parallel pragma
    is a marker this renderer turns into a thread-strided loop (:func:`spread_marked_loops`)."""

    name = "cuda"
    restrict = "__restrict__"
    vector_width = 32  # a warp: the planner's hint for how wide a contiguous inner run pays
    min_fn, max_fn = "SOL_MIN", "SOL_MAX"
    true, false = "true", "false"
    inner_pragma = ""
    parallel_pragma = _MARKER
    function = "static __device__ inline"
    linalg_errors = True

    def infinity(self, T: str) -> str:
        return self.const(T, "SOL_INF")

    def nan(self, T: str) -> str:
        return self.const(T, "SOL_NAN")

    def lowest(self, T: str) -> str:
        return self.const(T, "-SOL_FLT_MAX" if T == "float" else "-SOL_DBL_MAX")

    def special_literal(self, x: float, T: str) -> str:
        if math.isnan(x):
            return self.nan(T)
        return f"{'-' if x < 0 else ''}{self.infinity(T)}"

    def outer_loop(self, loop: OuterLoop) -> list[str]:
        # The outer loop is the grid: one block per iteration (the launch has loop.extent blocks).
        return ["{", "  const long o = blockIdx.x;"]


def spread_marked_loops(code: str, tid: str = "sol_tid", nthreads: str = "sol_nthreads") -> tuple[str, bool]:
    """``code`` with each loop under the parallel marker strided over the threads
    (``for (long i = sol_tid; i < n; i += sol_nthreads)``), and whether it had any."""
    lines = code.split("\n")
    out, found = [], False
    i = 0
    while i < len(lines):
        if lines[i].strip() == _MARKER:
            m = _MARKED_LOOP.match(lines[i + 1]) if i + 1 < len(lines) else None
            if m is None:
                raise SolError(f"cuda: a parallel marker above something other than a counted loop: {lines[i + 1]!r}")
            indent, var, extent, rest = m.groups()
            out.append(f"{indent}for (long {var} = {tid}; {var} < {extent}; {var} += {nthreads}){rest}")
            found = True
            i += 2
            continue
        out.append(lines[i])
        i += 1
    return "\n".join(out), found


@dataclass
class Launch:
    """One kernel launch of the forward pass: kernel name, blocks, threads per block."""

    kernel: str
    grid: int
    block: int
    label: str


class NetworkRenderer(CRenderer):
    """``threads``: threads per block (:data:`THREADS` on a GPU; the host emulation uses fewer,
    every kernel being written for any power of two)."""

    net = "net->"

    def __init__(self, plan: Plan, dialect: CudaDialect | None = None, threads: int = THREADS) -> None:
        super().__init__(plan, dialect or CudaDialect())
        if threads < 1 or threads & (threads - 1):
            raise SolError(f"cuda: threads per block must be a power of two, not {threads}")
        self.threads = threads
        env = environment(PACKAGE)
        ops = env.get_template("ops.j2")
        # Op macros inside a fused group (a block owns its outputs) and in LIBRARY kernels (the grid).
        self.block_ops = ops.make_module({"dialect": self.dialect, "block": True, "threads": threads})
        self.grid_ops = ops.make_module({"dialect": self.dialect, "block": False, "threads": threads})
        self.shipped = env.get_template("sol/ops.j2").make_module({"dialect": self.dialect})
        self.launches: list[Launch] = []

    # --- memory ---------------------------------------------------------------------------
    def pointer(self, v: Value, in_create: bool = False) -> str:
        # Inputs and outputs come with each launch (the kernel's ``io`` argument, by value).
        owner, slot = self.plan.memory.resolve(v)
        if slot.storage in (Storage.INPUT, Storage.OUTPUT) and not in_create:
            const = "const " if slot.storage is Storage.INPUT else ""
            table = "in" if slot.storage is Storage.INPUT else "out"
            return f"(({const}{ctype(owner)}*)io.{table}[{slot.index}])"
        return super().pointer(v, in_create)

    def inline_const(self, index: int) -> bool:
        # Small finite constants are literals in the source; others come at load time after the
        # parameters: a NaN or infinity has no constant spelling a __device__ initializer takes
        # (__int_as_float is not constexpr), and large arrays would bloat the source.
        c = self.plan.graph.consts[index]
        if c.type.numel > INLINE_CONST_MAX:
            return False
        data = np.asarray(c.data)
        return not (data.dtype.kind == "f" and not np.isfinite(data).all())

    def const_pointer(self, index: int, ct: str, params: str) -> str:
        if self.inline_const(index):
            return f"K{index}"
        return self.dialect.pointer_cast(f"const {ct}*", f"{params}[{len(self.plan.graph.params) + index}]")

    # --- groups ---------------------------------------------------------------------------
    def _op_code(self, st: OpStage) -> tuple[str, bool]:
        """An op stage's code and whether it is spread over threads (else: the first thread runs it)."""
        if st.op in PARALLEL_OPS:
            return str(getattr(self.block_ops, st.op)(st.record)), True
        macro = getattr(self.shipped, st.op, None)
        if macro is None:
            raise SolError(f"cuda: no template for op macro {st.op!r}")
        return spread_marked_loops(str(macro(st.record)))

    def fused(self, g: Group) -> dict[str, Any]:
        ctx = super().fused(g)
        lowered = ctx["lowered"]
        whole_grid = (lowered.outer_size == 1 and len(lowered.stages) == 1
                      and isinstance(lowered.stages[0], PointwiseStage) and not lowered.locals)
        stages: list[dict[str, Any]] = []
        for st in lowered.stages:
            if isinstance(st, PointwiseStage):
                stages.append({"kind": "pointwise", "loops": st.loops, "statements": st.statements,
                               "extents": _divisors([lp.extent for lp in st.loops]),
                               "total": numel(tuple(lp.extent for lp in st.loops))})
            else:
                code, spread = self._op_code(st)
                stages.append({"kind": "op", "comment": st.comment, "code": code, "serial": not spread})
        # Static shared memory: the group's intermediates plus one reduction buffer per block
        # reduction (templates/ops.j2 block_fold); more than 48 KiB is a ptxas error.
        shared = sum(n * _SIZES[ct] for ct, _, n in lowered.locals)
        shared += sum(s["code"].count("sol_part[sol_tid] = acc") for s in stages if s["kind"] == "op") \
            * self.threads * 8
        if shared > SHARED_BYTES:
            raise SolError(f"cuda: group {g.label} needs {shared} bytes of shared memory per block, more than "
                           f"{SHARED_BYTES} (the planner's local_bytes, LOCAL_BYTES, should have split it)")
        if whole_grid:
            total = int(stages[0]["total"])
            grid = max(1, min(-(-total // self.threads), MAX_GRID))
        else:
            grid = lowered.outer_size
        kernel = f"sol_{g.label}"
        self.launches.append(Launch(kernel, grid, self.threads, g.label))
        ctx.update(kernel=kernel, stages=stages, whole_grid=whole_grid, grid=grid,
                   serial=any(s["kind"] == "op" and s["serial"] for s in stages))
        return ctx

    def library(self, g: Group) -> dict[str, Any]:
        """A compute-bound op (sol_cuda.libraries) with its epilogue: the op's reference record
        (sizes and operands, :mod:`sol.lowering.compute`), one thread per output element."""
        node = g.anchor
        lowering = op_registry.get(node.op, node).c_reference
        if lowering is None:
            raise SolError(f"cuda: no kernel for library op {node.op!r}")
        x, y = node.inputs[0], node.outputs[0]
        name, record = lowering(self.sym, node, BaseFields(op=node.op, T=ctype(y), x=self.sym(x), y=self.sym(y)))
        if name not in PARALLEL_OPS:
            raise SolError(f"cuda: no kernel for library op {name!r}")
        work = numel(y.shape)
        grid = max(1, min(-(-work // self.threads), MAX_GRID))
        kernel = f"sol_{g.label}"
        self.launches.append(Launch(kernel, grid, self.threads, g.label))
        code = str(getattr(self.grid_ops, name)(record, self.epilogue(g)))
        return {"kind": "library", "label": g.label, "id": g.id, "title": self.title(g), "decls": self.decls(g),
                "comment": self.comment(1, node), "kernel": kernel, "code": code, "grid": grid, "serial": False}

    def library_title(self, g: Group, ops: str) -> str:
        return f"generated {g.anchor.op} kernel ({g.layer_class.value}), one thread per output: {ops}"

    def epilogue(self, g: Group) -> list[str]:
        """Statements storing output element ``t`` of a LIBRARY group from ``acc`` (the op's
        double accumulator): the result converted, then each epilogue op in registers (its other
        operands read through broadcast strides of the output's index), one store."""
        anchor, d = g.anchor, self.dialect
        out = anchor.output
        T = ctype(out)
        regs = {out: "q0"}
        lines = [f"const {T} q0 = {d.convert(T, 'acc')};"]
        divisors = _divisors(list(out.shape))
        for i, node in enumerate(g.epilogue):
            args = [regs.get(v) or self._element(v, out.shape, divisors) for v in node.inputs]
            reg = f"q{i + 1}"
            lines.append(f"const {ctype(node.output)} {reg} = {d.elementwise(node, args, ctype(node.output))};  "
                         f"{self.comment(i + 2, node)}")
            regs[node.output] = reg
        result = g.nodes[-1].output
        lines.append(f"{self.sym(result)}[t] = {regs[result]};")
        return lines

    def _element(self, v: Value, shape: tuple[int, ...], divisors: list[tuple[int, int]]) -> str:
        """``v``'s element at output element ``t`` (``v`` broadcasts against ``shape``)."""
        strides = contiguous_strides(v.shape, len(shape))
        terms = []
        for (div, extent), stride in zip(divisors, strides):
            if stride == 0 or extent == 1:
                continue
            at = "t" if div == 1 else f"t / {div}"
            if div * extent < numel(shape):
                at = f"({at}) % {extent}"
            terms.append(at if stride == 1 else f"({at}) * {stride}")
        return f"{self.sym(v)}[{' + '.join(terms) or '0'}]"

    def recurrent(self, g: Group) -> dict[str, Any]:
        """A loop over time as one kernel of one block (templates/recurrent.j2)."""
        k = g.recurrent
        assert k is not None
        if k.y.dtype not in ("float32", "float64"):
            raise SolError(f"cuda: {g.nodes[0].op} supports float32 and float64, not {k.y.dtype}")
        r = {"label": g.label, "cell": k.cell, "comment": self.comment(1, g.nodes[0]), "T": ctype(k.y),
             "steps": k.steps, "N": k.batch, "H": k.hidden, "GH": k.gates * k.hidden, "reverse": k.reverse,
             "last": 0 if k.reverse else k.steps - 1, "scratch": self.plan.memory.scratch[g.id],
             "gx": self.sym(k.gx), "h0": self.sym(k.h0), "c0": self.sym(k.c0) if k.c0 is not None else "",
             "w_hh": self.sym(k.w_hh), "b_hh": self.sym(k.b_hh) if k.b_hh is not None else "",
             "y": self.sym(k.y), "h_n": self.sym(k.h_n), "c_n": self.sym(k.c_n) if k.c_n is not None else "",
             "tanh": "tanh"}
        kernel = f"sol_{g.label}"
        self.launches.append(Launch(kernel, 1, self.threads, g.label))
        code = str(environment(PACKAGE).get_template("recurrent.j2").module.body(r))  # type: ignore[attr-defined]
        return {"kind": "recurrent", "label": g.label, "id": g.id, "kernel": kernel, "decls": self.decls(g),
                "title": (f"sequential loop ({g.layer_class.value}) over {k.steps} steps in one block: "
                          f"#1 {g.nodes[0].op}; per step h @ W_hh^T and one fused {k.cell} cell pass"),
                "comment": r["comment"], "code": code, "grid": 1, "serial": False}

    # --- network ----------------------------------------------------------------------------
    def render(self) -> Source:
        p = self.plan
        groups = self.groups()
        body = environment(PACKAGE).get_template("fused.j2").module.body  # type: ignore[attr-defined]
        for g in groups:
            if g["kind"] == "fused":
                g["body"] = str(body(g)).rstrip("\n")
        # Repeated blocks (a transformer's layers) compile once: one __noinline__ device function
        # per distinct body, which NVRTC's time and the module's size scale with.
        shared = share_identical_bodies(groups)
        text = render(PACKAGE, "network.cu.j2", name=p.graph.name, groups=groups, shared=shared,
                      consts=self.consts(),
                      num_params=len(p.graph.params) + len(p.graph.consts), num_inputs=len(p.graph.inputs),
                      num_outputs=len(p.graph.outputs), threads=self.threads, helpers=self.helpers())
        checks = "sol_index_error(net," in text or "sol_linalg_error(net," in text
        launches = [{"kernel": ln.kernel, "grid": ln.grid, "block": ln.block, "label": ln.label}
                    for ln in self.launches]
        return Source({ENTRY: text}, entry=ENTRY,
                      meta={"launches": launches, "arena_bytes": p.memory.arena_bytes, "threads": self.threads,
                            "num_params": len(p.graph.params), "checks_errors": checks,
                            "groups": {str(g["id"]): (g["label"], g["title"]) for g in groups}})


_SIZES = {"float": 4, "double": 8, "int64_t": 8, "int32_t": 4, "int8_t": 1, "uint8_t": 1, "bool": 1}


def _divisors(extents: list[int]) -> list[tuple[int, int]]:
    """(divisor, extent) of each loop counter from one flat counter, outermost first."""
    out, acc = [], 1
    for e in reversed(extents):
        out.append((acc, e))
        acc *= e
    return list(reversed(out))
