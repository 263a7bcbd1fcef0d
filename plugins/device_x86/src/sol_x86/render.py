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
from sol.passes.finite import premise_of
from sol.planner.plan import Group, GroupKind, Plan, Storage
from sol.roles import Source
from sol.sourcetext import comment_text
from sol_x86 import recurrent
from sol_x86.libraries import PostOp, epilogue, find_onednn, finite_premise, library_dims

PACKAGE = "sol_x86"
ONEDNN_HEADER = "sol_x86_onednn.hpp"
# Below this many elements an OpenMP parallel region costs more than it saves.
PARALLEL_MIN_WORK = 16384
# Constants up to this many elements are literals in the source (the compiler can fold them);
# larger ones are handed over at load time with the parameters, keeping the source small.
INLINE_CONST_MAX = 64

# A network whose fused loop nests add up to more than this many lines of generated code (about
# 0.5 s of g++ -O3) is compiled in parts, one per core, side by side (network.cpp.j2's SOL_PART).
PART_MIN_LINES = 1500
# Library ops computing NCHW tensors oneDNN may hold in a blocked layout between groups.
_CONV_OPS = ("conv2d", "conv_transpose2d")
# Float types by width: the all-finite scan of an input reads its bits (network.cpp.j2).
_FLOAT_BITS = {"float16": 16, "float32": 32, "float64": 64}


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
    """``exact``: the plan was made by OneDNNBackend.exact (a network's exact variant): no
    finite-only post-ops, nothing to check at run time (sol_x86.libraries)."""

    def __init__(self, plan: Plan, exact: bool = False) -> None:
        self.plan = plan
        self.allow_finite_only = not exact
        self._steps: dict[int, list[PostOp]] = {}
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
    def steps(self, g: Group) -> list[PostOp]:
        """A library group's post-ops (sol_x86.libraries.epilogue), worked out once."""
        if g.id not in self._steps:
            self._steps[g.id] = epilogue(g.anchor, g.epilogue, self.plan.graph, self.allow_finite_only)
        return self._steps[g.id]

    def comment(self, step: int, node: Node) -> str:
        """``// #step op <- where it came from``: the source is model text (module paths, file
        names), made harmless for a comment (no line break, backslash, comment end, trigraph)."""
        src = f" <- {comment_text(node.source)}" if node.source else ""
        return f"// #{step} {comment_text(node.op)}{src}"

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
        steps = self.steps(g)
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
        elif anchor.op == "conv_transpose2d":
            a = anchor.attrs
            (pt, pb), (pl, pr) = a["padding"]
            oph, opw = a["output_padding"]
            # output_padding extends the bottom/right edge: oneDNN's right padding less that much.
            init = (f"net->op{g.id}.init({_dims(x.shape)}, {_dims(w.shape)}, {_dims(anchor.output.shape)}, "
                    f"{_dims(a['stride'])}, {_dims([d - 1 for d in a['dilation']])}, {_dims((pt, pl))}, "
                    f"{_dims((pb - oph, pr - opw))}, {a['groups']}, {w_init}, {bias_ptr}, {post_cpp}, "
                    f"net->scratch);")
            run = f"net.op{g.id}.run({self.sym(x)}, {self.sym(result)}, {bin_cpp}, {residual}, net.scratch{w_run});"
            cls = "Deconv"
        elif anchor.op in ("conv2d_backward_data", "conv2d_backward_weight"):
            init, run, cls = self._conv_backward(g)
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

    def _conv_backward(self, g: Group) -> tuple[str, str, str]:
        """oneDNN's convolution backward-data / backward-weights (no epilogue: absorbs() says no)."""
        node = g.anchor
        a = node.attrs
        (pt, pb), (pl, pr) = a["padding"]
        first, second = node.inputs
        data = node.op == "conv2d_backward_data"
        x_shape, w_shape, y_shape = ((a["shape"], second.shape, first.shape) if data
                                     else (first.shape, a["shape"], second.shape))
        init = (f"net->op{g.id}.init({'true' if data else 'false'}, {_dims(x_shape)}, {_dims(w_shape)}, "
                f"{_dims(y_shape)}, {_dims(a['stride'])}, {_dims([d - 1 for d in a['dilation']])}, "
                f"{_dims((pt, pl))}, {_dims((pb, pr))}, {a['groups']});")
        run = f"net.op{g.id}.run({self.sym(first)}, {self.sym(second)}, {self.sym(node.output)});"
        return init, run, "ConvBackward"

    @staticmethod
    def _post(s: PostOp) -> str:
        if s.kind == "eltwise":  # oneDNN's C enum (dnnl_types.h); a clip's bound may be infinite
            alpha, beta = _literal(s.alpha, "float32"), _literal(s.beta, "float32")
            return f"sol::eltwise(dnnl_{s.alg}, {alpha}, {beta}{', true' if s.finite_only else ''})"
        if s.kind == "binary":
            return f"sol::binary(dnnl_{s.alg}, {_dims(s.dims)})"
        return "sol::sum()"

    def layout_links(self) -> list[str]:
        """Convolution groups whose result is read only by other convolution groups, as their
        input or as their residual-sum operand: oneDNN may keep that tensor in its own (blocked)
        layout in between, saving a reorder out and one back in per reader (decided at load time,
        where the layouts are known: see LibraryOp::keep_native)."""
        users = self.plan.graph.users()
        group_of = {n: g for g in self.plan.groups for n in g.nodes}
        links = []
        for g in self.plan.groups:
            if g.kind is not GroupKind.LIBRARY or g.anchor.op not in _CONV_OPS:
                continue
            v = g.nodes[-1].output
            readers = list(dict.fromkeys(users.get(v, [])))
            if v in self.plan.graph.outputs or g.outputs != [v] or not readers:
                continue
            roles = [self._reader_role(v, n, group_of[n]) for n in readers]
            if all(r is not None for r in roles):
                listed = ", ".join(f"{{sol::LibraryOp::Reader::{r[0]}, &net->op{r[1]}}}" for r in roles if r)
                links.append(f"net->op{g.id}.keep_native({{{listed}}}, {v.type.nbytes});")
        return links + self.shared_inputs()

    def shared_inputs(self) -> list[str]:
        """Convolution backward groups reading the same tensor (a conv's output gradient: its
        backward-data and backward-weights groups; a block's input: the backward-weights groups of
        the convolutions it feeds): each later reader may read the first one's copy in oneDNN's
        layout instead of converting the plain tensor again (decided at load time, where the
        layouts are known: see ConvBackward::share_input). Groups run in plan order in every call
        and a value is not overwritten while it has readers left, so the first reader's copy is
        current whenever a later one runs."""
        first: dict[int, tuple[int, int]] = {}
        links = []
        for g in self.plan.groups:
            if g.kind is not GroupKind.LIBRARY or g.anchor.op not in ("conv2d_backward_data",
                                                                       "conv2d_backward_weight"):
                continue
            for i, v in enumerate(g.anchor.inputs[:2]):
                if id(v) in first:
                    owner, j = first[id(v)]
                    links.append(f"net->op{g.id}.share_input({i}, net->op{owner}, {j});")
                else:
                    first[id(v)] = (g.id, i)
        return links

    def _reader_role(self, v: Value, node: Node, h: Group) -> tuple[str, int] | None:
        """How library group ``h`` reads ``v`` at ``node``: ("SRC", id) as its convolution's
        input, ("RESIDUAL", id) as its residual-sum post-op's operand; None for anything else
        (weights, per-channel operands, fused groups), which needs the plain layout."""
        if h.kind is not GroupKind.LIBRARY or h.anchor.op not in _CONV_OPS or sum(i is v for i in node.inputs) != 1:
            return None
        if node is h.anchor:
            return ("SRC", h.id) if node.inputs[0] is v else None
        for n, step in zip(h.epilogue, self.steps(h)):
            if n is node:
                return ("RESIDUAL", h.id) if step.kind == "sum" and step.operand is v else None
        return None

    def finite_premise(self) -> tuple[list[int], list[int]]:
        """Which graph inputs and parameters (positions) must be finite for the library groups'
        finite-only post-ops to be exact (libraries.py): the values their operands depend on."""
        operands = [v for g in self.plan.groups if g.kind is GroupKind.LIBRARY
                    for v in finite_premise(g.epilogue, self.steps(g))]
        premise = set(premise_of(operands))
        g = self.plan.graph
        return ([i for i, v in enumerate(g.inputs) if v in premise],
                [i for i, v in enumerate(g.params) if v in premise])

    def input_guards(self, inputs: list[int]) -> list[dict[str, Any]]:
        """The all-finite scans sol_forward runs over those inputs before any group."""
        graph_inputs = self.plan.graph.inputs
        return [{"index": i, "bits": _FLOAT_BITS[graph_inputs[i].dtype], "numel": graph_inputs[i].type.numel}
                for i in inputs]

    # --- network ----------------------------------------------------------------------------
    def render(self) -> Source:
        p = self.plan
        groups: list[dict[str, Any]] = []
        for g in p.groups:
            if g.kind is GroupKind.FUSED:
                groups.append(self.fused(g))
            elif g.kind is GroupKind.LIBRARY:
                groups.append(self.library(g))
            elif g.kind is GroupKind.RECURRENT:
                groups.append(recurrent.context(self, g, find_onednn() is not None, PARALLEL_MIN_WORK))
            else:
                groups.append({"kind": "alias", "label": g.label})
        consts = []
        for i, c in enumerate(p.graph.consts):
            if c.type.numel > INLINE_CONST_MAX:
                continue
            flat = np.asarray(c.data).reshape(-1)
            consts.append({"sym": f"K{i}", "ctype": ctype(c),
                           "literals": [_literal(x, c.dtype) for x in flat.tolist()] or ["0"]})
        uses_onednn = any(g["kind"] == "library" or g.get("gemm") == "onednn" for g in groups)
        parts = assign_parts(groups)
        finite_inputs, finite_params = self.finite_premise()
        text = render(PACKAGE, "network.cpp.j2", name=p.graph.name, groups=groups, consts=consts, parts=parts,
                      num_params=len(p.graph.params) + len(p.graph.consts), arena_bytes=p.memory.arena_bytes,
                      uses_onednn=uses_onednn, profile=bool(p.options.get("profile")),
                      parallel_min_work=PARALLEL_MIN_WORK, links=self.layout_links(),
                      finite_guards=self.input_guards(finite_inputs))
        files = {"network.cpp": text}
        if uses_onednn:
            files[ONEDNN_HEADER] = resources.files(PACKAGE).joinpath("templates", ONEDNN_HEADER).read_text()
        # finite_only: the network has finite-only fusions, exact only while the inputs and
        # parameters listed are finite (the device checks them and keeps an exact variant).
        finite_only = any(s.finite_only for g in p.groups if g.kind is GroupKind.LIBRARY for s in self.steps(g))
        return Source(files, entry="network.cpp",
                      meta={"uses_onednn": uses_onednn, "parts": parts, "finite_only": finite_only,
                            "finite_inputs": finite_inputs, "finite_params": finite_params})


def _lines(group: dict[str, Any]) -> int:
    """About how many lines of C++ a fused group's function takes (its size for g++)."""
    stages = group["lowered"].stages
    return len(group["decls"]) + sum(len(st.loops) + len(st.statements) + 2 if st.kind == "pointwise" else 20
                                     for st in stages)


def assign_parts(groups: list[dict[str, Any]]) -> int:
    """Give every fused group a ``part`` (which compilation of network.cpp defines its function)
    and return the number of parts: one for a network whose generated loops are small, else one
    per physical core, filled largest group first into the lightest part (part 0 also compiles
    sol_create / sol_forward and the library glue, counted as its starting load)."""
    from sol_x86.device import physical_cores  # the device module imports this one

    fused = [g for g in groups if g["kind"] == "fused"]
    sizes = {g["id"]: _lines(g) for g in fused}
    total = sum(sizes.values())
    parts = 1 if total < PART_MIN_LINES else max(1, min(physical_cores(), total // PART_MIN_LINES))
    load = [0] * parts
    load[0] = 8 * sum(1 for g in groups if g["kind"] != "fused")
    for g in sorted(fused, key=lambda g: -sizes[g["id"]]):
        k = min(range(parts), key=lambda i: load[i])
        g["part"] = k
        load[k] += sizes[g["id"]]
    return parts
