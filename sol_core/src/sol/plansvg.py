"""A plan as an SVG picture: groups as boxes coloured by layer class, their fused ops inside, the
library that runs each library group, tensor types on the edges.

The layout is our own small layered one (longest-path layers, barycentre ordering, straight
edges through one bend point per layer crossed), so the picture needs nothing installed beyond
sol-core: no Graphviz binary, no layout package, the same output on every machine (which makes
it testable). ``Explanation.dot()`` remains for whoever wants Graphviz's layout.

Model text (graph, input and layer names, source locations) is untrusted: it reaches the SVG
only through :func:`_text` / :func:`_attr` (characters XML cannot hold replaced, then escaped).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

from sol.ops.registry import LayerClass
from sol.planner.plan import Group, GroupKind, Plan

COLOURS = {
    LayerClass.ELEMENTWISE: "#d8f0d2", LayerClass.IO_BOUND: "#d6e6fa", LayerClass.COMPUTE_BOUND: "#fbdcbc",
    LayerClass.PARAM_BOUND: "#fbf0a8", LayerClass.ORDER_CONSTRAINED: "#e6d8f4", LayerClass.SHAPE: "#ececec",
}
"""Box fill per layer class (the legend lists those a plan uses)."""
TERMINAL = "#ffffff"  # graph inputs and outputs
MAX_OPS = 12  # op lines in one box; the rest are counted (the tooltip lists them all)
MAX_NAME = 48  # characters of one name in a box
CHAR_W, LINE_H, PAD, GAP_X, GAP_Y, MARGIN = 7.2, 15, 8, 28, 56, 20

# XML 1.0 has no way to write these (not even as character references), and lone surrogates
# cannot be encoded: a model name holding one would make the file unreadable.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _clean(text: object, limit: int) -> str:
    s = _NOT_XML.sub("?", str(text))
    return s if len(s) <= limit else s[: limit - 3] + "..."


def _text(text: object, limit: int = MAX_NAME) -> str:
    """Model text as SVG character data."""
    return escape(_clean(text, limit))


def _attr(text: object, limit: int = MAX_NAME) -> str:
    """Model text as a quoted SVG attribute value (quotes included)."""
    return quoteattr(_clean(text, limit))


@dataclass(eq=False)
class _Node:
    lines: list[str]  # plain text, escaped when written
    fill: str
    shape: str  # "box", "ellipse" or "dummy" (a bend point of a long edge)
    tooltip: str = ""
    dashed: bool = False
    sink: bool = False  # a graph output: drawn in the bottom layer
    span: float = 0.0  # a dummy: the height of its layer, which its edge crosses straight down
    layer: int = 0
    order: float = 0.0
    x: float = 0.0
    y: float = 0.0
    preds: list[_Node] = field(default_factory=list)
    succs: list[_Node] = field(default_factory=list)

    @property
    def w(self) -> float:
        return 8.0 if self.shape == "dummy" else max(len(t) for t in self.lines) * CHAR_W + 2 * PAD + 8

    @property
    def h(self) -> float:
        return self.span if self.shape == "dummy" else len(self.lines) * LINE_H + 2 * PAD


def _group_lines(g: Group) -> tuple[list[str], str]:
    """(box lines, tooltip) for one group."""
    head = {GroupKind.LIBRARY: f"library {g.backend}", GroupKind.FUSED: "fused loop nest",
            GroupKind.ALIAS: "alias (no code)", GroupKind.RECURRENT: "sequential loop"}[g.kind]
    if g.kind is GroupKind.FUSED and g.kernel is not None:
        head += f" over {'x'.join(map(str, g.kernel.outer_shape)) or '1'}"
    if g.kind is GroupKind.RECURRENT and g.recurrent is not None:
        head += f" ({g.recurrent.cell}, {g.recurrent.steps} steps)"
    ops = [("+ " if g.kind is GroupKind.LIBRARY and i else "") + n.op for i, n in enumerate(g.nodes)]
    shown = ops if len(ops) <= MAX_OPS else ops[: MAX_OPS - 1] + [f"... {len(ops) - MAX_OPS + 1} more ops"]
    lines = [_clean(f"{g.label} {head}", MAX_NAME), g.layer_class.value] + [_clean(o, MAX_NAME) for o in shown]
    tip = [f"{g.label}: {head}, {g.layer_class.value}"]
    tip += [f"#{i + 1} {n.op} -> {', '.join(str(v.type) for v in n.outputs)}" + (f"  <- {n.source}" if n.source else "")
            for i, n in enumerate(g.nodes)]
    return lines, "\n".join(tip)


def _build(plan: Plan) -> tuple[list[_Node], list[tuple[_Node, _Node, str]]]:
    """Nodes (inputs, groups, outputs) and edges (source, target, tensor types)."""
    nodes: list[_Node] = []
    made: dict[object, _Node] = {}
    edges: dict[tuple[int, int], tuple[_Node, _Node, list[str]]] = {}

    def edge(a: _Node, b: _Node, label: str) -> None:
        edges.setdefault((id(a), id(b)), (a, b, []))[2].append(label)

    for v in plan.graph.inputs:
        made[v] = _Node([_clean(f"input {v.name}", MAX_NAME), str(v.type)], TERMINAL, "ellipse")
        nodes.append(made[v])
    producer: dict[object, _Node] = dict(made)
    for g in plan.groups:
        lines, tip = _group_lines(g)
        node = _Node(lines, COLOURS.get(g.layer_class, TERMINAL), "box", tip, dashed=g.kind is GroupKind.ALIAS)
        nodes.append(node)
        for v in g.inputs:
            if v in producer:
                edge(producer[v], node, str(v.type))
        for n in g.nodes:
            for v in n.outputs:
                producer[v] = node
    for i, v in enumerate(plan.graph.outputs):
        out = _Node([f"output {i}", str(v.type)], TERMINAL, "ellipse", sink=True)
        nodes.append(out)
        if v in producer:
            edge(producer[v], out, str(v.type))
    return nodes, [(a, b, ", ".join(dict.fromkeys(labels))) for a, b, labels in edges.values()]


def _layout(nodes: list[_Node], edges: list[tuple[_Node, _Node, str]]) -> list[list[_Node]]:
    """Layers (top to bottom) with every node's x, y; long edges get one dummy per layer crossed."""
    for a, b, _ in edges:
        a.succs.append(b)
        b.preds.append(a)
    for n in nodes:  # nodes come in execution order: every predecessor is placed already
        n.layer = 1 + max((p.layer for p in n.preds), default=-1)
    last = max((n.layer for n in nodes), default=0)
    for n in nodes:
        if n.sink:  # graph outputs at the bottom
            n.layer = last
    layers: list[list[_Node]] = [[] for _ in range(last + 1)]
    for n in nodes:
        layers[n.layer].append(n)
    for a, b, _ in edges:  # long edges: bend points, so that barycentres see them
        prev = a
        for k in range(a.layer + 1, b.layer):
            d = _Node([""], "", "dummy", layer=k, preds=[prev])
            prev.succs[prev.succs.index(b)] = d
            d.succs.append(b)
            layers[k].append(d)
            prev = d
        if prev is not a:
            b.preds[b.preds.index(a)] = prev
    for layer in layers:
        for i, n in enumerate(layer):
            n.order = float(i)
    for sweep in range(8):  # barycentre ordering, alternately downwards and upwards
        downward = sweep % 2 == 0
        for layer in layers[1:] if downward else reversed(layers[:-1]):
            for n in layer:
                near = n.preds if downward else n.succs
                if near:
                    n.order = sum(m.order for m in near) / len(near)
            layer.sort(key=lambda m: m.order)
            for i, n in enumerate(layer):
                n.order = float(i)
    width = max((sum(n.w for n in layer) + GAP_X * (len(layer) - 1) for layer in layers), default=0.0)
    y = float(MARGIN + 2 * LINE_H)  # below the legend
    for layer in layers:
        x = MARGIN + (width - sum(n.w for n in layer) - GAP_X * (len(layer) - 1)) / 2
        height = max((n.h for n in layer), default=0.0)
        for n in layer:
            n.x, n.y = x + n.w / 2, y + height / 2
            n.span = height if n.shape == "dummy" else 0.0
            x += n.w + GAP_X
        y += height + GAP_Y
    return layers


def plan_svg(plan: Plan) -> str:
    """The plan as a standalone SVG document (hover a box for every op and where it came from)."""
    nodes, edges = _build(plan)
    layers = _layout(nodes, edges)
    everything = [n for layer in layers for n in layer]
    width = max((n.x + n.w / 2 for n in everything), default=0.0) + MARGIN
    height = max((n.y + n.h / 2 for n in everything), default=0.0) + MARGIN
    used = [c for c in COLOURS if any(g.layer_class is c for g in plan.groups)]
    width = max(width, MARGIN * 2 + sum(len(c.value) * CHAR_W + 30 for c in used))
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
           f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="monospace" font-size="12">',
           f"<title>{_text(f'sol plan for {plan.graph.name} on {plan.device}', 200)}</title>",
           '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
           'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
           f'<rect width="{width:.0f}" height="{height:.0f}" fill="white"/>']
    x = float(MARGIN)
    for c in used:  # legend
        out.append(f'<rect x="{x:.1f}" y="{MARGIN}" width="14" height="14" fill="{COLOURS[c]}" stroke="#555"/>'
                   f'<text x="{x + 20:.1f}" y="{MARGIN + 11}">{_text(c.value)}</text>')
        x += len(c.value) * CHAR_W + 30
    for a, b, _ in edges:
        out.append(_edge(a, b))
    for n, labels in _labels(edges).items():  # a tensor's type once, where it leaves its producer
        for i, label in enumerate(labels):
            out.append(f'<text x="{n.x + 5:.1f}" y="{n.y + n.h / 2 + 13 + 12 * i:.1f}" font-size="10" fill="#333" '
                       f'stroke="white" stroke-width="3" paint-order="stroke">{_text(label, 120)}</text>')
    for n in everything:
        if n.shape != "dummy":
            out.append(_box(n))
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _labels(edges: list[tuple[_Node, _Node, str]]) -> dict[_Node, list[str]]:
    found: dict[_Node, list[str]] = {}
    for a, _, label in edges:
        if label not in found.setdefault(a, []):
            found[a].append(label)
    return found


def _edge(a: _Node, b: _Node) -> str:
    """A polyline from ``a``'s bottom, straight down through each layer it crosses (beside the
    boxes there), to ``b``'s top: it bends only in the gaps between layers."""
    points = [(a.x, a.y + a.h / 2)]
    n = a
    while n.succs and n is not b:
        n = next((s for s in n.succs if s is b or s.shape == "dummy" and _reaches(s, b)), b)
        points += [(n.x, n.y - n.h / 2)] if n is b else [(n.x, n.y - n.h / 2), (n.x, n.y + n.h / 2)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
    return f'<polyline points="{path}" fill="none" stroke="#555" marker-end="url(#arrow)"/>'


def _reaches(d: _Node, b: _Node) -> bool:
    while d.shape == "dummy":
        d = d.succs[0]
    return d is b


def _box(n: _Node) -> str:
    left, top = n.x - n.w / 2, n.y - n.h / 2
    if n.shape == "ellipse":
        shape = f'<ellipse cx="{n.x:.1f}" cy="{n.y:.1f}" rx="{n.w / 2:.1f}" ry="{n.h / 2:.1f}" fill="{n.fill}" ' \
                'stroke="#333"/>'
    else:
        dash = ' stroke-dasharray="4 3"' if n.dashed else ""
        shape = f'<rect x="{left:.1f}" y="{top:.1f}" width="{n.w:.1f}" height="{n.h:.1f}" rx="4" fill="{n.fill}" ' \
                f'stroke="#333"{dash}/>'
    anchor = "middle" if n.shape == "ellipse" else "start"
    tx = n.x if n.shape == "ellipse" else left + PAD
    bold = ' font-weight="bold"'
    texts = [f'<text x="{tx:.1f}" y="{top + PAD + (i + 1) * LINE_H - 3:.1f}" text-anchor="{anchor}"'
             f'{bold if i == 0 else ""}>{_text(t)}</text>' for i, t in enumerate(n.lines)]
    tip = f"<title>{_text(n.tooltip, 20000)}</title>" if n.tooltip else ""
    return f"<g>{tip}{shape}{''.join(texts)}</g>"
