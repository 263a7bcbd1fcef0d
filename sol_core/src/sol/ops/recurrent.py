"""Recurrent layers: the execution-order-constrained layer class (LSTM, GRU).

One node is one layer in one direction, time-major: ``x`` is ``(T, N, I)`` (a frontend transposes
batch-first input), the hidden size ``H`` is read from ``w_hh`` (``(G*H, H)``, ``G`` gates). The
gate order and equations are PyTorch's (ONNX's ``linear_before_reset=1`` GRU), so weights map one
to one:

LSTM, gates i, f, g, o::

    gates = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh
    i, f, o = sigmoid(...);  g = tanh(...)
    c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t)

GRU, gates r, z, n (``b_hn`` stays inside the reset product)::

    gx = x_t W_ih^T + b_ih;  gh = h_{t-1} W_hh^T + b_hh
    r = sigmoid(gx_r + gh_r);  z = sigmoid(gx_z + gh_z);  n = tanh(gx_n + r * gh_n)
    h_t = (1 - z) * n + z * h_{t-1}

``reverse=True`` runs t = T-1 .. 0 (the backward half of a bidirectional layer); ``y[t]`` is
always the hidden state belonging to input step t. Outputs: ``y`` (T, N, H), the final ``h``
(N, H) and, for LSTM, the final ``c``.

Two forms of each op exist. ``lstm``/``gru`` are what frontends emit. The input projection
``x_t W_ih^T + b_ih`` does not depend on the recurrence, so a core pass
(:func:`sol.passes.recurrent.hoist_input_projection`) moves it out as one ``dense`` over all T*N
rows (one large GEMM for the library) and leaves ``lstm_recurrence``/``gru_recurrence``, which
take the projected gates ``gx`` (T, N, G*H). Only the recurrence forms reach devices: the planner
gives each its own RECURRENT group (see :class:`sol.planner.plan.RecurrentKernel`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sol.errors import SolError
from sol.ir import TensorType
from sol.ops._util import f64, same_dtype
from sol.ops.registry import LayerClass, OpDef

GATES = {"lstm": 4, "gru": 3}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _hidden(op: str, w_hh: TensorType) -> int:
    g = GATES[op]
    if w_hh.rank != 2 or w_hh.shape[0] != g * w_hh.shape[1]:
        raise SolError(f"{op}: w_hh must be ({g}*H, H), got {w_hh}")
    return w_hh.shape[1]


def _check(what: str, t: TensorType, shape: tuple[int, ...]) -> None:
    if t.shape != shape:
        raise SolError(f"{what} must have shape {shape}, got {t}")


def _recurrence_infer(op: str) -> Any:
    """Inputs: gx (T, N, G*H), h0 (N, H), [c0 (N, H)], w_hh (G*H, H), [b_hh (G*H,)]."""
    cell = op.split("_")[0]
    states = 2 if cell == "lstm" else 1

    def infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
        gx = types[0]
        w_hh = types[1 + states]
        h = _hidden(cell, w_hh)
        g = GATES[cell]
        if gx.rank != 3 or gx.shape[2] != g * h:
            raise SolError(f"{op}: gx must be (T, N, {g}*H) = (T, N, {g * h}), got {gx}")
        n = gx.shape[1]
        for i in range(states):
            _check(f"{op}: initial state {i}", types[1 + i], (n, h))
        if len(types) == 3 + states:
            _check(f"{op}: b_hh", types[2 + states], (g * h,))
        dt = same_dtype(types)
        return [TensorType((gx.shape[0], n, h), dt)] + [TensorType((n, h), dt)] * states

    return infer


def _full_infer(op: str) -> Any:
    """Inputs: x (T, N, I), h0 (N, H), [c0], w_ih (G*H, I), w_hh (G*H, H), [b_ih, b_hh]."""
    states = 2 if op == "lstm" else 1

    def infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
        x, w_ih, w_hh = types[0], types[1 + states], types[2 + states]
        h = _hidden(op, w_hh)
        g = GATES[op]
        if x.rank != 3:
            raise SolError(f"{op}: x must be time-major (T, N, I), got {x}")
        _check(f"{op}: w_ih", w_ih, (g * h, x.shape[2]))
        biases = types[3 + states:]
        if len(biases) not in (0, 2):
            raise SolError(f"{op}: give both biases (b_ih, b_hh) or none, got {len(biases)}")
        for name, b in zip(("b_ih", "b_hh"), biases):
            _check(f"{op}: {name}", b, (g * h,))
        for i in range(states):
            _check(f"{op}: initial state {i}", types[1 + i], (x.shape[1], h))
        dt = same_dtype(types)
        return [TensorType((x.shape[0], x.shape[1], h), dt)] + [TensorType((x.shape[1], h), dt)] * states

    return infer


def lstm_steps(gx: np.ndarray, h: np.ndarray, c: np.ndarray, w_hh: np.ndarray, b_hh: np.ndarray | None,
               reverse: bool) -> list[np.ndarray]:
    """The LSTM recurrence in float64 from the equations above; returns y, h_T, c_T."""
    steps = gx.shape[0]
    hs = w_hh.shape[1]
    y = np.empty(gx.shape[:2] + (hs,))
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        gates = gx[t] + h @ w_hh.T + (0.0 if b_hh is None else b_hh)
        i, f, g, o = (gates[:, k * hs:(k + 1) * hs] for k in range(4))
        c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
        h = _sigmoid(o) * np.tanh(c)
        y[t] = h
    return [y, h, c]


def gru_steps(gx: np.ndarray, h: np.ndarray, w_hh: np.ndarray, b_hh: np.ndarray | None,
              reverse: bool) -> list[np.ndarray]:
    """The GRU recurrence in float64 from the equations above; returns y, h_T."""
    steps = gx.shape[0]
    hs = w_hh.shape[1]
    y = np.empty(gx.shape[:2] + (hs,))
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        gh = h @ w_hh.T + (0.0 if b_hh is None else b_hh)
        xr, xz, xn = (gx[t][:, k * hs:(k + 1) * hs] for k in range(3))
        hr, hz, hn = (gh[:, k * hs:(k + 1) * hs] for k in range(3))
        r = _sigmoid(xr + hr)
        z = _sigmoid(xz + hz)
        n = np.tanh(xn + r * hn)
        h = (1.0 - z) * n + z * h
        y[t] = h
    return [y, h]


def _cast(outs: list[np.ndarray], like: np.ndarray) -> list[np.ndarray]:
    return [o.astype(like.dtype) for o in outs]


def _lstm_recurrence_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    gx, h0, c0, w_hh = (f64(v) for v in xs[:4])
    b_hh = f64(xs[4]) if len(xs) == 5 else None
    return _cast(lstm_steps(gx, h0, c0, w_hh, b_hh, a["reverse"]), xs[0])


def _gru_recurrence_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    gx, h0, w_hh = (f64(v) for v in xs[:3])
    b_hh = f64(xs[3]) if len(xs) == 4 else None
    return _cast(gru_steps(gx, h0, w_hh, b_hh, a["reverse"]), xs[0])


def _projection(x: np.ndarray, w_ih: np.ndarray, b_ih: np.ndarray | None) -> np.ndarray:
    return f64(x) @ f64(w_ih).T + (0.0 if b_ih is None else f64(b_ih))


def _lstm_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, h0, c0, w_ih, w_hh = xs[:5]
    b_ih, b_hh = (xs[5], xs[6]) if len(xs) == 7 else (None, None)
    gx = _projection(x, w_ih, b_ih)
    outs = lstm_steps(gx, f64(h0), f64(c0), f64(w_hh), None if b_hh is None else f64(b_hh), a["reverse"])
    return _cast(outs, x)


def _gru_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x, h0, w_ih, w_hh = xs[:4]
    b_ih, b_hh = (xs[4], xs[5]) if len(xs) == 6 else (None, None)
    gx = _projection(x, w_ih, b_ih)
    return _cast(gru_steps(gx, f64(h0), f64(w_hh), None if b_hh is None else f64(b_hh), a["reverse"]), x)


def _normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    return {"reverse": bool(attrs["reverse"])}


def ops() -> list[OpDef]:
    # Gradient rules and FLOP counts are imported here, when the registry is
    # filled, not at import time (sol.ops.registry explains why).
    from sol import workload
    from sol.autodiff.rules import recurrent as grad

    # No C lowering on the OpDef: the recurrences (recurrent=True) run as RECURRENT groups in a
    # device's own templates (Dialect.recurrent_ops reads the flag); lstm/gru are split into an
    # input GEMM and those first, so they never reach a device.
    oc = LayerClass.ORDER_CONSTRAINED
    out = [
        OpDef("lstm", oc, _full_infer("lstm"), _lstm_ref, (5, 7), {"reverse": False}, normalize=_normalize,
              gradient=grad.lstm, flops=workload.lstm,
              doc="one LSTM layer, one direction: (x, h0, c0, w_ih, w_hh[, b_ih, b_hh]) -> (y, h_n, c_n)"),
        OpDef("gru", oc, _full_infer("gru"), _gru_ref, (4, 6), {"reverse": False}, normalize=_normalize,
              gradient=grad.gru, flops=workload.gru,
              doc="one GRU layer, one direction: (x, h0, w_ih, w_hh[, b_ih, b_hh]) -> (y, h_n)"),
        OpDef("lstm_recurrence", oc, _recurrence_infer("lstm_recurrence"), _lstm_recurrence_ref, (4, 5),
              {"reverse": False}, normalize=_normalize, gradient=grad.lstm_recurrence,
              flops=workload.lstm_recurrence, recurrent=True,
              doc="LSTM over projected gates: (gx, h0, c0, w_hh[, b_hh]) -> (y, h_n, c_n)"),
        OpDef("gru_recurrence", oc, _recurrence_infer("gru_recurrence"), _gru_recurrence_ref, (3, 4),
              {"reverse": False}, normalize=_normalize, gradient=grad.gru_recurrence,
              flops=workload.gru_recurrence, recurrent=True,
              doc="GRU over projected gates: (gx, h0, w_hh[, b_hh]) -> (y, h_n)"),
    ]
    # sigmoid and tanh gates keep the state finite (sol.passes.finite).
    for o in out:
        o.preserves_finite = True
    return out
