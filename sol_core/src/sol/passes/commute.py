"""Graph transformations that move work past a pooling, where the pooled tensor is smaller.

The seed's slide: ReLU and max pooling commute, ``max(0, max(window)) == max(window of max(0,
x))``, so ReLU after a 2x2 pooling touches a quarter of the elements. Two families, each exact
(the same numbers, rounding aside) wherever it fires:

* **Monotone ops past max pooling** (:func:`monotone_past_max_pool`). ``f(max(S)) == max(f(S))``
  for every window S when f never decreases, keeps NaN NaN and makes no NaN of anything else:
  the unary ops whose :attr:`OpDef.monotone <sol.ops.registry.OpDef.monotone>` says so (relu,
  leaky_relu with alpha > 0, clamp/relu6/hardtanh, sigmoid, tanh, ...) and adding, subtracting
  a finite constant or multiplying, dividing by a positive finite one (what a folded BatchNorm
  leaves). Correctly rounded, such an op is still non-decreasing in floating point, so both
  orders give the same value (a library ``exp``/``tanh`` off by an ulp may differ by that ulp).
  Only where the pooling propagates NaN (PyTorch's rule; TensorFlow's ``nan="ignore"`` starts
  from the lowest finite value, which f would change) and every window holds at least one input
  element (padding is -inf, which the pooling never picks unless a window, with dilation, holds
  nothing else: f(-inf) need not be -inf). Where a window ties at zero the sign of the zero may
  differ, as it may between two max pooling implementations.
* **Linear ops past average pooling** (:func:`linear_past_avg_pool`, ``avg_pool2d`` and
  ``adaptive_avg_pool2d``). An average is a fixed weighted sum per channel, so it commutes
  with any map that mixes channels at each pixel alone: a 1x1 convolution with stride 1, no
  padding and no bias, any groups (DenseNet's transition, BN-ReLU-conv1x1-avgpool2x2, does 4x
  fewer convolution FLOPs after it), a multiplication or division by a constant that does not
  vary over the image, negation. Adding a constant b commutes only where every window's average
  divides by the number of input elements in it (``avg(x + b) = avg(x) + b * n / count``): not
  with counted padding (``count_include_pad``) or a ``divisor`` other than n. The constants and
  weights must be known and finite (``inf * avg`` is not the average of ``inf * x`` where x
  holds a 0; ``x / 0`` not where x changes sign), so with trained weights (training graphs'
  inputs) the convolution stays.

Where one op is applied to every input of a ``concat`` (the same unary op, or per-channel
constants along the concatenated channel axis: ``concat(a*s1, b*s2) = concat(a, b) *
concat(s1, s2)``) and the concat's only reader is the pooling, the op moves past both: the
concat alone would save nothing, the pooling after it does (SqueezeNet's Fire module, ReLU on
both branches, before ceil-mode max pooling; GoogLeNet's inception blocks).

**Only when it does less work.** A move is made when the nodes after it, counted by
:mod:`sol.workload` one by one, do fewer FLOPs and move no more bytes than the nodes before it:
no device whose speed is bounded by either can get slower. For an element-wise op this means
the pooling's output is smaller than its input (not for a 3x3 stride-1 pooling); for a 1x1
convolution, that the convolution on fewer pixels saves more than pooling more channels costs.
The counts are per node, as if nothing fused; the planner cannot lose a free epilogue through
the move: an element-wise chain that leads into a fusible pooling is never made a library's
epilogue (it is computed in the pooling's loop nest instead, :mod:`sol.planner.partition`), so
the op moves from one loop nest to the same loop nest, after the pooling.

**Training.** Both run on training graphs too, and gradients stay the framework's: passes run on
the forward and backward graphs that :func:`sol.autodiff.differentiate` built from the graph as
imported (:func:`sol.autodiff.compile_training`), so the backward graph's max pooling gradient
still routes to f's first maximum, PyTorch's choice, which differs from the input's maximum
where f maps two inputs to one value (clamp's flat ends; tests/pytorch/test_rewrites.py). The
moved forward computes the same values, and a value the backward reads from the forward (a
saved tensor, a graph output) is never moved away: an op whose result is read by anything but
the pooling stays where it is. Were passes ever to run before differentiation, the max pooling
move would have to become inference-only; the average pooling move would not (the gradient of
a composition of linear maps is the composition of their transposes, in either order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from sol.ir import Graph, Node, TensorType, Value, ValueKind
from sol.ops.registry import LayerClass, registry
from sol.workload import Work, node_work

_STATIC = (ValueKind.PARAM, ValueKind.CONST)
_AVG_POOLS = ("avg_pool2d", "adaptive_avg_pool2d")
_COMMUTATIVE = ("add", "mul")


@dataclass
class _Op:
    """An op that may move past a pooling: ``op(*operands)`` where the operand at ``x_index``
    is the tensor being pooled and ``other`` (binary ops, the convolution's weight) is static."""

    op: str
    attrs: dict
    x_index: int
    other: Value | None
    source: str | None

    def operands(self, x: Value) -> list[Value]:
        if self.other is None:
            return [x]
        return [x, self.other] if self.x_index == 0 else [self.other, x]

    def constant(self) -> np.ndarray:
        assert self.other is not None and self.other.data is not None
        return np.asarray(self.other.data)


Rule = Callable[[_Op, Value, Node], bool]


def monotone_past_max_pool(graph: Graph) -> bool:
    """``max_pool2d(f(x))`` -> ``f(max_pool2d(x))`` for monotone f (see the module docstring)."""
    return _until_fixed(graph, ("max_pool2d",), _fits_max_pool)


def linear_past_avg_pool(graph: Graph) -> bool:
    """``avg_pool(L(x))`` -> ``L(avg_pool(x))`` for per-pixel linear L (see the module docstring)."""
    return _until_fixed(graph, _AVG_POOLS, _fits_avg_pool)


def _until_fixed(graph: Graph, pools: tuple[str, ...], fits: Rule) -> bool:
    changed = False
    while _move_one(graph, pools, fits):
        changed = True
    if changed:
        graph.prune_unused()
    return changed


def _move_one(graph: Graph, pools: tuple[str, ...], fits: Rule) -> bool:
    """Make the first move that fits and pays; False when there is none."""
    users = graph.users()
    outputs = set(graph.outputs)
    for pool in list(graph.nodes):
        if pool.op not in pools:
            continue
        producer = _sole_producer(pool.inputs[0], pool, users, outputs)
        if producer is None:
            continue
        if producer.op == "concat":
            if _move_through_concat(graph, producer, pool, users, outputs, fits):
                return True
            continue
        found = _as_op(producer)
        if found is not None and fits(found[0], found[1], pool) and _move(graph, found[0], [found[1]], None, pool,
                                                                          [producer]):
            return True
    return False


def _sole_producer(v: Value, reader: Node, users: dict[Value, list[Node]], outputs: set[Value]) -> Node | None:
    """The node producing ``v`` when ``reader`` is all that reads it (else the value is needed
    as it is anyway, and moving its op would only add work)."""
    if v.producer is None or v in outputs or any(u is not reader for u in users.get(v, [])):
        return None
    return v.producer


def _as_op(node: Node) -> tuple[_Op, Value] | None:
    """``node`` as a movable op and the operand it pools, or None: one output of its input's
    type and floating dtype, unary, or binary/convolution with every other operand static."""
    if len(node.outputs) != 1 or not node.inputs or not node.output.dtype.startswith("float"):
        return None
    if node.op == "conv2d":
        if len(node.inputs) != 2:
            return None  # a bias adds b at padded positions of the average's window too
        x_index = 0
    elif registry.layer_class(node) is LayerClass.ELEMENTWISE and len(node.inputs) <= 2:
        dynamic = [i for i, v in enumerate(node.inputs) if v.kind not in _STATIC]
        if len(dynamic) != 1:
            return None
        x_index = dynamic[0]
        if node.inputs[x_index].type != node.output.type:
            return None  # broadcasting grew the tensor: its op is no longer per element of x
    else:
        return None
    others = [v for i, v in enumerate(node.inputs) if i != x_index]
    if any(v.kind not in _STATIC or v.data is None for v in others):
        return None
    # x + k and k + x are one op (IEEE addition and multiplication commute exactly): one form,
    # so that concat parts written either way move as one.
    order = 0 if node.op in _COMMUTATIVE else x_index
    op = _Op(node.op, dict(node.attrs), order, others[0] if others else None, node.source)
    return op, node.inputs[x_index]


# --- which ops commute with which pooling ------------------------------------------------------

def _fits_max_pool(op: _Op, x: Value, pool: Node) -> bool:
    if pool.attrs.get("nan", "propagate") != "propagate" or not _every_window_reads_input(pool, x):
        return False
    if op.other is None:
        monotone = registry.get(op.op).monotone
        return bool(monotone(Node(op.op, [], op.attrs)) if callable(monotone) else monotone)
    if op.op not in ("add", "sub", "mul", "div") or not _spatially_constant(op.other, x):
        return False
    k = op.constant()
    if not np.all(np.isfinite(k)):
        return False
    if op.op == "add":
        return True
    if op.op == "sub":
        return op.x_index == 0  # x - k; k - x reverses the order
    return bool(np.all(k > 0)) and (op.op == "mul" or op.x_index == 0)  # x * k, k * x, x / k


def _fits_avg_pool(op: _Op, x: Value, pool: Node) -> bool:
    if op.op == "neg":
        return True
    if op.other is None or not np.all(np.isfinite(op.constant())):
        return False
    if op.op == "conv2d":
        return _is_pixelwise_conv(op)
    if op.op not in ("add", "sub", "mul", "div") or not _spatially_constant(op.other, x):
        return False
    if op.op == "mul":
        return True
    if op.op == "div":
        return op.x_index == 0 and bool(np.all(op.constant() != 0))
    return _averages_divide_by_input_count(pool, x)  # add, sub: a shift


def _is_pixelwise_conv(op: _Op) -> bool:
    """1x1, stride 1, no padding, no bias (split_bias made it a separate add): each output pixel
    is a linear map of the same input pixel alone (dilation means nothing for a 1x1 kernel)."""
    w = op.other
    a = op.attrs
    return (w is not None and w.type.rank == 4 and w.shape[2:] == (1, 1) and tuple(a["stride"]) == (1, 1)
            and tuple(map(tuple, a["padding"])) == ((0, 0), (0, 0)))


def _spatially_constant(k: Value, x: Value) -> bool:
    """``k`` is the same at every pixel of the (N, C, H, W) ``x`` and does not broadcast it to
    a larger shape: it may vary along N and C only."""
    if x.type.rank != 4 or k.type.rank > 4:
        return False
    shape = (1,) * (4 - k.type.rank) + k.shape
    return shape[2:] == (1, 1) and all(d in (1, n) for d, n in zip(shape[:2], x.shape[:2]))


def _axis_windows(size: int, out: int, kernel: int, stride: int, pad: tuple[int, int], dilation: int
                  ) -> list[tuple[int, int]]:
    """Per output index along one axis: (input elements in its window, elements of the window
    inside the padded input). Beyond the padded input (ceil_mode's last window) counts as neither,
    as in PyTorch's divisor and sol's reference."""
    lo, hi = pad
    counts = []
    for o in range(out):
        positions = [o * stride - lo + i * dilation for i in range(kernel)]
        counts.append((sum(0 <= p < size for p in positions), sum(-lo <= p < size + hi for p in positions)))
    return counts


def _pool_axes(pool: Node, x: Value) -> list[list[tuple[int, int]]]:
    a = pool.attrs
    dilation = a.get("dilation", (1, 1))
    return [_axis_windows(x.shape[2 + i], pool.output.shape[2 + i], a["kernel"][i], a["stride"][i], a["padding"][i],
                          dilation[i]) for i in range(2)]


def _every_window_reads_input(pool: Node, x: Value) -> bool:
    """No window of only padding (possible with dilation): max pooling gives -inf there, which f
    would not give."""
    return all(real > 0 for axis in _pool_axes(pool, x) for real, _ in axis)


def _averages_divide_by_input_count(pool: Node, x: Value) -> bool:
    """Every window's average divides by the number of input elements in it, so a constant
    added to every element adds exactly itself to every average."""
    if pool.op == "adaptive_avg_pool2d":
        return True  # windows lie inside the input and divide by their size
    axes = _pool_axes(pool, x)
    divisor = pool.attrs.get("divisor")
    if divisor is not None:
        return all(rh * rw == divisor for rh, _ in axes[0] for rw, _ in axes[1])
    include_pad = pool.attrs.get("count_include_pad", True)
    # Per axis suffices: the count of a window is the product of its axes' counts.
    return all(real == (padded if include_pad else real) for axis in axes for real, padded in axis)


# --- moving ------------------------------------------------------------------------------------

def _move(graph: Graph, op: _Op, xs: list[Value], concat: Node | None, pool: Node, removed: list[Node]) -> bool:
    """Replace ``removed`` (the op's nodes, the concat) and ``pool`` by ``op(pool(x))`` (``x``
    being ``xs[0]``, or ``concat(xs)`` with the concat's attributes), when that does less work;
    else leave the graph as it was and return False."""
    added: list[Node] = []
    after = pool
    x = xs[0]
    if concat is not None:
        after = graph.add_node("concat", xs, dict(concat.attrs), source=concat.source, after=after)
        added.append(after)
        x = after.output
    pooled = graph.add_node(pool.op, [x], dict(pool.attrs), source=pool.source, after=after)
    moved = graph.add_node(op.op, op.operands(pooled.output), op.attrs, source=op.source, after=pooled)
    added += [pooled, moved]
    if moved.output.type != pool.output.type or not _cheaper(removed + [pool], added):
        for node in added:
            graph.nodes.remove(node)
        return False
    if op.other is not None and op.other.kind is ValueKind.CONST and op.other not in graph.consts:
        graph.consts.append(op.other)  # a joint constant made for the move (_joint_op)
    graph.replace_uses(pool.output, moved.output)
    for node in removed + [pool]:
        graph.nodes.remove(node)
    return True


def _cheaper(before: list[Node], after: list[Node]) -> bool:
    """Fewer FLOPs and no more bytes (sol.workload's counts, node by node)."""
    old = sum((node_work(n) for n in before), Work())
    new = sum((node_work(n) for n in after), Work())
    return new.flops < old.flops and new.bytes <= old.bytes


def _move_through_concat(graph: Graph, concat: Node, pool: Node, users: dict[Value, list[Node]],
                         outputs: set[Value], fits: Rule) -> bool:
    """``pool(concat(op(a), op(b), ...))`` -> ``op(pool(concat(a, b, ...)))``: one op applied to
    every part (per-channel constants concatenated along the channel axis)."""
    parts: list[Node] = []
    ops: list[_Op] = []
    xs: list[Value] = []
    for v in concat.inputs:
        part = _sole_producer(v, concat, users, outputs)
        if part is None or part in parts:
            return False  # a part read elsewhere, or concatenated twice
        found = _as_op(part)
        if found is None:
            return False
        parts.append(part)
        ops.append(found[0])
        xs.append(found[1])
    first = ops[0]
    if first.op == "conv2d" or any(o.op != first.op or o.attrs != first.attrs or o.x_index != first.x_index
                                   for o in ops):
        return False
    joint = _joint_op(graph, concat, ops, xs)
    # concat(xs) has the concat's type: each part's op kept its operand's type (_as_op).
    if joint is None or not fits(joint, concat.output, pool):
        return False
    return _move(graph, joint, xs, concat, pool, parts + [concat])


def _joint_op(graph: Graph, concat: Node, ops: list[_Op], xs: list[Value]) -> _Op | None:
    """The one op after the concat that does what ``ops`` did to the parts: the same unary op,
    or the binary op with the parts' per-channel constants concatenated (channel axis only)."""
    first = ops[0]
    if first.other is None:
        return first
    if concat.attrs["axis"] != 1 or concat.output.type.rank != 4:
        return None
    pieces = []
    for o, x in zip(ops, xs):
        assert o.other is not None
        if not _spatially_constant(o.other, x) or o.other.dtype != x.dtype:
            return None
        data = np.asarray(o.other.data)
        data = data.reshape((1,) * (4 - data.ndim) + data.shape)
        if data.shape[0] != 1:
            return None  # varies along the batch too: not one channel vector
        pieces.append(np.broadcast_to(data[0, :, 0, 0], (x.shape[1],)))
    joined = np.concatenate(pieces).reshape(-1, 1, 1).astype(xs[0].dtype)
    # Not in graph.consts until a move uses it (_move): a failed try leaves nothing behind.
    k = Value(graph.fresh_name("k"), TensorType(joined.shape, str(joined.dtype)), ValueKind.CONST, data=joined)
    return _Op(first.op, first.attrs, first.x_index, k, first.source)
