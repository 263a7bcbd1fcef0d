"""Channels-last regions: convolutions and the element-wise ops and concatenations between them
computed on (N, H, W, C) tensors, for a device whose convolution library prefers that layout.

Why: oneDNN's convolutions on AVX-512 (brgconv, the depthwise brdgmm kernels) read and write
channels-last activations whatever the caller asks for; given NCHW tensors they convert on the
way in and out. Between two convolutions the device keeps its own layout, but a concat, a bias
or an activation computed by generated code in between needs the NCHW tensor, so every
convolution around it converted twice: a SqueezeNet Fire module (squeeze, two expands, concat)
transposed three full tensors, a MobileNetV2 block's residual add two.

The region: convolutions a library backend claims as ``conv2d_nhwc``, and the element-wise ops
and channel concatenations whose every full-size operand comes out of the region channels-last
and whose every reader is in the region. Those nodes compute on (N, H, W, C) tensors (an
element-wise op's per-channel constants and other broadcast operands are the same numbers seen
through a reshape: (1, C, 1, 1) is (1, 1, 1, C) in memory). A convolution reads channels-last
where its input comes from the region and writes channels-last where all its readers are in
it; everywhere else it reads or writes NCHW (``input_nhwc``, ``output_nhwc``) and the library
converts, as it did before. So no transpose is ever added: the rewrite only removes
conversions. Nothing changes on a device that does not ask for it (``preferred_layout``) or
for a convolution no backend claims in that form. The numbers are the same (each op computes
the same values, only their order in memory differs).
"""

from __future__ import annotations

from collections.abc import Callable

from sol.ir import Graph, Node, TensorType, Value, ValueKind
from sol.ops.registry import LayerClass, registry

TO_NHWC = (0, 2, 3, 1)
# Element-wise ops whose result depends on more than each element's own operands (an axis, a
# target shape, a random draw in memory order): not moved to the other layout.
_LAYOUT_BOUND = ("batch_norm", "broadcast_to", "dropout")


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
            fed = all(role != "full" or (v.producer in region and _writes_nhwc(v.producer, region, users, outputs))
                      for v, role in zip(n.inputs, _roles(n)))
            if not fed or not _read_inside(n.output, region, users, outputs):
                region.discard(n)
                changed = True
    if region == convs and not any(_writes_nhwc(c, region, users, outputs) for c in convs):
        return 0  # no convolution pair and nothing between: nothing would change
    twin: dict[Value, Value] = {}
    nodes: list[Node] = []
    for node in graph.nodes:
        if node not in region or (node in convs and node.inputs[0] not in twin
                                  and not _writes_nhwc(node, region, users, outputs)):
            nodes.append(node)  # (a convolution with no channels-last side stays conv2d)
            continue
        if node in convs:
            attrs = {**node.attrs, "input_nhwc": node.inputs[0] in twin,
                     "output_nhwc": _writes_nhwc(node, region, users, outputs)}
            ins, op = [twin.get(node.inputs[0], node.inputs[0]), *node.inputs[1:]], "conv2d_nhwc"
        else:
            attrs = {**node.attrs, "axis": 3} if node.op == "concat" else dict(node.attrs)
            ins = [twin[v] if role == "full" else _reshaped(graph, v, nodes)
                   for v, role in zip(node.inputs, _roles(node))]
            op = node.op
        new = Node(op, ins, attrs, node.source)
        new.attrs = registry.get(op, new).normalize_attrs(new.attrs, [v.type for v in ins])
        (t,) = registry.get(op, new).infer([v.type for v in ins], new.attrs)
        out = Value(graph.fresh_name(), t, ValueKind.NODE, producer=new)
        new.outputs, new.name = [out], out.name
        nodes.append(new)
        if node in convs and not new.attrs["output_nhwc"]:
            _rename_uses(graph, node.output, out)  # an NCHW result, read outside the region
        else:
            twin[node.output] = out  # read only inside the region, through twin
    graph.nodes = nodes
    return len(region)


def _rename_uses(graph: Graph, old: Value, new: Value) -> None:
    """Readers of an NCHW result read the rewritten node's (the same tensor)."""
    for n in graph.nodes:
        n.inputs = [new if v is old else v for v in n.inputs]
    graph.outputs = [new if v is old else v for v in graph.outputs]


def _reshaped(graph: Graph, v: Value, nodes: list[Node]) -> Value:
    """A broadcast operand's channels-last view: a reshape (no copy)."""
    padded = (1,) * (4 - v.type.rank) + v.shape
    node = Node("reshape", [v], {"shape": _nhwc(padded)})
    out = Value(graph.fresh_name(), TensorType(_nhwc(padded), v.dtype), ValueKind.NODE, producer=node)
    node.outputs, node.name = [out], out.name
    nodes.append(node)
    return out


def _writes_nhwc(node: Node, region: set[Node], users: dict[Value, list[Node]], outputs: set[Value]) -> bool:
    return _read_inside(node.output, region, users, outputs)


def _read_inside(v: Value, region: set[Node], users: dict[Value, list[Node]], outputs: set[Value]) -> bool:
    """Whether every reader of ``v`` is in the region and reads it as a channels-last
    activation (a convolution's input, a full-size operand), and ``v`` is no graph output."""
    readers = users.get(v, [])
    if v in outputs or not readers:
        return False
    for r in readers:
        if r not in region:
            return False
        roles = _roles(r)
        if any(u is v and role != "full" for u, role in zip(r.inputs, roles)):
            return False
    return True


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
    if len(node.outputs) != 1 or node.output.type.rank != 4:
        return False
    if node.op == "concat":
        return bool(node.attrs["axis"] == 1)
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
    if node.op == "concat":
        return ["full"] * len(node.inputs)
    return ["full" if _padded(v) == node.output.shape else "broadcast" for v in node.inputs]


def _keeps_order(shape: tuple[int, ...]) -> bool:
    """Whether the NCHW ``shape``'s non-1 axes come in the same order channels-last, so that
    its channels-last form is a reshape of the same memory."""
    axes = [a for a in TO_NHWC if shape[a] != 1]
    return axes == sorted(axes)
