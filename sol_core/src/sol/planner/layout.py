"""Channels-last regions: convolutions and the element-wise ops, concatenations and poolings
between them computed on (N, H, W, C) tensors, for a device whose convolution library prefers
that layout.

Why: oneDNN's convolutions on AVX-512 (brgconv, the depthwise brdgmm kernels) read and write
channels-last activations whatever the caller asks for; given NCHW tensors they convert on the
way in and out. Between two convolutions the device keeps its own layout, but a concat, a bias
or an activation computed by generated code in between needs the NCHW tensor, so every
convolution around it converted twice: a SqueezeNet Fire module (squeeze, two expands, concat)
transposed three full tensors, an inception block's pooling branch two more.

The region: convolutions a library backend claims as ``conv2d_nhwc``, and the element-wise ops,
channel concatenations, max and average poolings (``max_pool2d_nhwc``, ``avg_pool2d_nhwc``) and
global average poolings (a ``mean`` over H and W) whose every full-size operand comes out of the
region channels-last and whose every reader is in the region. Those nodes compute on
(N, H, W, C) tensors (an element-wise op's per-channel constants and other broadcast operands are
the same numbers seen through a reshape: (1, C, 1, 1) is (1, 1, 1, C) in memory; for the same
reason a result of shape (N, C, 1, 1) may also be read outside the region, through a reshape).
A convolution reads channels-last where its input comes from the region and writes
channels-last where all its readers are in it; everywhere else it reads or writes NCHW
(``input_nhwc``, ``output_nhwc``) and the library converts, as it did before. So no transpose
is ever added: the rewrite only removes conversions.

The model's own layout changes are region edges that cost nothing. A ``transpose`` to NCHW
(perm (0, 3, 1, 2)) of an (N, H, W, C) tensor enters the region: the tensor it transposes is its
channels-last form already (a Keras or tf2onnx model's input before its first convolution, the
end of a ConvNeXt block's channels-last MLP). A ``transpose`` to channels-last (perm (0, 2, 3, 1))
of a region tensor leaves it: its result is that tensor's channels-last form, so its readers
read that instead (a ConvNeXt block's depthwise convolution before its LayerNorm). Both
transposes disappear (an entering one stays where readers outside the region need it). A sum
or mean over H and W of a region tensor (global pooling written as ``x.mean((2, 3))`` or a
Keras ``GlobalAveragePooling2D``) also reads the region: over axes (1, 2) of the channels-last
tensor; its (N, C) result is the same tensor in both layouts, and with ``keepdims`` its
(N, C, 1, 1) result is a region tensor like any other. Nothing changes on a device that does not
ask for it (``preferred_layout``) or for a convolution no backend claims in that form. The
numbers are the same (each op computes the same values, only their order in memory differs; a
global average pooling sums in another order).
"""

from __future__ import annotations

from collections.abc import Callable

from sol.ir import Graph, Node, TensorType, Value, ValueKind
from sol.ops.registry import LayerClass, registry

TO_NHWC = (0, 2, 3, 1)
TO_NCHW = (0, 3, 1, 2)
# Element-wise ops whose result depends on more than each element's own operands (an axis, a
# target shape, a random draw in memory order): not moved to the other layout.
_LAYOUT_BOUND = ("batch_norm", "broadcast_to", "dropout")
# Poolings with a channels-last form.
_POOLS = {"max_pool2d": "max_pool2d_nhwc", "avg_pool2d": "avg_pool2d_nhwc"}


def _nhwc(shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(shape[p] for p in TO_NHWC)


def channels_last(graph: Graph, claims: Callable[[Node], bool]) -> int:
    """Rewrite ``graph`` in place as the module docstring says; ``claims(node)`` tells whether a
    library backend runs a ``conv2d_nhwc`` node. Returns how many nodes compute channels-last."""
    convs = {n for n in graph.nodes if n.op == "conv2d" and _claimed(n, claims)}
    if not convs:
        return 0
    users = graph.users()
    outputs = set(graph.outputs)
    region = convs | {n for n in graph.nodes if _may_join(n)}
    # The largest region that fits the rule: drop nodes breaking it until none does.
    changed = True
    while changed:
        changed = False
        for n in list(region - convs):
            fed = all(role != "full" or _gives_nhwc(v.producer, convs, region, users, outputs)
                      for v, role in zip(n.inputs, _roles(n)))
            if _leaves(n):  # its input must be a region tensor computed by the region
                keep = fed and not (n.op == "transpose" and _enters(n.inputs[0].producer))
            elif _enters(n):  # worth it where a region node reads it
                keep = any(_reads_full(r, n.output) for r in users.get(n.output, []) if r in region)
            else:
                keep = fed and (_writes_nhwc(n, region, users, outputs) or _keeps_order(n.output.shape))
            if not keep:
                region.discard(n)
                changed = True
    if region == convs and not any(_writes_nhwc(c, region, users, outputs) for c in convs):
        return 0  # no convolution pair and nothing between: nothing would change
    twin: dict[Value, Value] = {}  # a value computed channels-last -> its (N, H, W, C) tensor
    nodes: list[Node] = []
    for node in graph.nodes:
        if node in region and _leaves(node):
            if node.op == "transpose":  # its result is the channels-last tensor itself
                graph.replace_uses(node.output, twin[node.inputs[0]])
            else:  # a reduction over H and W to (N, C): the same tensor in both layouts
                attrs = {**node.attrs, "axes": (1, 2)}
                graph.replace_uses(node.output, _emit(graph, nodes, node.op, [twin[node.inputs[0]]], attrs,
                                                     node.source))
            continue
        if node in region and _enters(node):  # the tensor it transposes is the channels-last one
            twin[node.output] = node.inputs[0]
            if _exported(node.output, region, users, outputs):
                nodes.append(node)  # still read as NCHW elsewhere
            continue
        # (a region node other than a convolution always computes channels-last)
        writes_nhwc = node in region and (node not in convs or _writes_nhwc(node, region, users, outputs))
        if node not in region or (node in convs and node.inputs[0] not in twin and not writes_nhwc):
            nodes.append(node)  # (a convolution with no channels-last side stays conv2d)
            continue
        op, attrs = node.op, dict(node.attrs)
        if node in convs:
            attrs.update(input_nhwc=node.inputs[0] in twin, output_nhwc=writes_nhwc)
            ins, op = [twin.get(node.inputs[0], node.inputs[0]), *node.inputs[1:]], "conv2d_nhwc"
        else:
            ins = [twin[v] if role == "full" else _reshaped(graph, v, nodes)
                   for v, role in zip(node.inputs, _roles(node))]
            if node.op == "concat":
                attrs["axis"] = 3
            elif node.op == "adaptive_avg_pool2d":  # to 1x1: the mean over H and W
                op, attrs = "mean", {"axes": (1, 2), "keepdims": True}
            elif node.op in _POOLS:
                op = _POOLS[node.op]
            elif _spatial_sum(node):  # keepdims: (N, 1, 1, C)
                attrs["axes"] = (1, 2)
        out = _emit(graph, nodes, op, ins, attrs, node.source)
        if not writes_nhwc:
            _rename_uses(graph, node.output, out, region)  # an NCHW result
            continue
        twin[node.output] = out
        if _exported(node.output, region, users, outputs):
            # Also read outside the region: (1, C, 1, 1)-like, the same memory in both layouts.
            flat = _emit(graph, nodes, "reshape", [out], {"shape": node.output.shape}, None)
            _rename_uses(graph, node.output, flat, region)
    graph.nodes = nodes
    return len(region)


def _emit(graph: Graph, nodes: list[Node], op: str, ins: list[Value], attrs: dict, source: str | None) -> Value:
    new = Node(op, ins, attrs, source)
    opdef = registry.get(op, new)
    new.attrs = opdef.normalize_attrs(new.attrs, [v.type for v in ins])
    (t,) = opdef.infer([v.type for v in ins], new.attrs)
    out = Value(graph.fresh_name(), t, ValueKind.NODE, producer=new)
    new.outputs, new.name = [out], out.name
    nodes.append(new)
    return out


def _rename_uses(graph: Graph, old: Value, new: Value, region: set[Node]) -> None:
    """Readers of ``old`` outside the region, and region nodes reading it other than as a
    channels-last activation, read ``new`` (the same tensor, NCHW) instead."""
    for n in graph.nodes:
        if n not in region:
            n.inputs = [new if v is old else v for v in n.inputs]
        else:
            n.inputs = [new if v is old and role != "full" else v for v, role in zip(n.inputs, _roles(n))]
    graph.outputs = [new if v is old else v for v in graph.outputs]


def _reshaped(graph: Graph, v: Value, nodes: list[Node]) -> Value:
    """A broadcast operand's channels-last view: a reshape (no copy)."""
    return _emit(graph, nodes, "reshape", [v], {"shape": _nhwc(_padded(v))}, None)


def _writes_nhwc(node: Node, region: set[Node], users: dict[Value, list[Node]], outputs: set[Value]) -> bool:
    """Whether a region node's result is computed channels-last: every reader is in the region
    and reads it as a channels-last activation, or its shape is the same memory in both layouts
    ((N, C, 1, 1): readers elsewhere read it through a reshape) and some region node reads it so."""
    v = node.output
    inside = [r for r in users.get(v, []) if r in region and _reads_full(r, v)]
    if _keeps_order(v.shape):
        return bool(inside)
    return bool(inside) and v not in outputs and len(inside) == len(users.get(v, []))


def _gives_nhwc(producer: Node | None, convs: set[Node], region: set[Node],
                users: dict[Value, list[Node]], outputs: set[Value]) -> bool:
    """Whether a region reader of ``producer``'s result gets it channels-last."""
    if producer is None or producer not in region or _leaves(producer):
        return False
    return producer not in convs or _writes_nhwc(producer, region, users, outputs)


def _enters(node: Node | None) -> bool:
    return node is not None and node.op == "transpose" and tuple(node.attrs["perm"]) == TO_NCHW


def _leaves(node: Node) -> bool:
    """A region reader whose result is an ordinary tensor, not a channels-last one."""
    if node.op == "transpose":
        return tuple(node.attrs["perm"]) == TO_NHWC
    return _spatial_sum(node) and not node.attrs["keepdims"]


def _spatial_sum(node: Node) -> bool:
    """A sum or mean over exactly H and W of a 4-D tensor."""
    return node.op in ("sum", "mean") and node.inputs[0].type.rank == 4 and tuple(node.attrs["axes"]) == (2, 3)


def _exported(v: Value, region: set[Node], users: dict[Value, list[Node]], outputs: set[Value]) -> bool:
    return v in outputs or any(r not in region or not _reads_full(r, v) for r in users.get(v, []))


def _reads_full(reader: Node, v: Value) -> bool:
    return any(u is v and role == "full" for u, role in zip(reader.inputs, _roles(reader)))


def _claimed(conv: Node, claims: Callable[[Node], bool]) -> bool:
    x = conv.inputs[0]
    if x.type.rank != 4:
        return False
    probe = Node("conv2d_nhwc", list(conv.inputs), {**conv.attrs, "input_nhwc": True, "output_nhwc": True},
                 conv.source)
    probe.inputs[0] = Value("probe", TensorType(_nhwc(x.shape), x.dtype), ValueKind.NODE)
    probe.outputs = [Value("probe_out", TensorType(_nhwc(conv.output.shape), conv.output.dtype), ValueKind.NODE,
                           producer=probe)]
    return claims(probe)


def _may_join(node: Node) -> bool:
    """An element-wise op or channel concat of 4-D tensors that could compute channels-last."""
    if len(node.outputs) != 1:
        return False
    if _enters(node) or _leaves(node) or _spatial_sum(node):
        return True
    if node.output.type.rank != 4:
        return False
    if node.op == "concat":
        return bool(node.attrs["axis"] == 1)
    if node.op == "adaptive_avg_pool2d":
        return bool(node.output.shape[2:] == (1, 1))
    if node.op in ("max_pool2d", "avg_pool2d"):
        return True
    if node.op in _LAYOUT_BOUND or node.op not in registry or registry.layer_class(node) is not LayerClass.ELEMENTWISE:
        return False
    return all(v.type.rank <= 4 and (_padded(v) == node.output.shape or _keeps_order(_padded(v)))
               for v in node.inputs)


def _padded(v: Value) -> tuple[int, ...]:
    return (1,) * (4 - v.type.rank) + v.shape


def _roles(node: Node) -> list[str]:
    """How each input enters ``node`` computed channels-last: "full" (an activation), "broadcast"
    (reshaped), "as is" (a convolution's weight and bias)."""
    if node.op in ("conv2d", "conv2d_nhwc"):
        return ["full", *["as is"] * (len(node.inputs) - 1)]
    if _enters(node):
        return ["as is"]
    if _leaves(node):
        return ["full"]
    if node.op in ("concat", "adaptive_avg_pool2d", "mean", "sum", *_POOLS, *_POOLS.values()):
        return ["full"] * len(node.inputs)
    return ["full" if _padded(v) == node.output.shape else "broadcast" for v in node.inputs]


def _keeps_order(shape: tuple[int, ...]) -> bool:
    """Whether the NCHW ``shape``'s non-1 axes come in the same order channels-last, so that
    its channels-last form is a reshape of the same memory."""
    axes = [a for a in TO_NHWC if shape[a] != 1]
    return axes == sorted(axes)
