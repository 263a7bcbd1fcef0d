"""RECURRENT groups on x86: the template context for templates/recurrent.j2.

The per-step product ``h_prev @ W_hh^T`` is small (batch rows): at batch 1 it is a matrix-vector
product, bound by reading W_hh (which stays in L2 across steps). Two implementations:

* ``loop``: a generated loop, parallel over W_hh's rows, inside ONE OpenMP region for the whole
  sequence (two barriers per step), each row's dot products vectorized (``omp simd reduction``);
* ``onednn``: a oneDNN matmul primitive created once at load time with W_hh reordered into its
  preferred layout, called once per step.

Measured (benchmark in issue #5's report: one nn.LSTM(256, 256) layer, 35 steps, best of 25
calls, on this project's 2-core AVX2 machine while other jobs ran, so only the ratios mean much):

    batch  threads   loop      oneDNN
    1      1         2.11 ms   2.17 ms
    1      2         1.16 ms   1.27 ms
    8      1        28.8 ms   24.3 ms
    32     1       102.7 ms   77.4 ms

At batch 1 the product is a matrix-vector product bound by reading W_hh (1 MiB, from L2); the
generated loop needs no per-call dispatch and shares one parallel region with the cell pass,
which edges out oneDNN's call overhead (a primitive execution and a stream wait per step, then a
parallel region of its own for the cell). From batch 2 on, oneDNN's blocked GEMM reuses each W_hh
element across rows where the loop's row-wise dot products re-read it per row, and wins.
``optimize(..., x86_rnn_gemm="loop"|"onednn")`` overrides the choice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sol.plugin_api import Group, SolError, Storage, ctype

if TYPE_CHECKING:
    from sol_x86.render import NetworkRenderer

ONEDNN_MIN_BATCH = 2
GEMMS = ("loop", "onednn")


def choose_gemm(batch: int, options: dict[str, Any], onednn_available: bool) -> str:
    forced = options.get("x86_rnn_gemm")
    if forced is not None:
        if forced not in GEMMS:
            raise SolError(f"x86_rnn_gemm must be one of {', '.join(GEMMS)}, got {forced!r}")
        if forced == "onednn" and not onednn_available:
            raise SolError("x86_rnn_gemm='onednn' needs oneDNN and W_hh, b_hh as float32 weights")
        return str(forced)
    return "onednn" if onednn_available and batch >= ONEDNN_MIN_BATCH else "loop"


def context(r: NetworkRenderer, g: Group, onednn_available: bool, parallel_min_work: int) -> dict[str, Any]:
    k = g.recurrent
    assert k is not None
    if k.y.dtype not in ("float32", "float64"):
        raise SolError(f"x86: {g.nodes[0].op} supports float32 and float64, not {k.y.dtype}")
    static = all(v is None or r.plan.memory.resolve(v)[1].storage in (Storage.PARAM, Storage.CONST)
                 for v in (k.w_hh, k.b_hh))  # oneDNN takes them once, at load time
    gemm = choose_gemm(k.batch, r.plan.options, onednn_available and static and k.y.dtype == "float32")
    gh = k.gates * k.hidden
    ctx: dict[str, Any] = {
        "kind": "recurrent", "label": g.label, "id": g.id, "cell": k.cell, "gemm": gemm,
        "title": (f"sequential loop ({g.layer_class.value}) over {k.steps} steps: #1 {g.nodes[0].op}; per step "
                  f"h @ W_hh^T ({'oneDNN matmul' if gemm == 'onednn' else 'generated loop'}) and one fused "
                  f"{k.cell} cell pass"),
        "comment": r.comment(1, g.nodes[0]), "T": ctype(k.y), "steps": k.steps, "N": k.batch, "H": k.hidden,
        "GH": gh, "reverse": k.reverse, "last": 0 if k.reverse else k.steps - 1,
        "work": k.batch * gh * k.hidden, "parallel_min_work": parallel_min_work,
        "scratch": r.plan.memory.scratch[g.id],
        "decls": [r.decl(v) for v in dict.fromkeys(g.inputs + g.outputs)],
        "gx": r.sym(k.gx), "h0": r.sym(k.h0), "c0": r.sym(k.c0) if k.c0 is not None else "",
        "w_hh": r.sym(k.w_hh), "b_hh": r.sym(k.b_hh) if k.b_hh is not None else "",
        "y": r.sym(k.y), "h_n": r.sym(k.h_n), "c_n": r.sym(k.c_n) if k.c_n is not None else "",
        "init": "",
    }
    if gemm == "onednn":
        bias = r.pointer(k.b_hh, in_create=True) if k.b_hh is not None else "nullptr"
        ctx["init"] = (f"net->op{g.id}.init({k.batch}, {k.hidden}, {gh}, {r.pointer(k.w_hh, True)}, {bias}, {{}}, "
                       f"net->scratch);")
    return ctx
