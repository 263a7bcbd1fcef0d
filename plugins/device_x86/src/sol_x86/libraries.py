"""oneDNN as sol's library backend on x86: which ops it runs and which epilogues it absorbs.

The same :func:`post_op` decides both questions the planner asks (``absorbs``) and what the
renderer emits, so the two can never disagree. Some post-ops are *finite-only*: oneDNN computes
them as the frameworks do for finite operands only (clip drops NaN). They are fused only where
:mod:`sol.passes.finite` proves the operand finite given finite graph inputs and parameters; the
device checks that premise at run time and runs an exact variant of the network where it fails.
"""

from __future__ import annotations

import functools
import math
import os
import re
import sys
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

from sol.plugin_api import Availability, Backend, Graph, Node, Value, ValueKind, may_be_nonfinite

# sol op -> (oneDNN eltwise algorithm, alpha, beta); attribute-dependent ones are in _eltwise().
# These agree with the frameworks at NaN and infinity too. relu (slope 0), which oneDNN computes
# as max(x, 0), is among them because the runtime library appends it as NaN-keeping elu + linear
# steps (sol_x86_onednn.cpp, nan_safe_relu), unless the step is marked finite-only.
_ELTWISE = {
    "relu": ("eltwise_relu", 0.0, 0.0),
    "sigmoid": ("eltwise_logistic", 0.0, 0.0),
    "tanh": ("eltwise_tanh", 0.0, 0.0),
    "log": ("eltwise_log", 0.0, 0.0),
    "sqrt": ("eltwise_sqrt", 0.0, 0.0),
    "abs": ("eltwise_abs", 0.0, 0.0),
    "neg": ("eltwise_linear", -1.0, 0.0),
    "silu": ("eltwise_swish", 1.0, 0.0),
    "hardswish": ("eltwise_hardswish", 1.0 / 6.0, 0.5),
}
# Finite-only steps: oneDNN's kernels differ from the frameworks only where the operand is NaN or
# infinite (measured, oneDNN 2023.2 and 3.2; the upstream JIT code is the same): clip computes
# max(x, lo) then min(x, hi), so NaN becomes the lower bound (relu6, hardtanh, clamp); exp gives
# +inf for NaN, hardsigmoid 1; binary max/min drop a NaN of the result so far. Also leaky_relu with
# slope 0 (0 * -inf is NaN in the frameworks) and gelu's erf form where gelu(+inf) is +inf (oneDNN:
# NaN). Each is fused only where sol.passes.finite proves its operands finite given finite graph
# inputs and parameters; the x86 device checks that premise when it runs (device.py, FiniteGuard).
_FINITE_ONLY_ELTWISE = {
    "exp": ("eltwise_exp", 0.0, 0.0),
    "hardsigmoid": ("eltwise_hardsigmoid", 1.0 / 6.0, 0.5),
}
# Exact everywhere, and faster as a finite-only step where the operand is finite: relu as oneDNN's
# max(x, 0) instead of the NaN-keeping elu + linear (an exp per negative element).
_FASTER_IF_FINITE = ("relu",)
_BINARY = {"add": "binary_add", "sub": "binary_sub", "mul": "binary_mul", "div": "binary_div",
           "maximum": "binary_max", "minimum": "binary_min"}
_FINITE_ONLY_BINARY = ("maximum", "minimum")
_COMMUTATIVE = {"add", "mul", "maximum", "minimum"}
# NCHW ops whose channel axis is 1 (post-op operands broadcast per channel there).
_SPATIAL = ("conv2d", "conv_transpose2d")
# A convolution on channels-last activations (sol.planner.layout): its channel axis is the last
# in sol's shapes, while oneDNN still sees (N, C, H, W) dims with a channels-last memory layout.
_CONV_NHWC = "conv2d_nhwc"
_CONV_BACKWARD = ("conv2d_backward_data", "conv2d_backward_weight")


@dataclass(frozen=True)
class PostOp:
    """One epilogue step of a library call.

    ``kind``: "bias" (the library's own bias argument), "eltwise", "binary" (an operand
    broadcast per channel or per tensor) or "sum" (add a full-size tensor: residual connections).
    ``finite_only``: the step computes the op exactly only where its operands are finite (see
    _FINITE_ONLY_ELTWISE); the planner fused it because they are, given finite inputs.
    """

    kind: str
    alg: str = ""
    alpha: float = 0.0
    beta: float = 0.0
    operand: Value | None = None
    dims: tuple[int, ...] = ()
    finite_only: bool = False


def _eltwise(node: Node) -> PostOp | None:
    if node.op in _ELTWISE:
        alg, alpha, beta = _ELTWISE[node.op]
        return PostOp("eltwise", alg, alpha, beta)
    if node.op in _FINITE_ONLY_ELTWISE:
        alg, alpha, beta = _FINITE_ONLY_ELTWISE[node.op]
        return PostOp("eltwise", alg, alpha, beta, finite_only=True)
    a = node.attrs
    if node.op == "leaky_relu":
        # Slope 0 is not relu at -inf: 0 * -inf is NaN (PyTorch's leaky_relu(-inf, 0)).
        return PostOp("eltwise", "eltwise_relu", a["alpha"], 0.0, finite_only=a["alpha"] == 0)
    if node.op == "clamp":
        lo = -math.inf if a["min"] is None else a["min"]
        hi = math.inf if a["max"] is None else a["max"]
        if math.isnan(lo) or math.isnan(hi):
            return None  # clamp to a NaN bound leaves x; clip would not
        return PostOp("eltwise", "eltwise_clip", lo, hi, finite_only=True)
    if node.op == "gelu" and a["approximate"] == "tanh":
        return PostOp("eltwise", "eltwise_gelu_tanh")
    if node.op == "gelu":  # oneDNN's erf form gives NaN at +inf, as PyTorch does (inf_to_nan)
        return PostOp("eltwise", "eltwise_gelu_erf", finite_only=not a["inf_to_nan"])
    return None


def library_dims(anchor: Node) -> tuple[int, ...]:
    """The anchor's output as the library sees it (dense folds leading dims into rows)."""
    shape = anchor.output.shape
    if anchor.op == "dense":
        rows = 1
        for d in shape[:-1]:
            rows *= d
        return (rows, shape[-1])
    if anchor.op == _CONV_NHWC and anchor.attrs["output_nhwc"]:
        n, h, w, c = shape
        return (n, c, h, w)
    return shape


def _static(v: Value) -> bool:
    """A parameter or constant, or a reshape of one (the same memory: a channels-last region
    reads a convolution's (C, 1, 1) bias as (1, 1, 1, C), sol.planner.layout)."""
    while v.producer is not None and v.producer.op == "reshape":
        v = v.producer.inputs[0]
    return v.kind in (ValueKind.PARAM, ValueKind.CONST)


def post_op(anchor: Node, chain: list[Node], node: Node, graph: Graph, allow_finite_only: bool = True) -> PostOp | None:
    """How ``node`` (reading the result of ``anchor`` and ``chain`` in ``graph``) runs as a oneDNN
    post-op, or None if it cannot. ``allow_finite_only``: whether a finite-only step may be used
    where sol.passes.finite proves its operands finite (False: the exact variant, see
    OneDNNBackend.exact); relu then becomes one too (_FASTER_IF_FINITE)."""
    step = _post_op(anchor, chain, node)
    if step is None or not (step.finite_only or node.op in _FASTER_IF_FINITE):
        return step
    finite = allow_finite_only and not may_be_nonfinite(node.inputs, graph)
    if node.op in _FASTER_IF_FINITE:
        return replace(step, finite_only=True) if finite else step
    return step if finite else None


def _post_op(anchor: Node, chain: list[Node], node: Node) -> PostOp | None:
    if node.output.dtype != "float32" or node.output.shape != anchor.output.shape:
        return None
    current = (chain[-1] if chain else anchor).output
    step = _eltwise(node)
    if step is not None:
        return step
    if node.op not in _BINARY or len(node.inputs) != 2:
        return None
    if node.inputs[0] is current:
        other = node.inputs[1]
    elif node.op in _COMMUTATIVE and node.inputs[1] is current:
        other = node.inputs[0]
    else:
        return None  # e.g. c - x: the chain value must be the left operand
    if other is current or other.dtype != "float32":
        return None
    out = anchor.output.shape
    rank = len(out)
    padded = (1,) * (rank - other.type.rank) + other.shape
    if len(padded) != rank:
        return None
    channel = 1 if anchor.op in _SPATIAL or (anchor.op == _CONV_NHWC and not anchor.attrs["output_nhwc"]) else rank - 1
    dims = library_dims(anchor)
    per_channel = (anchor.op != "matmul" and padded[channel] == out[channel]
                   and all(d == 1 for i, d in enumerate(padded) if i != channel))
    if per_channel and node.op == "add" and not chain and _static(other):
        return PostOp("bias", operand=other)
    if padded == out:
        if node.op == "add" and not any(s.kind == "sum" for s in _steps(anchor, chain)):
            return PostOp("sum", operand=other)
        return None  # a full-size binary post-op falls back to oneDNN's reference code
    finite_only = node.op in _FINITE_ONLY_BINARY
    if all(d == 1 for d in padded):
        return PostOp("binary", _BINARY[node.op], operand=other, dims=(1,) * len(dims), finite_only=finite_only)
    if not per_channel:
        return None
    bdims = [1] * len(dims)
    bdims[1 if anchor.op in (*_SPATIAL, _CONV_NHWC) else len(dims) - 1] = out[channel]
    return PostOp("binary", _BINARY[node.op], operand=other, dims=tuple(bdims), finite_only=finite_only)


def _steps(anchor: Node, chain: list[Node]) -> list[PostOp]:
    out = []
    for i, n in enumerate(chain):
        step = _post_op(anchor, chain[:i], n)
        assert step is not None, f"{n.op} was absorbed but is not a post-op"
        out.append(step)
    return out


def epilogue(anchor: Node, chain: list[Node], graph: Graph, allow_finite_only: bool = True) -> list[PostOp]:
    """The post-ops of a library group, in order (used by the renderer), as ``absorbs`` decided
    them: ``allow_finite_only`` as the backend that planned the group had it (False:
    OneDNNBackend.exact)."""
    steps = []
    for i, n in enumerate(chain):
        step = post_op(anchor, chain[:i], n, graph, allow_finite_only)
        assert step is not None, f"{n.op} was absorbed but is not a post-op"
        steps.append(step)
    return steps


def finite_premise(chain: list[Node], steps: list[PostOp]) -> list[Value]:
    """The operands of a library group's finite-only steps (``steps``: its ``epilogue``): the
    values its result is exact for only while they are finite (the device checks what they
    depend on when it runs)."""
    return [v for n, step in zip(chain, steps) if step.finite_only for v in n.inputs]


@dataclass(frozen=True)
class OneDNNInstall:
    include: Path
    lib: Path
    version: str


def _dist_file(dist: str, suffix: str) -> Path | None:
    try:
        files = metadata.files(dist) or []
    except metadata.PackageNotFoundError:
        return None
    for f in files:
        if str(f).endswith(suffix) and Path(str(f)).name == Path(suffix).name:
            return Path(str(f.locate())).resolve()
    return None


@functools.cache
def find_onednn() -> OneDNNInstall | None:
    """oneDNN's headers and library: ``$SOL_ONEDNN_ROOT``, else the PyPI wheels
    (onednn-devel-cpu-gomp + onednn-cpu-gomp, or onednn-devel + onednn), else ``sys.prefix``."""
    chosen = os.environ.get("SOL_ONEDNN_ROOT")
    if chosen:  # the user's choice wins over the wheels (it was ignored while wheels were installed)
        return _at_root(Path(chosen))
    for devel, runtime in (("onednn-devel-cpu-gomp", "onednn-cpu-gomp"), ("onednn-devel", "onednn")):
        header = _dist_file(devel, "oneapi/dnnl/dnnl.hpp")
        lib = _dist_file(runtime, "libdnnl.so")
        if header and lib:
            return OneDNNInstall(header.parents[2], lib.parent, metadata.version(runtime))
    return _at_root(Path(sys.prefix))


def _at_root(root: Path) -> OneDNNInstall | None:
    """oneDNN installed under ``root`` (include/, lib/), its version from its own header."""
    header = root / "include/oneapi/dnnl/dnnl.hpp"
    if not header.exists() or not (root / "lib/libdnnl.so").exists():
        return None
    try:
        text = (root / "include/oneapi/dnnl/dnnl_version.h").read_text()
        parts = [re.search(rf"#define DNNL_VERSION_{k}\s+(\d+)", text) for k in ("MAJOR", "MINOR", "PATCH")]
        version = ".".join(m.group(1) for m in parts if m) if all(parts) else "unknown"
    except OSError:
        version = "unknown"
    return OneDNNInstall(root / "include", root / "lib", version)


class OneDNNBackend(Backend):
    """Convolution, dense and matmul through oneDNN, with element-wise epilogues as post-ops.

    ``exact``: absorb no finite-only step (see _FINITE_ONLY_ELTWISE): the backend of a network's
    exact variant, which the device runs where the fused one's premise (finite inputs and
    parameters) does not hold.
    """

    name = "onednn"
    device = "x86"
    priority = 10

    def __init__(self, exact: bool = False) -> None:
        self.exact = exact

    def exact_variant(self) -> OneDNNBackend:
        return OneDNNBackend(exact=True)

    def availability(self) -> Availability:
        found = find_onednn()
        if found is None and os.environ.get("SOL_ONEDNN_ROOT"):
            return Availability(False, f"SOL_ONEDNN_ROOT={os.environ['SOL_ONEDNN_ROOT']} holds no oneDNN "
                                       f"(include/oneapi/dnnl/dnnl.hpp and lib/libdnnl.so)")
        if found is None:
            return Availability(False, "oneDNN not found (pip install onednn-cpu-gomp onednn-devel-cpu-gomp, "
                                       "or set SOL_ONEDNN_ROOT)")
        return Availability(True, f"oneDNN {found.version}")

    def claims(self, node: Node, graph: Graph) -> bool:
        if any(v.dtype != "float32" for v in node.inputs) or node.output.dtype != "float32":
            return False
        if node.op in (*_SPATIAL, _CONV_NHWC):  # conv_transpose2d: oneDNN's deconvolution primitive
            return node.inputs[0].type.rank == 4
        if node.op in _CONV_BACKWARD:  # training: oneDNN's convolution backward primitives
            return True
        if node.op == "dense":
            return node.output.type.rank <= 6
        if node.op == "matmul":
            return max(v.type.rank for v in node.inputs) <= 6
        return False

    def absorbs(self, anchor: Node, chain: list[Node], node: Node, graph: Graph) -> bool:
        if anchor.op in _CONV_BACKWARD:  # oneDNN's backward primitives take no post-ops
            return False
        return post_op(anchor, chain, node, graph, allow_finite_only=not self.exact) is not None
