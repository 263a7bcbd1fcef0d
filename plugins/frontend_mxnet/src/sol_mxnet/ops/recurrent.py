"""MXNet's fused ``RNN`` operator (LSTM and GRU; stacked, bidirectional) and what Gluon's
``rnn.LSTM``/``rnn.GRU`` layers build around it when hybridized: ``_rnn_param_concat`` (the
layer's parameters flattened into one vector) and ``_zeros`` (the default begin state, whose
batch dimension is 0 in the graph and inferred by MXNet).

``RNN(data, parameters, state[, state_cell])``: ``data`` is time-major (T, N, I); the states are
(L*D, N, H), layer-major with the forward direction before the backward one. ``parameters`` is
one flat vector in cuDNN's packing: first every weight, per layer and direction (``l0`` forward,
``r0`` backward, ``l1``, ...) the input weight (G*H, I_l) then the recurrent weight (G*H, H);
then every bias in the same order (input bias, recurrent bias, G*H each). The gate order (LSTM
i, f, g, o; GRU r, z, n with the recurrent bias inside the reset product) is core's, so each
piece maps to a ``lstm``/``gru`` node unchanged (checked against MXNet in the tests).

Where the flat vector is the concatenation Gluon builds from the layer's own parameters, each
piece is read from its parameter directly (no copy of the weights into one vector at every call,
and gradients reach the parameters without a slice); a flat parameter of a Symbol model is sliced.
"""

from __future__ import annotations

import math

import numpy as np

from sol.plugin_api import Value
from sol_mxnet.ops.base import Context, MXNode, Unsupported, converts, require_float

_GATES = {"lstm": 4, "gru": 3}


@converts("_rnn_param_concat")
def rnn_param_concat(ctx: Context, node: MXNode) -> list[Value]:
    xs = ctx.inputs(node)
    if len({x.dtype for x in xs}) != 1 or any(x.type.rank != 1 for x in xs) or node.attrs.int("dim", 0) != 0:
        raise Unsupported(f"{node.op} of {[str(x.type) for x in xs]}")
    return [ctx.emit("concat", xs, axis=0)]


@converts("_zeros", "_ones", "_full", "zeros_like", "ones_like")
def filled(ctx: Context, node: MXNode) -> list[np.ndarray]:
    """A constant array; a 0 in ``shape`` (Gluon's begin state before the batch size is known) is
    what MXNet's inference says for this graph (``node.extra['types']``)."""
    types = node.extra.get("types") or [None]
    known = types[0]
    if node.op.endswith("_like"):
        (x,) = ctx.inputs(node)
        shape, dtype = x.shape, x.dtype
    else:
        shape = node.attrs.ints("shape", ())
        dtype = node.attrs.str("dtype", "float32") or "float32"
        if any(d == 0 for d in shape):
            if known is None:
                raise Unsupported(f"{node.op} of shape {shape} whose zero dimensions MXNet does not infer")
            shape = known.shape
    value = {"_zeros": 0.0, "zeros_like": 0.0, "_ones": 1.0, "ones_like": 1.0}.get(node.op)
    if value is None:
        value = node.attrs.float("value")
    if dtype not in ("float32", "float64", "int32", "int64"):
        raise Unsupported(f"{node.op} of {dtype}")
    return [np.full(tuple(shape), value, dtype=dtype)]


def _piece(ctx: Context, flat: Value, offset: int, shape: tuple[int, ...]) -> Value:
    """``flat[offset : offset + size]`` in ``shape``: the parameter itself where ``flat`` is a
    concatenation of flattened parameters and this piece is exactly one of them (see the module doc)."""
    size = math.prod(shape)
    node = flat.producer
    if node is not None and node.op == "concat":
        start = 0
        for part in node.inputs:
            n = part.shape[0]
            if start == offset and n == size:
                src = part.producer
                if src is not None and src.op == "reshape" and src.inputs[0].shape == shape:
                    return src.inputs[0]
                return ctx.reshape(part, shape)
            start += n
    piece = ctx.emit("slice", [flat], axes=(0,), starts=(offset,), stops=(offset + size,), steps=None)
    return ctx.reshape(piece, shape)


def _layout(mode: str, layers: int, directions: int, inputs: int, hidden: int) -> list[list[tuple[int, tuple]]]:
    """Per layer and direction, the (offset, shape) of w_ih, w_hh, b_ih, b_hh in the flat vector."""
    g = _GATES[mode] * hidden
    weights: list[list[tuple[int, tuple]]] = []
    offset = 0
    for layer in range(layers):
        width = inputs if layer == 0 else directions * hidden
        for _ in range(directions):
            weights.append([(offset, (g, width)), (offset + g * width, (g, hidden))])
            offset += g * width + g * hidden
    for entry in weights:
        entry += [(offset, (g,)), (offset + g, (g,))]
        offset += 2 * g
    return weights


def _check_attrs(node: MXNode) -> str:
    a = node.attrs
    mode = a.str("mode") or ""
    if mode not in _GATES:
        raise Unsupported(f"RNN mode={mode!r} (sol converts lstm and gru)")
    for name in ("projection_size", "lstm_state_clip_min", "lstm_state_clip_max"):
        if a.has(name):
            raise Unsupported(f"RNN with {name}")
    if a.bool("use_sequence_length", False):
        raise Unsupported("RNN with use_sequence_length")
    return mode


def _state_row(ctx: Context, s: Value, i: int) -> Value:
    row = ctx.emit("slice", [s], axes=(0,), starts=(i,), stops=(i + 1,), steps=None)
    return ctx.reshape(row, s.shape[1:])


@converts("RNN")
def rnn(ctx: Context, node: MXNode) -> list[Value]:
    mode = _check_attrs(node)
    a = node.attrs
    xs = ctx.inputs(node)
    states_in = 2 if mode == "lstm" else 1
    if len(xs) != 2 + states_in:
        raise Unsupported(f"RNN mode={mode} with {len(xs)} inputs")
    x, flat, states = xs[0], xs[1], xs[2:]
    require_float(x, node.op)
    hidden, layers = a.int("state_size"), a.int("num_layers", 1)
    directions = 2 if a.bool("bidirectional", False) else 1
    if ctx.training and layers > 1 and a.float("p", 0.0) > 0:
        raise Unsupported(f"RNN with dropout p={a.float('p', 0.0)} between layers in training mode")
    if x.type.rank != 3:
        raise Unsupported(f"RNN input of rank {x.type.rank} (MXNet's RNN takes (T, N, C))")
    layout = _layout(mode, layers, directions, x.shape[2], hidden)
    total = layout[-1][3][0] + layout[-1][3][1][0]
    if flat.shape != (total,) or flat.dtype != x.dtype:
        raise Unsupported(f"RNN parameters {flat.type}, expected ({total},) {x.dtype}")
    want = (layers * directions, x.shape[1], hidden)
    if any(s.shape != want or s.dtype != x.dtype for s in states):
        raise Unsupported(f"RNN states {[str(s.type) for s in states]}, expected {want} {x.dtype}")
    finals: list[list[Value]] = [[] for _ in states]
    for layer in range(layers):
        outs = []
        for d in range(directions):
            i = layer * directions + d
            w = [_piece(ctx, flat, off, shape) for off, shape in layout[i]]
            init = [_state_row(ctx, s, i) for s in states]
            rec = ctx.graph.add_node(mode, [x, *init, *w], {"reverse": d == 1}, source=ctx.source)
            outs.append(rec.outputs[0])
            for k, v in enumerate(rec.outputs[1:]):
                finals[k].append(ctx.reshape(v, (1,) + v.shape))
        x = outs[0] if directions == 1 else ctx.emit("concat", outs, axis=2)
    if not a.bool("state_outputs", False):
        return [x]
    return [x, *(f[0] if len(f) == 1 else ctx.emit("concat", f, axis=0) for f in finals)]
