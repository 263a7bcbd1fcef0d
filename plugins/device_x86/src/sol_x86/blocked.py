"""Which convolutions run in oneDNN's 16-channel blocked layout (nChw16c) rather than the
network's channels-last one.

Why: asked for "any" layout, oneDNN 3.2 gives channels-last 1x1 and depthwise convolutions its
brgemm kernels, and on this AMD machine those run the memory-bound layers of small channel
counts at large images (MobileNetV2's first blocks) up to 1.8x slower than its blocked kernels
(measured one convolution at a time, all of oneDNN's implementations interleaved: 16 -> 96
channels at 112x112, batch 8, 2.74 ms channels-last against 1.51 ms blocked; a 3x3 depthwise
one on 32 channels 1.02 against 0.67 ms). The blocked layout only pays inside a chain of
convolutions, though: a tensor that a generated loop (a pooling, a concatenation, a
squeeze-excitation scale) reads or writes must be converted, and forcing every convolution
blocked made SqueezeNet 37% and EfficientNet-B0 20% slower.

So a convolution is blocked only inside such a chain: its input comes from another blocked
convolution (or is the network's NCHW input) and every reader of its output is a blocked
convolution (as its input or its residual-sum operand, which ``LibraryOp::keep_native`` then
leaves in oneDNN's layout), except that a chain may end in a small output (at most
``SMALL_PIXELS`` pixels per channel, the last stages' 7x7 and 14x14), converted for whatever
reads it, and a convolution alone (no blocked one before or after it) keeps nothing in the
blocked layout, so it is not blocked. The rule is applied until no convolution changes.
Measured with the rule before the input was held to that too (a small input from a loop
allowed): GoogLeNet's and EfficientNet-B0's last stages became blocked between conversions, 5-6%
slower at batch 8. With it, of the zoo only MobileNetV2 has such chains (all 52 convolutions):
32.2 ms against 37.7 at batch 8, level at batch 1 (4.66 / 4.60 and 4.92 / 5.24 ms, two runs).
"""

from __future__ import annotations

from collections.abc import Callable

from sol.plugin_api import Group, GroupKind, Plan, Value

OPTION = "blocked_chains"
"""``optimize(..., blocked_chains=False)`` keeps every convolution in oneDNN's own choice."""
SMALL_PIXELS = 14 * 14
_OPS = ("conv2d", "conv2d_nhwc")

Readers = Callable[[Group], "list[tuple[str, int]] | None"]


def _pixels(v: Value, nhwc: bool) -> int:
    shape = v.shape
    if len(shape) != 4:
        return 0
    return shape[1] * shape[2] if nhwc else shape[2] * shape[3]


def blocked_convs(plan: Plan, candidates: dict[int, bool], conv_readers: Readers) -> frozenset[int]:
    """The ids of the convolution groups to run blocked. ``candidates``: the forward
    convolution groups oneDNN computes directly (not Winograd), each with whether its output is
    channels-last; ``conv_readers(g)``: how library convolution groups read g's result, or None
    when anything else reads it (NetworkRenderer.conv_readers, which also makes the layout links)."""
    if not plan.options.get(OPTION, True) or not candidates:
        return frozenset()
    graph = plan.graph
    group_of = {n: g for g in plan.groups for n in g.nodes}
    groups = {g.id: g for g in plan.groups if g.id in candidates and g.kind is GroupKind.LIBRARY
              and g.anchor.op in _OPS}
    inputs = set(graph.inputs)

    def small(v: Value, nhwc: bool) -> bool:
        return 0 < _pixels(v, nhwc) <= SMALL_PIXELS

    def readers(g: Group) -> list[int] | None:
        """The candidate groups reading g's output, or None if anything else reads it."""
        roles = conv_readers(g)
        if roles is None or any(h not in groups for _, h in roles):
            return None
        return [h for _, h in roles]

    def producer(g: Group) -> int | None:
        """The conv group writing g's input; -1 for the network's own (NCHW) input."""
        x = g.anchor.inputs[0]
        if x in inputs and not g.anchor.attrs.get("input_nhwc", False):
            return -1
        h = group_of.get(x.producer) if x.producer is not None else None
        return h.id if h is not None and h.id in groups and readers(h) is not None else None

    chosen = set(groups)
    changed = True
    while changed:
        changed = False
        for gid in sorted(chosen):
            g = groups[gid]
            y = g.nodes[-1].output
            src = producer(g)
            src_ok = src == -1 or src in chosen
            read = readers(g)
            dst_ok = small(y, candidates[gid]) or (read is not None and all(r in chosen for r in read))
            linked = src in chosen or (read is not None and any(r in chosen for r in read))  # no lone ones
            if not (src_ok and dst_ok and linked) or _pixels(y, candidates[gid]) <= 1:
                chosen.discard(gid)
                changed = True
    return frozenset(chosen)
