"""How much work a node or a planned group does: floating-point operations and bytes moved.

These counts belong to the IR, not to a device: a roofline report divides them by the times a
device measured (``sol inspect --profile``), and a device's performance model divides them by its
peak rates. Counting rules, kept simple so that a reader can redo them by hand:

- a multiply-add is 2 FLOPs; every other arithmetic operation, comparison or function
  (``exp``, ``tanh``, ...) is 1 FLOP per element it produces;
- ``conv2d``: 2 * N * O * OH * OW * (C / groups) * KH * KW, plus one add per output element for a
  bias; ``dense``: 2 * (output elements) * K, plus the bias adds; ``matmul``: 2 * (output
  elements) * K; the two convolution gradients count the same multiply-adds as the convolution;
  ``conv_transpose2d``: 2 * N * C * H * W * (O / groups) * KH * KW (every input element meets a
  KH x KW window of each of its group's output channels), plus the bias adds;
- recurrent layers, per time step and batch row with hidden size H and G gates: the recurrent
  product 2 * G * H * H, one add per gate for the input projection and one for each bias, and
  9 per hidden unit for the gate functions and the state update (LSTM: 3 sigmoids, tanh, c = f*c
  + i*g, h = o*tanh(c); GRU: 2 sigmoids, r*gh, add, tanh, h = (1-z)*n + z*h); ``lstm``/``gru``
  (before the input projection is hoisted out) add 2 * G * H * I for it;
- element-wise ops: 1 per output element (``batch_norm``: 2, a scale and a shift);
- pooling: one operation per window element per output (KH * KW); adaptive pooling, reductions
  (``mean``, ``sum``, ``max``, ...): one per input element; softmax/log-softmax: 5 per element
  (max, subtract, exp, sum, divide or subtract the log);
- ``resize2d``: bilinear 9 per output element (two interpolations along one axis and one
  between them: 6 multiplies, 3 adds), nearest 0;
- data movement (reshape, transpose, concat, slice, pad, gather, casts, ...): 0.

Bytes are the group's boundary traffic: every distinct value it reads from outside (activations,
parameters, constants) once, and every value it writes for outside readers once. Intermediates
kept inside a fused group (registers, per-iteration scratch) are not memory traffic; that is the
point of fusing. This is the minimum a perfect cache would move, the usual roofline convention.

Each op's :class:`~sol.ops.registry.OpDef` names its count (``flops``: ``fn(node) -> float``,
core's built from the functions below), a plugin's ops the same way; an op without one is
counted by its layer class (element-wise: 1 per output element; anything else: 0).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sol.ops.registry import FlopsFn, LayerClass

if TYPE_CHECKING:
    from sol.ir import Node, Value
    from sol.planner.plan import Group


@dataclass(frozen=True)
class Work:
    """FLOPs and boundary bytes of one node or group."""

    flops: float = 0.0
    bytes_read: float = 0.0
    bytes_written: float = 0.0

    @property
    def bytes(self) -> float:
        return self.bytes_read + self.bytes_written

    @property
    def intensity(self) -> float:
        """FLOPs per byte moved (0 for a group that moves nothing)."""
        return self.flops / self.bytes if self.bytes else 0.0

    def __add__(self, other: Work) -> Work:
        return Work(self.flops + other.flops, self.bytes_read + other.bytes_read,
                    self.bytes_written + other.bytes_written)


def _numel(v: Value) -> int:
    return v.type.numel


def _conv_macs(node: Node) -> float:
    """Multiply-adds of a 2-D convolution, from the (N, O, OH, OW) output and (O, C/g, KH, KW) weight."""
    n, o, oh, ow = node.outputs[0].shape
    _, cg, kh, kw = node.inputs[1].shape
    return float(n * o * oh * ow * cg * kh * kw)


def conv2d(node: Node) -> float:
    bias = _numel(node.outputs[0]) if len(node.inputs) == 3 else 0
    return 2.0 * _conv_macs(node) + bias


def conv2d_nhwc(node: Node) -> float:
    n, oh, ow, o = node.outputs[0].shape
    if not node.attrs["output_nhwc"]:
        n, o, oh, ow = node.outputs[0].shape
    _, cg, kh, kw = node.inputs[1].shape
    bias = _numel(node.outputs[0]) if len(node.inputs) == 3 else 0
    return 2.0 * n * o * oh * ow * cg * kh * kw + bias


def conv2d_backward_data(node: Node) -> float:
    # The input gradient (N, C, H, W) has as many multiply-adds as the forward convolution, whose
    # output is the incoming gradient (inputs[0]) and whose weight is inputs[1].
    n, o, oh, ow = node.inputs[0].shape
    _, cg, kh, kw = node.inputs[1].shape
    return 2.0 * n * o * oh * ow * cg * kh * kw


def conv2d_backward_weight(node: Node) -> float:
    # The weight gradient (O, C/g, KH, KW) sums over every output position of the incoming
    # gradient (inputs[0], shape (N, O, OH, OW)): again the forward's multiply-adds.
    n, o, oh, ow = node.inputs[0].shape
    _, cg, kh, kw = node.outputs[0].shape
    return 2.0 * n * o * oh * ow * cg * kh * kw


def conv_transpose2d(node: Node) -> float:
    # Every input pixel (N, C, H, W) meets every weight of its group: C * (O/g) * KH * KW each.
    n, c, h, w = node.inputs[0].shape
    _, og, kh, kw = node.inputs[1].shape
    bias = _numel(node.outputs[0]) if len(node.inputs) == 3 else 0
    return 2.0 * n * c * h * w * og * kh * kw + bias


def resize2d(node: Node) -> float:
    # Bilinear: two lerps per row pair and one between them (6 multiplies, 3 adds); nearest copies.
    return (9.0 if node.attrs["mode"] == "bilinear" else 0.0) * _numel(node.outputs[0])


_GATES = {"lstm": 4, "gru": 3}
_STATES = {"lstm": 2, "gru": 1}  # h0 (and c0) follow the sequence input


def _recurrent(cell: str, projected: bool) -> FlopsFn:
    """``projected``: the ``*_recurrence`` form, whose first input already holds the input
    projection (T, N, G*H): inputs gx, states, w_hh, [b_hh]. Else: x (T, N, I), states, w_ih,
    w_hh, [b_ih, b_hh]."""
    g, states = _GATES[cell], _STATES[cell]

    def rule(node: Node) -> float:
        t, n = node.inputs[0].shape[:2]
        w_hh = node.inputs[1 + states] if projected else node.inputs[2 + states]
        h = w_hh.shape[1]
        biases = len(node.inputs) - (2 + states if projected else 3 + states)
        per_step = 2.0 * g * h * h + g * h * (1 + biases) + 9.0 * h
        if not projected:
            per_step += 2.0 * g * h * node.inputs[0].shape[2]
        return t * n * per_step

    return rule


def dense(node: Node) -> float:
    y = node.outputs[0]
    bias = _numel(y) if len(node.inputs) == 3 else 0
    return 2.0 * _numel(y) * node.inputs[0].shape[-1] + bias


def matmul(node: Node) -> float:
    return 2.0 * _numel(node.outputs[0]) * node.inputs[0].shape[-1]


def window(node: Node) -> float:
    kh, kw = node.attrs["kernel"]
    return float(_numel(node.outputs[0]) * kh * kw)


def per_input(node: Node) -> float:
    """Adaptive pooling, reductions, argmax/argmin: one operation per input element."""
    return float(_numel(node.inputs[0]))


def per_output(per: float) -> FlopsFn:
    """``per`` operations per output element: ``per_output(0)`` for element-wise ops that only
    move or relabel data (identity, dropout, cast, broadcast_to)."""
    return lambda node: per * _numel(node.outputs[0])


def variance(node: Node) -> float:
    return 3.0 * _numel(node.inputs[0])  # subtract, square, add


# The counts core's op definitions name (OpDef.flops), beside the functions above.
lstm, gru = _recurrent("lstm", projected=False), _recurrent("gru", projected=False)
lstm_recurrence, gru_recurrence = _recurrent("lstm", projected=True), _recurrent("gru", projected=True)
softmax = per_output(5)  # softmax, log_softmax


def node_flops(node: Node) -> float:
    """Floating-point operations of one node under the rules in this module's docstring: its
    op's count (:attr:`OpDef.flops <sol.ops.registry.OpDef.flops>`), or by layer class where the
    op gives none (element-wise: 1 per output element; any other: 0)."""
    from sol.ops.registry import registry

    if node.op not in registry:
        return 0.0
    opdef = registry.get(node.op)
    if opdef.flops is not None:
        return float(opdef.flops(node))
    if opdef.layer_class is LayerClass.ELEMENTWISE:
        return float(sum(_numel(v) for v in node.outputs))
    return 0.0


def _nbytes(values: list[Value]) -> float:
    return float(sum(v.type.nbytes for v in dict.fromkeys(values)))


def node_work(node: Node) -> Work:
    """One node on its own: its FLOPs, every distinct input read once, every output written once."""
    return Work(node_flops(node), _nbytes(list(node.inputs)), _nbytes(list(node.outputs)))


def group_work(group: Group) -> Work:
    """One planned group: the FLOPs of its nodes and its boundary traffic. An alias group (a
    reshape of a buffer, no code) does no work."""
    from sol.planner.plan import GroupKind

    if group.kind is GroupKind.ALIAS:
        return Work()
    flops = sum(node_flops(n) for n in group.nodes)
    return Work(flops, _nbytes(list(group.inputs)), _nbytes(list(group.outputs)))
