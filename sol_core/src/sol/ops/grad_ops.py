"""Ops that backward graphs need and forward ops cannot express (see :mod:`sol.autodiff`).

* ``mask_gt`` / ``mask_ge`` (element-wise): 1 where ``a > b`` (``a >= b``), else 0, in the
  operands' float type. Derivatives of piecewise functions (ReLU, clamp, max, hardswish) are
  products with such masks, so they fuse into the backward element-wise chains like any
  multiply; a boolean comparison plus a select would need two ops and a bool tensor.
* ``broadcast_to`` (element-wise): NumPy broadcasting to a larger shape, the gradient of a
  reduction. Element-wise, because every output element reads one input element through
  broadcast strides: the loop lowering handles it like the broadcast operand of an ``add``.
* ``max_pool2d_backward`` (I/O-memory bound): routes each output gradient to the input element
  its window chose (PyTorch's: the first maximum in window order, the last NaN if any).
* ``max_pool2d_select`` (I/O-memory bound): ``t`` read at the positions max pooling picks in
  ``x``, the transpose of ``max_pool2d_backward`` (its gradient, and the other way round).
* ``gather_backward`` (I/O-memory bound): the gradient of ``gather``, a scatter-add of the
  gathered rows' gradients into zeros (repeated indices accumulate).
* ``conv2d_backward_data`` / ``conv2d_backward_weight`` (compute bound): the gradients of
  ``conv2d`` with respect to its input and its weight; libraries have primitives for both
  (oneDNN's convolution backward-data / backward-weights), devices without one generate loops.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sol.errors import SolError
from sol.ir import Node, TensorType
from sol.ops._util import broadcast_shape, f64, padding2d, pair, same_dtype
from sol.ops.registry import REQUIRED, LayerClass, OpDef
from sol.ops.window import _normalize as _pool_normalize
from sol.ops.window import _pool_infer


def _mask_infer(types: list[TensorType], attrs: dict[str, Any]) -> list[TensorType]:
    dtype = same_dtype(types)
    if not dtype.startswith("float"):
        raise SolError(f"gradient masks are floating point; got operands of dtype {dtype}")
    return [TensorType(broadcast_shape(*(t.shape for t in types)), dtype)]


def _mask(fn: Any) -> Any:
    def ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
        return [np.asarray(fn(f64(xs[0]), f64(xs[1]))).astype(xs[0].dtype)]

    return ref


def _broadcast_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    shape = tuple(int(d) for d in attrs["shape"])
    x = types[0]
    if x.rank > len(shape) or broadcast_shape(x.shape, shape) != shape:
        raise SolError(f"broadcast_to: {x} does not broadcast to {shape}")
    return {"shape": shape}


def _maxpool_bwd_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, gy = types
    want = _pool_infer([x], a)[0]
    if gy != want:
        raise SolError(f"max_pool2d_backward: output gradient {gy} does not match the pooled {want}")
    return [x]


def pool_choice(x: np.ndarray, a: dict[str, Any], oh: int, ow: int) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of the element each max-pooling window picks in ``x`` (N, C, H, W): PyTorch's
    rule, as the devices' loops apply it: padding is never picked, the first valid element starts,
    a larger value or any NaN replaces it (so the first maximum among ties, the last NaN of a
    window, the first valid element of an all -inf window)."""
    n, c, h, w = x.shape
    (pt, _), (pl, _) = a["padding"]
    sh, sw = a["stride"]
    dh, dw = a.get("dilation", (1, 1))
    best_h = np.full((n, c, oh, ow), -1, dtype=np.int64)
    best_w = np.full((n, c, oh, ow), -1, dtype=np.int64)
    acc = np.zeros((n, c, oh, ow), dtype=x.dtype)
    for i in range(a["kernel"][0]):
        hh = np.arange(oh) * sh - pt + i * dh
        for j in range(a["kernel"][1]):
            ww = np.arange(ow) * sw - pl + j * dw
            valid = ((hh >= 0) & (hh < h))[:, None] & ((ww >= 0) & (ww < w))[None, :]
            v = x[:, :, np.clip(hh, 0, h - 1)][:, :, :, np.clip(ww, 0, w - 1)]
            with np.errstate(invalid="ignore"):
                take = valid & ((best_h < 0) | (v > acc) | np.isnan(v))
            acc = np.where(take, v, acc)
            best_h = np.where(take, hh[:, None], best_h)
            best_w = np.where(take, ww[None, :], best_w)
    return best_h, best_w


def _maxpool_bwd_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, gy = f64(xs[0]), f64(xs[1])
    n, c, h, w = x.shape
    hh, ww = pool_choice(x, a, *gy.shape[2:])
    gx = np.zeros((n, c, h, w))
    nn = np.broadcast_to(np.arange(n).reshape(n, 1, 1, 1), hh.shape)
    cc = np.broadcast_to(np.arange(c).reshape(1, c, 1, 1), hh.shape)
    np.add.at(gx, (nn, cc, hh, ww), gy)  # every window holds a valid element (pool_out)
    return [gx.astype(xs[0].dtype)]


def _maxpool_select_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, t = types
    if t != x:
        raise SolError(f"max_pool2d_select: the selected tensor {t} must match x {x}")
    return _pool_infer([x], a)


def _maxpool_select_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, t = f64(xs[0]), f64(xs[1])
    n, c = x.shape[:2]
    oh, ow = _pool_infer([TensorType(x.shape)], a)[0].shape[2:]
    hh, ww = pool_choice(x, a, oh, ow)
    nn = np.broadcast_to(np.arange(n).reshape(n, 1, 1, 1), hh.shape)
    cc = np.broadcast_to(np.arange(c).reshape(1, c, 1, 1), hh.shape)
    return [t[nn, cc, hh, ww].astype(xs[1].dtype)]


def _conv_bwd_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    return {"shape": tuple(int(d) for d in attrs["shape"]), "stride": pair(attrs["stride"]),
            "padding": padding2d(attrs["padding"]), "dilation": pair(attrs["dilation"]),
            "groups": int(attrs["groups"])}


def conv_out_hw(x_shape: tuple[int, ...], w_shape: tuple[int, ...], a: dict[str, Any]) -> tuple[int, int]:
    out = []
    for i in range(2):
        size = x_shape[2 + i] + sum(a["padding"][i])
        eff = a["dilation"][i] * (w_shape[2 + i] - 1) + 1
        if size < eff:
            raise SolError(f"convolution kernel {w_shape[2:]} larger than padded input {x_shape[2:]}")
        out.append((size - eff) // a["stride"][i] + 1)
    return out[0], out[1]


def _check_conv(x: tuple[int, ...], w: tuple[int, ...], gy: TensorType, a: dict[str, Any], what: str) -> None:
    if len(x) != 4 or len(w) != 4 or gy.rank != 4:
        raise SolError(f"{what}: expects 4-D input, weight and output gradient")
    g = a["groups"]
    if x[1] != w[1] * g or w[0] % g:
        raise SolError(f"{what} with groups={g}: input channels {x[1]} and weight {w} disagree")
    want = (x[0], w[0]) + conv_out_hw(x, w, a)
    if gy.shape != want:
        raise SolError(f"{what}: output gradient {gy} does not match the convolution's output {want}")


def _bwd_data_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    gy, w = types
    _check_conv(a["shape"], w.shape, gy, a, "conv2d_backward_data")
    return [TensorType(a["shape"], same_dtype(types))]


def _bwd_weight_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x, gy = types
    _check_conv(x.shape, a["shape"], gy, a, "conv2d_backward_weight")
    return [TensorType(a["shape"], same_dtype(types))]


def _columns_shape(x_shape: tuple[int, ...], w_shape: tuple[int, ...], a: dict[str, Any]) -> dict[str, Any]:
    n, c, h, wd = x_shape
    o, cg, kh, kw = w_shape
    oh, ow = conv_out_hw(x_shape, w_shape, a)
    return dict(n=n, c=c, h=h, w=wd, o=o, cg=cg, kh=kh, kw=kw, oh=oh, ow=ow, g=a["groups"])


def _bwd_data_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    gy, w = f64(xs[0]), f64(xs[1])
    d = _columns_shape(a["shape"], w.shape, a)
    g, cg = d["g"], d["cg"]
    (pt, pb), (pl, pr) = a["padding"]
    sh, sw = a["stride"]
    dh, dw = a["dilation"]
    # Each output gradient times the weights gives a window of input gradients; windows overlap,
    # so they are summed into the padded input one kernel tap at a time.
    cols = np.einsum("ngohw,gocij->ngchwij", gy.reshape(d["n"], g, d["o"] // g, d["oh"], d["ow"]),
                     w.reshape(g, d["o"] // g, cg, d["kh"], d["kw"]), optimize=True)
    cols = cols.reshape(d["n"], d["c"], d["oh"], d["ow"], d["kh"], d["kw"])
    gp = np.zeros((d["n"], d["c"], d["h"] + pt + pb, d["w"] + pl + pr))
    for i in range(d["kh"]):
        for j in range(d["kw"]):
            gp[:, :, i * dh:i * dh + sh * (d["oh"] - 1) + 1:sh, j * dw:j * dw + sw * (d["ow"] - 1) + 1:sw] += \
                cols[:, :, :, :, i, j]
    return [np.asarray(gp[:, :, pt:pt + d["h"], pl:pl + d["w"]], order="C").astype(xs[0].dtype)]


def _bwd_weight_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    """Tap by tap over the input positions that exist: padding contributes nothing, not 0 * gy
    (NaN for an infinite gradient), as in the forward convolution (sol.ops.linalg)."""
    from sol.ops.linalg import tap_range

    x, gy = f64(xs[0]), f64(xs[1])
    d = _columns_shape(x.shape, a["shape"], a)
    g, cg, og = d["g"], d["cg"], d["o"] // d["g"]
    (pt, _), (pl, _) = a["padding"]
    sh, sw = a["stride"]
    dh, dw = a["dilation"]
    xg = x.reshape(d["n"], g, cg, d["h"], d["w"])
    gyg = gy.reshape(d["n"], g, og, d["oh"], d["ow"])
    gw = np.zeros((g, og, cg, d["kh"], d["kw"]))
    for i in range(d["kh"]):
        r0, r1, h0 = tap_range(d["h"], d["oh"], sh, i * dh - pt)
        for j in range(d["kw"]):
            c0, c1, w0 = tap_range(d["w"], d["ow"], sw, j * dw - pl)
            if r0 >= r1 or c0 >= c1:
                continue
            part = xg[:, :, :, h0:h0 + (r1 - r0 - 1) * sh + 1:sh, w0:w0 + (c1 - c0 - 1) * sw + 1:sw]
            gw[:, :, :, i, j] = np.einsum("ngchw,ngohw->goc", part, gyg[:, :, :, r0:r1, c0:c1], optimize=True)
    return [gw.reshape(a["shape"]).astype(xs[0].dtype)]


def _core2(node: Node) -> int:
    return 2


_INDEX_DTYPES = ("int64", "int32", "int8", "uint8")


def _scatter_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    idx, g = types
    ax = int(attrs["axis"])
    if not 0 <= ax <= g.rank - idx.rank:
        raise SolError(f"gather_backward: axis {ax} does not fit gradient {g} and indices {idx}")
    return {"axis": ax, "size": int(attrs["size"]), "wrap": bool(attrs["wrap"])}


def _scatter_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    idx, g = types
    if idx.dtype not in _INDEX_DTYPES:
        raise SolError(f"gather_backward indices must be integers, got {idx}")
    ax = a["axis"]
    if g.shape[ax:ax + idx.rank] != idx.shape:
        raise SolError(f"gather_backward: gradient {g} does not hold indices {idx} at axis {ax}")
    return [TensorType(g.shape[:ax] + (a["size"],) + g.shape[ax + idx.rank:], g.dtype)]


def _scatter_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    idx, g = xs[0].astype(np.int64), f64(xs[1])
    ax, size = a["axis"], a["size"]
    idx = np.where(idx < 0, idx + size, idx) if a["wrap"] else idx
    out_shape = g.shape[:ax] + (size,) + g.shape[ax + idx.ndim:]
    rows = g.reshape(g.shape[:ax] + (idx.size,) + g.shape[ax + idx.ndim:])
    out = np.zeros(out_shape)
    for j, k in enumerate(idx.reshape(-1)):
        index = (slice(None),) * ax
        out[index + (int(k),)] += rows[index + (j,)]
    return [out.astype(xs[1].dtype)]


def ops() -> list[OpDef]:
    # Gradient rules, C lowerings and FLOP counts are imported here, when the registry is
    # filled, not at import time (sol.ops.registry explains why).
    from sol import workload
    from sol.autodiff.rules import elementwise as ew_grad
    from sol.autodiff.rules import index as index_grad
    from sol.autodiff.rules import linalg as linalg_grad
    from sol.autodiff.rules import window as window_grad
    from sol.lowering import elementwise as c
    from sol.lowering import grad as lower

    conv_attrs = {"shape": REQUIRED, "stride": 1, "padding": 0, "dilation": 1, "groups": 1}
    out = [
        OpDef("mask_gt", LayerClass.ELEMENTWISE, _mask_infer, _mask(np.greater), (2, 2),
              doc="1 where a > b else 0 (float): gradient masks", gradient=ew_grad.masks, c_expr=c.mask_gt),
        OpDef("mask_ge", LayerClass.ELEMENTWISE, _mask_infer, _mask(np.greater_equal), (2, 2),
              doc="1 where a >= b else 0 (float): gradient masks", gradient=ew_grad.masks, c_expr=c.mask_ge),
        OpDef("broadcast_to", LayerClass.ELEMENTWISE,
              lambda t, a: [TensorType(a["shape"], t[0].dtype)],
              lambda xs, a: [np.asarray(np.broadcast_to(xs[0], a["shape"]), order="C")], (1, 1),
              {"shape": REQUIRED}, normalize=_broadcast_normalize,
              doc="NumPy broadcasting of x to `shape` (the gradient of a reduction)", gradient=ew_grad.broadcast_to,
              flops=workload.per_output(0), c_expr=c.same),
        OpDef("max_pool2d_backward", LayerClass.IO_BOUND, _maxpool_bwd_infer, _maxpool_bwd_ref, (2, 2),
              {"kernel": REQUIRED, "stride": None, "padding": 0, "ceil_mode": False, "dilation": 1},
              normalize=_pool_normalize, core_dims=_core2,
              doc="gradient of max_pool2d: inputs (x, grad_y), same attributes as the forward op",
              gradient=window_grad.max_pool2d_backward, c_loops=lower.lower),
        OpDef("max_pool2d_select", LayerClass.IO_BOUND, _maxpool_select_infer, _maxpool_select_ref, (2, 2),
              {"kernel": REQUIRED, "stride": None, "padding": 0, "ceil_mode": False, "dilation": 1},
              normalize=_pool_normalize, core_dims=_core2,
              doc="inputs (x, t): t at the element max_pool2d picks in each window of x",
              gradient=window_grad.max_pool2d_select, c_loops=lower.lower),
        OpDef("gather_backward", LayerClass.IO_BOUND, _scatter_infer, _scatter_ref, (2, 2),
              {"axis": REQUIRED, "size": REQUIRED, "wrap": True}, normalize=_scatter_normalize,
              core_dims=lambda n: n.outputs[0].type.rank - n.attrs["axis"] if n.outputs else 1,
              doc="gradient of gather: inputs (indices, grad_y); rows of grad_y added at their indices "
                  "into zeros with `size` entries along `axis`", gradient=index_grad.gather_backward,
              c_loops=lower.lower),
        OpDef("conv2d_backward_data", LayerClass.COMPUTE_BOUND, _bwd_data_infer, _bwd_data_ref, (2, 2),
              dict(conv_attrs), normalize=_conv_bwd_normalize,
              doc="gradient of conv2d w.r.t. its input: inputs (grad_y, weight), `shape` the input's",
              gradient=linalg_grad.conv2d_backward_data, flops=workload.conv2d_backward_data, c_loops=lower.lower),
        OpDef("conv2d_backward_weight", LayerClass.COMPUTE_BOUND, _bwd_weight_infer, _bwd_weight_ref, (2, 2),
              dict(conv_attrs), normalize=_conv_bwd_normalize,
              doc="gradient of conv2d w.r.t. its weight: inputs (x, grad_y), `shape` the weight's",
              gradient=linalg_grad.conv2d_backward_weight, flops=workload.conv2d_backward_weight,
              c_loops=lower.lower),
    ]
    # Gradients of finite values are finite (sol.passes.finite): sums, products, masks and selections.
    for o in out:
        o.preserves_finite = True
    return out

