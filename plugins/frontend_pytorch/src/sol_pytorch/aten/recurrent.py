"""nn.LSTM / nn.GRU as ``torch.export`` emits them: ``aten.lstm.input`` / ``aten.gru.input``
with the flat weight list (``torch.export`` keeps them whole; they are not decomposed).

A multi-layer, possibly bidirectional module becomes one sol ``lstm``/``gru`` node per layer and
direction (time-major; batch-first input is transposed in and out), the directions' outputs
concatenated along features, the final states stacked as PyTorch stacks them (layer-major,
forward before backward). Dropout between layers is the identity at inference.
"""

from __future__ import annotations

from typing import Any

from sol.plugin_api import Value
from sol_pytorch.aten.base import Args, Emitter, Unsupported, _slice, converts


def _weights(op: str, a: Args, layers: int, directions: int) -> list[list[Value]]:
    """The flat ``params`` list cut into one (w_ih, w_hh[, b_ih, b_hh]) group per layer and
    direction, in PyTorch's order (l0, l0_reverse, l1, ...)."""
    params = list(a["params"])
    per = 4 if a["has_biases"] else 2
    if len(params) != layers * directions * per:
        # LSTM(proj_size=...) adds a projection weight w_hr per layer and direction.
        raise Unsupported(f"{op} with {len(params)} weights for {layers} layer(s) x {directions} direction(s) "
                          f"(an LSTM with proj_size > 0 is not supported)")
    if not all(isinstance(p, Value) for p in params):
        raise Unsupported(f"{op} weights must be tensors of the model")
    return [params[i * per:(i + 1) * per] for i in range(layers * directions)]


def _state(em: Emitter, h: Value, index: int) -> Value:
    """Row ``index`` of a stacked (layers*directions, N, H) state, as (N, H)."""
    return em.reshape(_slice(em, h, 0, index, index + 1), h.shape[1:])


def _recurrent(op: str, em: Emitter, a: Args) -> tuple[Value, ...]:
    x = a["input"]
    if not isinstance(x, Value):
        raise Unsupported(f"{op} input must be a tensor")
    layers, directions = int(a["num_layers"]), 2 if a["bidirectional"] else 1
    if a["train"] and layers > 1 and float(a["dropout"]) > 0:
        raise Unsupported(f"{op} with dropout={a['dropout']} between layers in training mode (random)")
    weights = _weights(op, a, layers, directions)
    states = list(a["hx"]) if op == "lstm" else [a["hx"]]
    if not all(isinstance(s, Value) for s in states):
        raise Unsupported(f"{op} initial states must be tensors")
    if x.type.rank != 3:
        raise Unsupported(f"{op} input of rank {x.type.rank} (expected a batched 3-D input)")
    if a["batch_first"]:
        x = em.transpose(x, (1, 0, 2))
    finals: list[list[Value]] = [[] for _ in states]  # per state kind: one (1, N, H) per layer/direction
    for layer in range(layers):
        outs = []
        for d in range(directions):
            i = layer * directions + d
            init = [_state(em, s, i) for s in states]
            w = weights[i]
            node = em.graph.add_node(op, [x, *init, *w], {"reverse": d == 1}, source=em.source)
            outs.append(node.outputs[0])
            for k, v in enumerate(node.outputs[1:]):
                finals[k].append(em.reshape(v, (1,) + v.shape))
        x = outs[0] if directions == 1 else em.emit("concat", outs, axis=2)
    y = em.transpose(x, (1, 0, 2)) if a["batch_first"] else x
    stacked = [f[0] if len(f) == 1 else em.emit("concat", f, axis=0) for f in finals]
    return (y, *stacked)


@converts("aten.lstm.input")
def _lstm(em: Emitter, a: Args) -> Any:
    return _recurrent("lstm", em, a)


@converts("aten.gru.input")
def _gru(em: Emitter, a: Args) -> Any:
    return _recurrent("gru", em, a)
