"""Reductions and normalizations over trailing axes (I/O-memory bound)."""

from __future__ import annotations

from typing import Any

import numpy as np

from sol.errors import SolError
from sol.ir import Node, TensorType
from sol.ops._util import axis, f64
from sol.ops.registry import REQUIRED, LayerClass, OpDef

# How softmax treats special values, where frameworks differ (set by each frontend's converter):
# - nan="row" (PyTorch, NumPy's math): a NaN anywhere in a row makes the whole row NaN.
#   nan="element" (TensorFlow's CPU kernel): the row's maximum skips NaN and exp of a NaN
#   difference counts as +inf, so the NaN entries (and entries equal to an infinite maximum) are
#   NaN and the rest of that row 0 (TensorFlow gives [nan, 0, 0] for [nan, 1, 2]).
# - masked_rows="zero" (PyTorch's scaled_dot_product_attention): a row that is all -inf (fully
#   masked) gives zeros instead of NaN; "nan": 0/0, NaN.
SOFTMAX_NAN = ("row", "element")
SOFTMAX_MASKED_ROWS = ("nan", "zero")


def _axis_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    return {"axis": axis(int(attrs["axis"]), types[0].rank)}


def _softmax_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    if attrs["nan"] not in SOFTMAX_NAN:
        raise SolError(f"softmax nan must be one of {SOFTMAX_NAN}, got {attrs['nan']!r}")
    if attrs["masked_rows"] not in SOFTMAX_MASKED_ROWS:
        raise SolError(f"softmax masked_rows must be one of {SOFTMAX_MASKED_ROWS}, got {attrs['masked_rows']!r}")
    if attrs["nan"] == "element" and attrs["masked_rows"] == "zero":
        raise SolError("softmax: nan='element' and masked_rows='zero' come from different frameworks; "
                       "no frontend combines them")
    return {**_axis_normalize(attrs, types), "nan": attrs["nan"], "masked_rows": attrs["masked_rows"]}


def _softmax_core(node: Node) -> int:
    return node.inputs[0].type.rank - node.attrs["axis"]


def _softmax_ref(log: bool):  # type: ignore[no-untyped-def]
    def ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
        x = f64(xs[0])
        ax = a["axis"]
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            if a.get("nan", "row") == "element":
                m = np.fmax.reduce(x, axis=ax, keepdims=True, initial=-np.inf)  # NaN skipped
                e = np.exp(x - m)
                e[np.isnan(e)] = np.inf
                return [(e / e.sum(axis=ax, keepdims=True)).astype(xs[0].dtype)]
            z = x - x.max(axis=ax, keepdims=True)
            lse = np.log(np.exp(z).sum(axis=ax, keepdims=True))
            y = z - lse if log else np.exp(z - lse)
            if a.get("masked_rows", "nan") == "zero":
                y = np.where(np.all(x == -np.inf, axis=ax, keepdims=True), 0.0, y)
        return [y.astype(xs[0].dtype)]

    return ref


def _axes_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    rank = types[0].rank
    raw = attrs["axes"]
    raw = (raw,) if isinstance(raw, (int, np.integer)) else tuple(raw)
    axes = tuple(sorted({axis(int(a), rank) for a in raw}))
    if not axes:
        raise SolError("a reduction needs at least one axis")
    return {"axes": axes, "keepdims": bool(attrs["keepdims"])}


def _reduce_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = types[0]
    if a["keepdims"]:
        shape = tuple(1 if i in a["axes"] else d for i, d in enumerate(x.shape))
    else:
        shape = tuple(d for i, d in enumerate(x.shape) if i not in a["axes"])
    return [TensorType(shape, x.dtype)]


def _reduce_core(node: Node) -> int:
    """Output dims from the first reduced axis on: what one instance spans."""
    a = node.attrs
    rank_out = node.outputs[0].type.rank if node.outputs else 0
    first = min(a["axes"])
    return max(rank_out - first, 0)


def _reduce_ref(fn):  # type: ignore[no-untyped-def]
    def ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
        return [np.asarray(fn(f64(xs[0]), axis=a["axes"], keepdims=a["keepdims"])).astype(xs[0].dtype)]

    return ref


def _variance_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, centre = types
    out = _reduce_infer([x], a)[0]
    if centre.shape != out.shape or centre.dtype != x.dtype:
        raise SolError(f"variance: the centre must be a {x.dtype} tensor shaped like the result {out.shape}, "
                       f"got {centre}")
    return [out]


def _variance_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, centre = f64(xs[0]), f64(xs[1])
    c = centre if a["keepdims"] else np.expand_dims(centre, a["axes"])
    return [np.mean((x - c) ** 2, axis=a["axes"], keepdims=a["keepdims"]).astype(xs[0].dtype)]


def _cumsum_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    return {"axis": axis(int(attrs["axis"]), types[0].rank)}


def _cumsum_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = types[0]
    if x.dtype == "bool":
        raise SolError(f"cumsum of a bool tensor: cast it to an integer type first, got {x}")
    return [x]


def _cumsum_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    # Floats accumulate in float64, as PyTorch's CPU kernel and the generated loops do; integers
    # in their own type (wrapping as C's unsigned arithmetic would is never reached by ids).
    x = xs[0]
    acc = np.float64 if x.dtype.kind == "f" else x.dtype
    return [np.cumsum(x, axis=a["axis"], dtype=acc).astype(x.dtype)]


def _cumsum_core(node: Node) -> int:
    """The dims from axis on are one instance (a running sum along axis, the dims after it
    carried side by side); the dims before axis are independent loops."""
    return node.inputs[0].type.rank - node.attrs["axis"]


def ops() -> list[OpDef]:
    # Gradient rules, loop lowerings and FLOP counts are imported here, when the registry is
    # filled, not at import time (sol.ops.registry explains why).
    from sol import workload
    from sol.autodiff.rules import reduce as grad
    from sol.lowering import loops
    from sol.lowering.index import lower_cumsum as cumsum_lowering

    out = [
        OpDef("softmax", LayerClass.IO_BOUND, lambda t, a: [t[0]], _softmax_ref(False), (1, 1),
              {"axis": REQUIRED, "nan": "row", "masked_rows": "nan"}, normalize=_softmax_normalize,
              core_dims=_softmax_core, gradient=grad.softmax, flops=workload.softmax, c_loops=loops.softmax),
        OpDef("log_softmax", LayerClass.IO_BOUND, lambda t, a: [t[0]], _softmax_ref(True), (1, 1),
              {"axis": REQUIRED}, normalize=_axis_normalize, core_dims=_softmax_core,
              gradient=grad.log_softmax, flops=workload.softmax, c_loops=loops.softmax),
        OpDef("mean", LayerClass.IO_BOUND, _reduce_infer, _reduce_ref(np.mean), (1, 1),
              {"axes": REQUIRED, "keepdims": False}, normalize=_axes_normalize, core_dims=_reduce_core,
              gradient=grad.sum_or_mean, flops=workload.per_input, c_loops=loops.reduction),
        OpDef("sum", LayerClass.IO_BOUND, _reduce_infer, _reduce_ref(np.sum), (1, 1),
              {"axes": REQUIRED, "keepdims": False}, normalize=_axes_normalize, core_dims=_reduce_core,
              gradient=grad.sum_or_mean, flops=workload.per_input, c_loops=loops.reduction),
        # mean((x - centre)^2) over axes: BatchNorm's batch variance about the batch mean in one
        # pass that writes nothing but the result (as sub, mul, mean it wrote and read back the
        # full-size deviations and their squares).
        OpDef("variance", LayerClass.IO_BOUND, _variance_infer, _variance_ref, (2, 2),
              {"axes": REQUIRED, "keepdims": False}, normalize=_axes_normalize, core_dims=_reduce_core,
              gradient=grad.variance, flops=workload.variance, c_loops=loops.reduction),
        OpDef("cumsum", LayerClass.IO_BOUND, _cumsum_infer, _cumsum_ref, (1, 1), {"axis": REQUIRED},
              normalize=_cumsum_normalize, core_dims=_cumsum_core,
              doc="running sum along axis (torch.cumsum, numpy.cumsum): out[..., i, ...] = sum of x[..., :i+1, ...]; "
                  "floats accumulate in float64 (PyTorch's CPU rule), integers in their own type",
              gradient=grad.cumsum, flops=workload.per_input, c_loops=cumsum_lowering),
    ]
    # softmax subtracts the row's maximum (exp <= 1, sum >= 1); a mean or variance over no element
    # is 0/0 (sol.passes.finite).
    for o in out:
        o.preserves_finite = True
    for o in out:
        if o.name in ("mean", "variance"):
            o.preserves_finite = _reduces_something
    return out


def _reduces_something(node: Node) -> bool:
    shape = node.inputs[0].shape
    return all(shape[a] > 0 for a in node.attrs["axes"])
