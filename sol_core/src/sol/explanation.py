"""Human-readable plans: a text table of groups, and the fused graph as DOT or as an SVG picture."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sol.planner.plan import GroupKind, Plan
from sol.sourcetext import comment_text

if TYPE_CHECKING:
    from sol.roles import Device, Estimate


class Explanation:
    def __init__(self, plan: Plan, device: Device | None = None) -> None:
        self.plan = plan
        self.estimates: dict[int, Estimate] = {}
        self.transfer: Estimate | None = None
        if device is not None:
            for g in plan.groups:
                est = device.estimate(g, plan)
                if est is not None:
                    self.estimates[g.id] = est
            self.transfer = device.estimate_transfer(plan)

    def __str__(self) -> str:
        p = self.plan
        m = p.memory
        lines = [f"sol plan for {p.graph.name} on {p.device}: {len(p.graph.nodes)} ops in {len(p.groups)} groups; "
                 f"workspace {m.arena_bytes / 2**20:.2f} MiB (one buffer per tensor: {m.naive_bytes / 2**20:.2f} MiB)"]
        for g in p.groups:
            how = {GroupKind.LIBRARY: f"library {g.backend}", GroupKind.FUSED: "generated loop nest",
                   GroupKind.ALIAS: "alias (no code)", GroupKind.RECURRENT: "sequential loop"}[g.kind]
            if g.kind is GroupKind.RECURRENT and g.recurrent is not None:
                r = g.recurrent
                how += (f" over {r.steps} steps{' (reverse)' if r.reverse else ''}, per step: "
                        f"h[{r.batch}x{r.hidden}] @ W_hh^T -> {r.batch}x{r.gates * r.hidden}, "
                        f"then one fused {r.cell} cell pass over {r.batch}x{r.hidden}")
            if g.kind is GroupKind.FUSED and g.kernel is not None:
                k = g.kernel
                how += f", depth-first over {'x'.join(map(str, k.outer_shape)) or '1'}"
                if k.locals:
                    how += f", {len(k.locals)} scratch tensor(s) {k.local_bytes()} B/iteration"
            est = self.estimates.get(g.id)
            if est is not None:
                how += (f"; estimate {est.seconds * 1e6:.1f} us ({est.bound} bound: {est.flops / 1e6:.1f} MFLOP, "
                        f"{est.bytes / 1e6:.2f} MB)")
            lines.append(f"{g.label:>4}  {g.layer_class.value:<28} {how}")
            for i, n in enumerate(g.nodes):
                role = "epilogue " if g.kind is GroupKind.LIBRARY and i > 0 else ""
                src = f"  <- {n.source}" if n.source else ""
                outs = ", ".join(str(v.type) for v in n.outputs)
                lines.append(f"        #{i + 1} {role}{n.op} -> {outs}{src}")
        if self.estimates:
            total = sum(e.seconds for e in self.estimates.values())
            basis = next(iter(self.estimates.values())).basis
            lines.append(f"estimated total {total * 1e3:.3f} ms: an estimate ({basis}), not a measurement")
        if self.transfer is not None:
            t = self.transfer
            lines.append(f"estimated host<->device transfer {t.seconds * 1e3:.3f} ms per call ({t.bytes / 1e6:.2f} MB "
                         f"of inputs and outputs, {t.basis}): an estimate, not included in the total above")
        return "\n".join(lines)

    __repr__ = __str__

    def dot(self) -> str:
        """The fused graph in Graphviz DOT: one box per group, edges for tensors between them."""
        p = self.plan
        out = ["digraph sol {", "  rankdir=TB; node [shape=box, fontname=monospace];"]
        producer = {v: g for g in p.groups for n in g.nodes for v in n.outputs}
        # Node ids are generated; names (the model's) appear only in escaped labels.
        input_id = {v: f"in{i}" for i, v in enumerate(p.graph.inputs)}
        for v, ident in input_id.items():
            out.append(f'  {ident} [shape=ellipse, label="{_dot(v.name)}\\n{v.type}"];')
        for g in p.groups:
            ops = "\\n".join(n.op for n in g.nodes)
            extra = f"\\n[{g.backend}]" if g.backend else ""
            out.append(f'  {g.label} [label="{g.label} {g.kind.value}{extra}\\n{ops}"];')
            for v in g.inputs:
                if v in producer:
                    out.append(f'  {producer[v].label} -> {g.label} [label="{v.type}"];')
                elif v in input_id:
                    out.append(f'  {input_id[v]} -> {g.label};')
        out.append("}")
        return "\n".join(out)

    def write_dot(self, path: str) -> None:
        with open(path, "w") as f:
            f.write(self.dot())

    def svg(self) -> str:
        """The fused graph as an SVG picture: groups as boxes coloured by layer class with their
        ops and library, tensor types on the edges (:mod:`sol.plansvg`; needs no Graphviz)."""
        from sol.plansvg import plan_svg

        return plan_svg(self.plan)

    def write_svg(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(self.svg())

    def _repr_svg_(self) -> str:
        """Jupyter/IPython: ``sol.explain(model, x)`` as a cell's last line shows the picture."""
        return self.svg()


def _dot(text: str) -> str:
    """``text`` inside a DOT double-quoted string: value names come from the model (a graph
    input is named after the forward's argument), so quotes, backslashes and line breaks are
    escaped rather than allowed to end the string or the statement."""
    return comment_text(text).replace('"', '\\"')
