"""Inference: a per-channel affine (scale, shift) right after a convolution or dense layer is
folded into that layer's weights and one bias.

Why a pattern pass and not only :mod:`sol.passes.batchnorm`: frameworks do not all hand over a
``batch_norm`` op. Keras 3 writes inference BatchNormalization as ``x * (gamma * rsqrt(var + eps))
+ (beta - mean * gamma * rsqrt(var + eps))``, a ConvNeXt layer scale is ``gamma * dense(x)``, a
folded BN from another tool is a ``mul``/``add`` pair. Once the per-channel constants are folded
(:func:`sol.passes.simplify.fold_params` evaluates the ``rsqrt``/``mul``/``sub`` chains on
parameters), every one of them is a chain of element-wise ``add``/``sub``/``mul``/``div``/``neg``
with one operand known at optimize time that varies at most along the layer's output channel.
Such a chain computes ``layer(x) * a + c`` with per-channel vectors ``a`` and ``c``; scaling the
weight's output-channel rows by ``a`` and adding ``c`` gives the same values with one element-wise
op (a bias the library absorbs) instead of several.

Only when it is safe: the layer's weight is a parameter or constant, every value along the chain
has exactly one reader and is not a graph output (else the unscaled value is still needed), the
chain's static operands broadcast without growing the result, and no divisor is zero.
"""

from __future__ import annotations

import numpy as np

from sol.ir import Graph, Node, Value, ValueKind
from sol.passes.simplify import fold_params

_STATIC = (ValueKind.PARAM, ValueKind.CONST)
_LAYERS = ("conv2d", "dense")
_CHAIN = ("add", "sub", "mul", "div", "neg")


def _channel_axis(layer: Node) -> int:
    return 1 if layer.op == "conv2d" else layer.output.type.rank - 1


def _per_channel(v: Value, out: Value, axis: int) -> np.ndarray | None:
    """``v``'s data as a vector over ``out``'s channel axis (length C or 1), or None when ``v``
    is not static, varies along another axis, or would broadcast ``out`` to a larger shape."""
    if v.kind not in _STATIC or v.data is None or v.type.rank > out.type.rank:
        return None
    if not np.issubdtype(v.data.dtype, np.floating):
        return None
    shape = (1,) * (out.type.rank - v.type.rank) + v.shape
    for i, (d, o) in enumerate(zip(shape, out.shape)):
        if d != 1 and (i != axis or d != o):
            return None
    return np.asarray(v.data, dtype=np.float64).reshape(-1)  # length C, or 1 (broadcast)


def _step(node: Node, y: Value, axis: int, scale: np.ndarray, shift: np.ndarray
          ) -> tuple[np.ndarray, np.ndarray] | None:
    """The affine after ``node`` (which reads the running value ``y``), or None if ``node`` is
    not a per-channel affine step of ``y``."""
    if node.output.shape != y.shape or node.output.dtype != y.dtype:
        return None
    if node.op == "neg":
        return -scale, -shift
    if len(node.inputs) != 2:
        return None
    a, b = node.inputs
    if a is y and b is y:
        return None
    other = b if a is y else a
    k = _per_channel(other, y, axis)
    if k is None:
        return None
    if node.op == "add":
        return scale, shift + k
    if node.op == "mul":
        return scale * k, shift * k
    if node.op == "sub":
        return (scale, shift - k) if a is y else (-scale, k - shift)
    if node.op == "div" and a is y and np.all(k != 0):
        return scale / k, shift / k
    return None


def scaled_weights(weights: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``weights`` with output channel ``k`` (axis 0) multiplied by ``scale[k]``, in the weights'
    own dtype: one pass over the weights and no float64 copy of them (a ResNet-50's are 100 MB,
    and a warm start spent a fifth of a second converting them); ``scale`` itself is computed
    in float64 by the callers, so only the one product is rounded."""
    return np.multiply(weights, scale.astype(weights.dtype).reshape((-1,) + (1,) * (weights.ndim - 1)))


def fold_into_producer(graph: Graph) -> bool:
    """Fold per-channel affine chains into the convolution or dense layer before them."""
    changed = fold_params(graph)  # per-channel constants computed from parameters become parameters
    users = graph.users()
    for layer in list(graph.nodes):
        if layer.op not in _LAYERS or len(layer.inputs) != 2 or layer.inputs[1].kind not in _STATIC:
            continue
        if layer.inputs[1].data is None or not np.issubdtype(layer.inputs[1].data.dtype, np.floating):
            continue
        axis = _channel_axis(layer)
        channels = layer.output.shape[axis]
        scale, shift = np.ones(1), np.zeros(1)
        chain: list[Node] = []
        y = layer.output
        while True:
            readers = users.get(y, [])
            if len(readers) != 1 or y in graph.outputs or readers[0].op not in _CHAIN:
                break
            nxt = _step(readers[0], y, axis, scale, shift)
            if nxt is None:
                break
            scale, shift = nxt
            chain.append(readers[0])
            y = readers[0].output
        # a lone bias add is already what the fold would produce
        if not chain or (len(chain) == 1 and chain[0].op == "add"):
            continue
        w = layer.inputs[1]
        scale = np.broadcast_to(scale, (channels,))
        shift = np.broadcast_to(shift, (channels,))
        new_w = scaled_weights(w.data, scale)  # type: ignore[arg-type]
        layer.inputs[1] = graph.add_param(f"{w.name}*affine", new_w)
        bias_shape = (channels,) + (1,) * (layer.output.type.rank - 1 - axis)
        bias = graph.add_param(f"{layer.name}:bias*affine", shift.astype(layer.output.dtype).reshape(bias_shape))
        last = chain[-1]
        add = graph.add_node("add", [layer.output, bias], source=last.source, after=layer)
        graph.replace_uses(last.output, add.output)
        for node in chain:
            graph.nodes.remove(node)
        users = graph.users()
        changed = True
    if changed:
        graph.prune_unused()
    return changed
