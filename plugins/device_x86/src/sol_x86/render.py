"""Plan -> one C++ translation unit (jinja2 templates shipped in ``sol_x86/templates``)."""

from __future__ import annotations

import math
from importlib import resources
from typing import Any

import numpy as np

from sol.codegen import environment, render
from sol.errors import SolError
from sol.ir import Node, Value
from sol.lowering import CTYPES, GroupLowering, ctype, elementwise_renderer, numel
from sol.planner.plan import Group, GroupKind, Plan, Storage
from sol.roles import Source
from sol_x86.libraries import PostOp, epilogue, library_dims

PACKAGE = "sol_x86"
ONEDNN_HEADER = "sol_x86_onednn.hpp"
# Below this many elements an OpenMP parallel region costs more than it saves.
PARALLEL_MIN_WORK = 16384
# Constants up to this many elements are literals in the source (the compiler can fold them);
# larger ones are handed over at load time with the parameters, keeping the source small.
INLINE_CONST_MAX = 64


def _literal(x: Any, dtype: str) -> str:
    if dtype == "bool":
        return "true" if x else "false"
    if dtype.startswith("float"):
        t = ctype_of(dtype)
        if math.isnan(x):
            return f"std::numeric_limits<{t}>::quiet_NaN()"
        if math.isinf(x):
            return f"{'-' if x < 0 else ''}std::numeric_limits<{t}>::infinity()"
        return f"{float(x)!r}" + ("f" if dtype == "float32" else "")
    return f"{int(x)}LL" if dtype == "int64" else str(int(x))


def ctype_of(dtype: str) -> str:
    return CTYPES[dtype]


def _dims(d: tuple[int, ...] | list[int]) -> str:
    return "{" + ", ".join(str(int(x)) for x in d) + "}"


class NetworkRenderer:
    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.env = environment(PACKAGE)
        self.ew = elementwise_renderer(self.env)
        self.symbols: dict[Value, str] = {}
        for i, v in enumerate(plan.graph.values()):
            self.symbols[v] = f"v{i}"

    def sym(self, v: Value) -> str:
        return self.symbols[v]

    # --- memory ---------------------------------------------------------------------------
    def pointer(self, v: Value, in_create: bool = False) -> str:
        """A C++ expression for ``v``'s address (inside sol_forward / a group function, or
        inside sol_create where only parameters and constants exist)."""
        owner, slot = self.plan.memory.resolve(v)
        ct = ctype(owner)
        net = "net->" if in_create else "net."
        if slot.storage is Storage.PARAM:
            return f"static_cast<const {ct}*>({'params' if in_create else 'net.params'}[{slot.index}])"
        if slot.storage is Storage.CONST:
            if self.plan.graph.consts[slot.index].type.numel > INLINE_CONST_MAX:
                index = len(self.plan.graph.params) + slot.index  # passed at load time like a parameter
                return f"static_cast<const {ct}*>({'params' if in_create else 'net.params'}[{index}])"
            return f"K{slot.index}"
        if in_create:
            raise SolError(f"x86: {v} is needed at load time but is not a parameter")
        if slot.storage is Storage.INPUT:
            return f"static_cast<const {ct}*>(in[{slot.index}])"
        if slot.storage is Storage.OUTPUT:
            return f"static_cast<{ct}*>(out[{slot.index}])"
        return f"reinterpret_cast<{ct}*>({net}arena + {slot.index})"

    def decl(self, v: Value) -> str:
        owner, slot = self.plan.memory.resolve(v)
        const = "const " if slot.storage in (Storage.INPUT, Storage.PARAM, Storage.CONST) else ""
        return f"{const}{ctype(owner)}* __restrict {self.sym(v)} = {self.pointer(v)};"

    # --- groups -----------------------------------------------------------------------------
    def comment(self, step: int, node: Node) -> str:
        src = f" <- {node.source}" if node.source else ""
        return f"// #{step} {node.op}{src}"

    def _title(self, g: Group) -> str:
        ops = ", ".join(f"#{i + 1} {n.op}" for i, n in enumerate(g.nodes))
        if g.kind is GroupKind.LIBRARY:
            return f"library {g.backend} ({g.layer_class.value}): {ops}"
        k = g.kernel
        assert k is not None
        over = "x".join(map(str, k.outer_shape)) or "1"
        return f"fused loop nest ({g.layer_class.value}), depth-first over {over}: {ops}"

    def fused(self, g: Group) -> dict[str, Any]:
        lowered = GroupLowering(g, self.sym, self.ew, self.comment).lower()
        outer_index = []
        for k in range(len(lowered.outer)):
            if lowered.outer[k] > 1:
                inner = numel(tuple(lowered.outer[k + 1:]))
                outer_index.append(f"const long o{k} = (o / {inner}) % {lowered.outer[k]};")
        touched = [v for v in g.inputs + g.outputs]
        return {"kind": "fused", "label": g.label, "id": g.id, "title": self._title(g),
                "decls": [self.decl(v) for v in dict.fromkeys(touched)], "lowered": lowered,
                "outer_index": outer_index}

    def library(self, g: Group) -> dict[str, Any]:
        anchor = g.anchor
        steps = epilogue(anchor, g.epilogue)
        result = g.nodes[-1].output
        bias = next((s.operand for s in steps if s.kind == "bias"), None)
        post = [s for s in steps if s.kind != "bias"]
        post_cpp = "{" + ", ".join(self._post(s) for s in post) + "}"
        binary = [self.sym(s.operand) for s in post if s.kind == "binary" and s.operand is not None]
        residual = next((self.sym(s.operand) for s in post if s.kind == "sum" and s.operand is not None), "nullptr")
        operands = [s.operand for s in post if s.operand is not None]
        decls = [self.decl(v) for v in dict.fromkeys([*anchor.inputs, *operands, result])]
        bin_cpp = "{" + ", ".join(binary) + "}"
        bias_ptr = self.pointer(bias, in_create=True) if bias is not None else "nullptr"
        x = anchor.inputs[0]
        w = anchor.inputs[1]
        static_w = self.plan.memory.resolve(w)[1].storage in (Storage.PARAM, Storage.CONST)
        w_init = self.pointer(w, True) if static_w else "nullptr"
        w_run = "" if static_w or anchor.op == "matmul" else f", {self.sym(w)}"
        if anchor.op == "conv2d":
            a = anchor.attrs
            (pt, pb), (pl, pr) = a["padding"]
            init = (f"net->op{g.id}.init({_dims(x.shape)}, {_dims(w.shape)}, {_dims(anchor.output.shape)}, "
                    f"{_dims(a['stride'])}, {_dims([d - 1 for d in a['dilation']])}, {_dims((pt, pl))}, "
                    f"{_dims((pb, pr))}, {a['groups']}, {w_init}, {bias_ptr}, {post_cpp}, "
                    f"net->scratch);")
            run = f"net.op{g.id}.run({self.sym(x)}, {self.sym(result)}, {bin_cpp}, {residual}, net.scratch{w_run});"
            cls = "Conv"
        elif anchor.op == "dense":
            rows, out = library_dims(anchor)
            init = (f"net->op{g.id}.init({rows}, {w.shape[1]}, {out}, {w_init}, {bias_ptr}, "
                    f"{post_cpp}, net->scratch);")
            run = f"net.op{g.id}.run({self.sym(x)}, {self.sym(result)}, {bin_cpp}, {residual}, net.scratch{w_run});"
            cls = "Dense"
        elif anchor.op == "matmul":
            b = w
            rank = anchor.output.type.rank
            pad = lambda s: (1,) * (rank - len(s)) + tuple(s)  # noqa: E731
            init = (f"net->op{g.id}.init({_dims(pad(x.shape))}, {_dims(pad(b.shape))}, "
                    f"{_dims(anchor.output.shape)}, {post_cpp}, net->scratch);")
            run = (f"net.op{g.id}.run({self.sym(x)}, {self.sym(b)}, {self.sym(result)}, {bin_cpp}, {residual}, "
                   f"net.scratch);")
            cls = "MatMul"
        else:
            raise SolError(f"x86: backend {g.backend} has no binding for {anchor.op!r}")
        return {"kind": "library", "label": g.label, "id": g.id, "title": self._title(g), "cls": cls,
                "init": init, "run": run, "decls": decls}

    @staticmethod
    def _post(s: PostOp) -> str:
        if s.kind == "eltwise":
            return f"sol::eltwise(dnnl::algorithm::{s.alg}, {s.alpha!r}f, {s.beta!r}f)"
        if s.kind == "binary":
            return f"sol::binary(dnnl::algorithm::{s.alg}, {_dims(s.dims)})"
        return "sol::sum()"

    def layout_links(self) -> list[str]:
        """Library groups whose result feeds only the next convolution's input: oneDNN may keep
        that tensor in its own layout in between (decided at load time, see LibraryOp::link_to)."""
        users = self.plan.graph.users()
        group_of = {n: g for g in self.plan.groups for n in g.nodes}
        links = []
        for g in self.plan.groups:
            if g.kind is not GroupKind.LIBRARY:
                continue
            v = g.nodes[-1].output
            readers = users.get(v, [])
            if v in self.plan.graph.outputs or len(readers) != 1:
                continue
            h = group_of[readers[0]]
            if h.kind is GroupKind.LIBRARY and h.anchor is readers[0] and h.anchor.op == "conv2d" \
                    and h.anchor.inputs[0] is v and g.anchor.op == "conv2d":
                links.append(f"net->op{g.id}.link_to(net->op{h.id}, {v.type.nbytes});")
        return links

    # --- network ----------------------------------------------------------------------------
    def render(self) -> Source:
        p = self.plan
        groups: list[dict[str, Any]] = []
        for g in p.groups:
            if g.kind is GroupKind.FUSED:
                groups.append(self.fused(g))
            elif g.kind is GroupKind.LIBRARY:
                groups.append(self.library(g))
            else:
                groups.append({"kind": "alias", "label": g.label})
        consts = []
        for i, c in enumerate(p.graph.consts):
            if c.type.numel > INLINE_CONST_MAX:
                continue
            flat = np.asarray(c.data).reshape(-1)
            consts.append({"sym": f"K{i}", "ctype": ctype(c),
                           "literals": [_literal(x, c.dtype) for x in flat.tolist()] or ["0"]})
        uses_onednn = any(g["kind"] == "library" for g in groups)
        text = render(PACKAGE, "network.cpp.j2", name=p.graph.name, groups=groups, consts=consts,
                      num_params=len(p.graph.params) + len(p.graph.consts), arena_bytes=p.memory.arena_bytes,
                      uses_onednn=uses_onednn, profile=bool(p.options.get("profile")),
                      parallel_min_work=PARALLEL_MIN_WORK, links=self.layout_links())
        files = {"network.cpp": text}
        if uses_onednn:
            files[ONEDNN_HEADER] = resources.files(PACKAGE).joinpath("templates", ONEDNN_HEADER).read_text()
        return Source(files, entry="network.cpp",
                      meta={"uses_onednn": uses_onednn})
