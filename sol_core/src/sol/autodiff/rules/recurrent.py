"""Gradient rules of the recurrent ops (``lstm``, ``gru`` and their ``*_recurrence`` forms):
backpropagation through time, unrolled into the backward graph.

The forward keeps only what it returns (y, the final states) plus the rule's inputs; the rule
recomputes the per-step gates and cell states in the backward graph (T steps of a ``dense`` and
element-wise ops, as the forward ran them) and then walks the steps in reverse. Each step's
element-wise gate derivatives fuse into loops; the weight gradients of all steps are one
``matmul`` over the stacked (T*N) rows, so the library sees one large product rather than T
small ones. The backward graph grows with T: meant for the sequence lengths a compiled network
is specialized for, not for unbounded ones.
"""

from __future__ import annotations

from sol.autodiff.builder import GradContext
from sol.ir import Value

Grads = list[Value | None]


class _Ops:
    """Short names for the backward ops one step needs."""

    def __init__(self, ctx: GradContext, like: Value) -> None:
        self.ctx = ctx
        self.like = like

    def __call__(self, op: str, *args: Value, **attrs: object) -> Value:
        return self.ctx.op(op, *args, **attrs)

    def k(self, value: float) -> Value:
        return self.ctx.const(value, self.like)

    def step(self, seq: Value, t: int) -> Value:
        """seq[t] of a (T, N, K) tensor, as (N, K)."""
        part = self("slice", seq, axes=(0,), starts=(t,), stops=(t + 1,))
        return self("reshape", part, shape=seq.shape[1:])

    def cols(self, v: Value, k: int, h: int) -> Value:
        """Gate k: columns [k*H, (k+1)*H) of an (N, G*H) tensor."""
        return self("slice", v, axes=(1,), starts=(k * h,), stops=((k + 1) * h,))

    def stack(self, steps: list[Value]) -> Value:
        """(N, K) tensors in time order -> (T, N, K)."""
        parts = [self("reshape", s, shape=(1,) + s.shape) for s in steps]
        return parts[0] if len(parts) == 1 else self("concat", *parts, axis=0)

    def one_minus_sq(self, t: Value) -> Value:
        return self("sub", self.k(1.0), self("mul", t, t))

    def dsigmoid(self, s: Value) -> Value:
        return self("mul", s, self("sub", self.k(1.0), s))

    def add(self, a: Value | None, b: Value | None) -> Value | None:
        if a is None:
            return b
        return a if b is None else self("add", a, b)


def _weight_grads(o: _Ops, dgates: list[Value], h_prev: list[Value], need_w: bool,
                  need_b: bool) -> tuple[Value | None, Value | None]:
    """dW_hh = sum_t dgates_t^T h_{t-1} and db_hh = sum_t dgates_t, as one product over T*N rows."""
    if not (need_w or need_b):
        return None, None
    dg = o.stack(dgates)
    rows = dg.shape[0] * dg.shape[1]
    dg2 = o("reshape", dg, shape=(rows, dg.shape[2]))
    dw = None
    if need_w:
        hp = o("reshape", o.stack(h_prev), shape=(rows, h_prev[0].shape[1]))
        dw = o("matmul", o("transpose", dg2, perm=(1, 0)), hp)
    db = o("sum", dg2, axes=(0,), keepdims=False) if need_b else None
    return dw, db


def _lstm_bptt(ctx: GradContext, gx: Value, h0: Value, c0: Value, w_hh: Value, b_hh: Value | None,
               grads: Grads, need: list[bool]) -> list[Value | None]:
    """(dgx, dh0, dc0, dw_hh, db_hh) of the LSTM recurrence; need: which of them are wanted."""
    o = _Ops(ctx, gx)
    steps, _, width = gx.shape
    hs = width // 4
    order = list(range(steps - 1, -1, -1)) if ctx.attrs["reverse"] else list(range(steps))
    h, c = h0, c0
    saved: dict[int, tuple[Value, ...]] = {}
    for t in order:  # recompute the forward's gates and states
        gates = o("add", o.step(gx, t), o("dense", h, w_hh))
        if b_hh is not None:
            gates = o("add", gates, b_hh)
        si, sf = o("sigmoid", o.cols(gates, 0, hs)), o("sigmoid", o.cols(gates, 1, hs))
        tg, so = o("tanh", o.cols(gates, 2, hs)), o("sigmoid", o.cols(gates, 3, hs))
        c_new = o("add", o("mul", sf, c), o("mul", si, tg))
        tc = o("tanh", c_new)
        saved[t] = (h, c, si, sf, tg, so, tc)
        h, c = o("mul", so, tc), c_new
    gy, dh, dc = grads
    dgates: dict[int, Value] = {}
    for t in reversed(order):
        h_prev, c_prev, si, sf, tg, so, tc = saved[t]
        dh_t = o.add(dh, o.step(gy, t) if gy is not None else None)
        dc_t = dc
        if dh_t is not None:
            dc_t = o.add(dc_t, o("mul", o("mul", dh_t, so), o.one_minus_sq(tc)))
        parts = []
        zero = ctx.zeros(si.type)
        parts.append(o("mul", o("mul", dc_t, tg), o.dsigmoid(si)) if dc_t is not None else zero)
        parts.append(o("mul", o("mul", dc_t, c_prev), o.dsigmoid(sf)) if dc_t is not None else zero)
        parts.append(o("mul", o("mul", dc_t, si), o.one_minus_sq(tg)) if dc_t is not None else zero)
        parts.append(o("mul", o("mul", dh_t, tc), o.dsigmoid(so)) if dh_t is not None else zero)
        dgates[t] = o("concat", *parts, axis=1)
        dh = o("matmul", dgates[t], w_hh)
        dc = o("mul", dc_t, sf) if dc_t is not None else None
    in_order = [dgates[t] for t in range(steps)]
    dw, db = _weight_grads(o, in_order, [saved[t][0] for t in range(steps)], need[3], need[4])
    return [o.stack(in_order) if need[0] else None, dh if need[1] else None,
            (dc if dc is not None else ctx.zeros(c0.type)) if need[2] else None, dw, db]


def _gru_bptt(ctx: GradContext, gx: Value, h0: Value, w_hh: Value, b_hh: Value | None,
              grads: Grads, need: list[bool]) -> list[Value | None]:
    """(dgx, dh0, dw_hh, db_hh) of the GRU recurrence (b_hn inside the reset product)."""
    o = _Ops(ctx, gx)
    steps, _, width = gx.shape
    hs = width // 3
    order = list(range(steps - 1, -1, -1)) if ctx.attrs["reverse"] else list(range(steps))
    h = h0
    saved: dict[int, tuple[Value, ...]] = {}
    for t in order:
        gh = o("dense", h, w_hh)
        if b_hh is not None:
            gh = o("add", gh, b_hh)
        xt = o.step(gx, t)
        r = o("sigmoid", o("add", o.cols(xt, 0, hs), o.cols(gh, 0, hs)))
        z = o("sigmoid", o("add", o.cols(xt, 1, hs), o.cols(gh, 1, hs)))
        hn = o.cols(gh, 2, hs)
        n = o("tanh", o("add", o.cols(xt, 2, hs), o("mul", r, hn)))
        saved[t] = (h, r, z, n, hn)
        h = o("add", o("mul", o("sub", o.k(1.0), z), n), o("mul", z, h))
    gy, dh = grads
    dgx: dict[int, Value] = {}
    dgh: dict[int, Value] = {}
    for t in reversed(order):
        h_prev, r, z, n, hn = saved[t]
        dh_t = o.add(dh, o.step(gy, t) if gy is not None else None)
        if dh_t is None:
            dh_t = ctx.zeros(h_prev.type)
        dan = o("mul", o("mul", dh_t, o("sub", o.k(1.0), z)), o.one_minus_sq(n))
        daz = o("mul", o("mul", dh_t, o("sub", h_prev, n)), o.dsigmoid(z))
        dar = o("mul", o("mul", dan, hn), o.dsigmoid(r))
        dgx[t] = o("concat", dar, daz, dan, axis=1)
        dgh[t] = o("concat", dar, daz, o("mul", dan, r), axis=1)
        dh = o("add", o("mul", dh_t, z), o("matmul", dgh[t], w_hh))
    dw, db = _weight_grads(o, [dgh[t] for t in range(steps)], [saved[t][0] for t in range(steps)],
                           need[2], need[3])
    return [o.stack([dgx[t] for t in range(steps)]) if need[0] else None, dh if need[1] else None, dw, db]


def lstm_recurrence(ctx: GradContext, grads: Grads) -> Grads:
    has_b = len(ctx.node.inputs) == 5
    out = _lstm_bptt(ctx, ctx.x(0), ctx.x(1), ctx.x(2), ctx.x(3), ctx.x(4) if has_b else None, grads,
                     ctx.need + [False] * (5 - len(ctx.need)))
    return out[:len(ctx.node.inputs)]


def gru_recurrence(ctx: GradContext, grads: Grads) -> Grads:
    has_b = len(ctx.node.inputs) == 4
    out = _gru_bptt(ctx, ctx.x(0), ctx.x(1), ctx.x(2), ctx.x(3) if has_b else None, grads,
                    ctx.need + [False] * (4 - len(ctx.need)))
    return out[:len(ctx.node.inputs)]


def _full(ctx: GradContext, grads: Grads, states: int) -> Grads:
    """lstm/gru = the recurrence over gx = x W_ih^T + b_ih: its gradients, then the projection's."""
    n_in = len(ctx.node.inputs)
    x, w_ih = ctx.x(0), ctx.x(1 + states)
    has_b = n_in == 5 + states
    gx = ctx.op("dense", x, w_ih, *([ctx.x(3 + states)] if has_b else []))
    need_gx = ctx.need[0] or ctx.need[1 + states] or (has_b and ctx.need[3 + states])
    w_hh = ctx.x(2 + states)
    b_hh = ctx.x(4 + states) if has_b else None
    need_rec = [need_gx, *ctx.need[1:1 + states], ctx.need[2 + states], has_b and ctx.need[4 + states]]
    if states == 2:
        d = _lstm_bptt(ctx, gx, ctx.x(1), ctx.x(2), w_hh, b_hh, grads, need_rec)
    else:
        d = _gru_bptt(ctx, gx, ctx.x(1), w_hh, b_hh, grads, need_rec)
    dgx, dstates, dw_hh, db_hh = d[0], d[1:1 + states], d[1 + states], d[2 + states]
    out: Grads = [None] * n_in
    out[1:1 + states] = dstates
    out[2 + states] = dw_hh
    if dgx is not None:
        t, n, g = dgx.shape
        rows = ctx.op("reshape", dgx, shape=(t * n, g))
        if ctx.need[0]:
            out[0] = ctx.op("matmul", dgx, w_ih)
        if ctx.need[1 + states]:
            x2 = ctx.op("reshape", x, shape=(t * n, x.shape[2]))
            out[1 + states] = ctx.op("matmul", ctx.op("transpose", rows, perm=(1, 0)), x2)
        if has_b and ctx.need[3 + states]:
            out[3 + states] = ctx.op("sum", rows, axes=(0,), keepdims=False)
    if has_b:
        out[4 + states] = db_hh
    return out


def lstm(ctx: GradContext, grads: Grads) -> Grads:
    return _full(ctx, grads, 2)


def gru(ctx: GradContext, grads: Grads) -> Grads:
    return _full(ctx, grads, 1)
