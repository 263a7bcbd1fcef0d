"""Plan -> one C++ translation unit (jinja2 templates shipped in ``sol_x86/templates``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from sol.plugin_api import (
    CRenderer,
    Dialect,
    Group,
    GroupKind,
    Node,
    OuterLoop,
    Plan,
    SolError,
    Source,
    Storage,
    Value,
    may_be_nonfinite,
    physical_cores,
    premise_of,
    share_identical_bodies,
)
from sol.plugin_api import render_template as render
from sol.plugin_api import template_environment as environment
from sol_x86 import blocked, recurrent, winograd
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
_CONV_OPS = ("conv2d", "conv_transpose2d", "conv2d_nhwc")
# Float types by width: the all-finite scan of an input reads its bits (network.cpp.j2).
_FLOAT_BITS = {"float16": 16, "float32": 32, "float64": 64}


class X86Dialect(Dialect):
    """C++17 with OpenMP for g++/clang: functional casts, ``std::`` math, ``__restrict``."""

    name = "x86"
    restrict = "__restrict"
    min_fn, max_fn = "sol_min", "sol_max"  # network.cpp.j2: std::min/max semantics, by value
    true, false = "true", "false"
    inner_pragma = "#pragma omp simd"

    def __init__(self, vector_width: int = 8) -> None:
        self.vector_width = vector_width

    def const(self, T: str, value: Any) -> str:
        return f"{T}({value})"

    def convert(self, T: str, expr: str) -> str:
        return f"static_cast<{T}>({expr})"

    def math(self, fn: str, T: str) -> str:
        return "std::abs" if fn == "fabs" else f"std::{fn}"  # overloaded on the element type

    def infinity(self, T: str) -> str:
        return f"std::numeric_limits<{T}>::infinity()"

    def nan(self, T: str) -> str:
        return f"std::numeric_limits<{T}>::quiet_NaN()"

    def pointer_cast(self, ptr: str, expr: str, reinterpret: bool = False) -> str:
        return f"{'reinterpret' if reinterpret else 'static'}_cast<{ptr}>({expr})"

    def outer_loop(self, loop: OuterLoop) -> list[str]:
        # A parallel region only above PARALLEL_MIN_WORK elements: below, it costs more than it saves.
        head = ([f"{self.parallel_pragma} if({loop.work} >= {PARALLEL_MIN_WORK})"] if loop.parallel else [])
        return head + [f"for (long o = 0; o < {loop.extent}; ++o) {{"]


@dataclass
class LibraryCall:
    """One oneDNN primitive as templates/library.j2 renders it: sizes, operands, post-ops."""

    id: int
    cls: str  # the sol:: primitive class in sol_x86_onednn.hpp
    x: str
    w: str
    y: str
    x_dims: tuple[int, ...] = ()
    w_dims: tuple[int, ...] = ()
    y_dims: tuple[int, ...] = ()
    stride: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()  # oneDNN's: 0 for dense taps
    pad_lo: tuple[int, ...] = ()
    pad_hi: tuple[int, ...] = ()
    groups: int = 1
    w_init: str = "nullptr"
    bias: str = "nullptr"
    post: list[dict[str, Any]] = field(default_factory=list)
    binary: list[str] = field(default_factory=list)
    residual: str = "nullptr"
    w_run: bool = False
    rows: int = 0
    k: int = 0
    n: int = 0
    data: bool = False
    winograd: bool = False  # a Conv computed as Winograd's F(2x2, 3x3) (sol_x86.winograd)
    blocked: bool = False  # a Conv of a chain kept in oneDNN's nChw16c (sol_x86.blocked)
    # conv2d_nhwc: x / y are (N, H, W, C) in memory; the dims stay (N, C, H, W)
    x_nhwc: bool = False
    y_nhwc: bool = False


class NetworkRenderer(CRenderer):
    """``exact``: the plan was made by OneDNNBackend.exact (a network's exact variant): no
    finite-only post-ops, nothing to check at run time (sol_x86.libraries)."""

    net = "net."  # group functions take the network by reference

    def __init__(self, plan: Plan, exact: bool = False, dialect: X86Dialect | None = None) -> None:
        super().__init__(plan, dialect or X86Dialect())
        self.allow_finite_only = not exact
        self._steps: dict[int, list[PostOp]] = {}
        self._blocked: frozenset[int] | None = None
        self._users: dict[Value, list[Node]] | None = None  # conv_readers: the graph's, read once
        self._group_of: dict[Node, Group] = {}
        self.library_macros: Any = environment(PACKAGE).get_template("library.j2").module

    # --- memory ---------------------------------------------------------------------------
    def inline_const(self, index: int) -> bool:
        return self.plan.graph.consts[index].type.numel <= INLINE_CONST_MAX

    def const_pointer(self, index: int, ct: str, params: str) -> str:
        if self.inline_const(index):
            return f"K{index}"
        # Passed at load time like a parameter, after the parameters.
        return self.dialect.pointer_cast(f"const {ct}*", f"{params}[{len(self.plan.graph.params) + index}]")

    # --- groups -----------------------------------------------------------------------------
    def steps(self, g: Group) -> list[PostOp]:
        """A library group's post-ops (sol_x86.libraries.epilogue), worked out once."""
        if g.id not in self._steps:
            self._steps[g.id] = epilogue(g.anchor, g.epilogue, self.plan.graph, self.allow_finite_only)
        return self._steps[g.id]

    def alias(self, g: Group) -> dict[str, Any] | None:
        return {"kind": "alias", "label": g.label}

    def recurrent(self, g: Group) -> dict[str, Any]:
        return recurrent.context(self, g, find_onednn() is not None, PARALLEL_MIN_WORK)

    def library(self, g: Group) -> dict[str, Any]:
        call = self.library_call(g)
        operands = [s.operand for s in self.steps(g) if s.kind != "bias" and s.operand is not None]
        decls = [self.decl(v) for v in dict.fromkeys([*g.anchor.inputs, *operands, g.nodes[-1].output])]
        return {"kind": "library", "label": g.label, "id": g.id, "title": self.title(g), "cls": call.cls,
                "init": str(self.library_macros.init(call)).strip(), "run": str(self.library_macros.run(call)).strip(),
                "decls": decls}

    def library_call(self, g: Group) -> LibraryCall:
        call = self._library_call(g)
        if call.cls == "Conv" and not call.winograd and not call.w_run:
            call.blocked = g.id in self.blocked_convs()
        return call

    def blocked_convs(self) -> frozenset[int]:
        """The convolution groups computed in oneDNN's blocked layout (sol_x86.blocked)."""
        if self._blocked is None:
            candidates = {}
            for g in self.plan.groups:
                if g.kind is GroupKind.LIBRARY and g.anchor.op in ("conv2d", "conv2d_nhwc"):
                    call = self._library_call(g)
                    if call.cls == "Conv" and not call.winograd and not call.w_run:
                        candidates[g.id] = call.y_nhwc
            self._blocked = blocked.blocked_convs(self.plan, candidates, self.conv_readers)
        return self._blocked

    def _library_call(self, g: Group) -> LibraryCall:
        anchor = g.anchor
        if anchor.op in ("conv2d_backward_data", "conv2d_backward_weight"):
            return self._conv_backward(g)
        steps = self.steps(g)
        bias = next((s.operand for s in steps if s.kind == "bias"), None)
        post = [s for s in steps if s.kind != "bias"]
        x, w = anchor.inputs[0], anchor.inputs[1]
        static_w = self.plan.memory.resolve(w)[1].storage in (Storage.PARAM, Storage.CONST)
        call = LibraryCall(
            g.id, "", self.sym(x), self.sym(w), self.sym(g.nodes[-1].output),
            w_init=self.pointer(w, True) if static_w else "nullptr",
            bias=self.pointer(bias, in_create=True) if bias is not None else "nullptr",
            post=[self._post(s) for s in post],
            binary=[self.sym(s.operand) for s in post if s.kind == "binary" and s.operand is not None],
            residual=next((self.sym(s.operand) for s in post if s.kind == "sum" and s.operand is not None),
                          "nullptr"),
            w_run=not static_w)
        if anchor.op in _CONV_OPS:
            a = anchor.attrs
            (pt, pb), (pl, pr) = a["padding"]
            # output_padding extends the bottom/right edge: oneDNN's right padding less that much.
            oph, opw = a["output_padding"] if anchor.op == "conv_transpose2d" else (0, 0)
            call.cls = "Deconv" if anchor.op == "conv_transpose2d" else "Conv"
            call.x_dims, call.w_dims, call.y_dims = x.shape, w.shape, anchor.output.shape
            if anchor.op == "conv2d_nhwc":
                call.x_nhwc, call.y_nhwc = a["input_nhwc"], a["output_nhwc"]
                if call.x_nhwc:
                    call.x_dims = tuple(x.shape[i] for i in (0, 3, 1, 2))
                if call.y_nhwc:
                    call.y_dims = tuple(anchor.output.shape[i] for i in (0, 3, 1, 2))
            call.stride, call.dilation = tuple(a["stride"]), tuple(d - 1 for d in a["dilation"])
            call.pad_lo, call.pad_hi, call.groups = (pt, pl), (pb - oph, pr - opw), a["groups"]
            call.winograd = (call.cls == "Conv" and self.allow_finite_only
                             and bool(self.plan.options.get(winograd.OPTION, True))
                             and x.dtype == "float32" and w.dtype == "float32"
                             and winograd.fits(call.x_dims, call.w_dims, call.y_dims, call.stride, call.dilation,
                                               call.groups, static_w, post)
                             and not may_be_nonfinite([x, w], self.plan.graph))
        elif anchor.op == "dense":
            call.cls = "Dense"
            call.rows, call.n = library_dims(anchor)
            call.k = w.shape[1]
        elif anchor.op == "matmul":
            rank = anchor.output.type.rank
            call.cls, call.w_run = "MatMul", False
            call.x_dims = (1,) * (rank - x.type.rank) + tuple(x.shape)
            call.w_dims = (1,) * (rank - w.type.rank) + tuple(w.shape)
            call.y_dims = anchor.output.shape
        else:
            raise SolError(f"x86: backend {g.backend} has no binding for {anchor.op!r}")
        return call

    def _conv_backward(self, g: Group) -> LibraryCall:
        """oneDNN's convolution backward-data / backward-weights (no epilogue: absorbs() says no)."""
        node = g.anchor
        a = node.attrs
        (pt, pb), (pl, pr) = a["padding"]
        first, second = node.inputs
        data = node.op == "conv2d_backward_data"
        x_shape, w_shape, y_shape = ((a["shape"], second.shape, first.shape) if data
                                     else (first.shape, a["shape"], second.shape))
        return LibraryCall(g.id, "ConvBackward", self.sym(first), self.sym(second), self.sym(node.output),
                           x_dims=tuple(x_shape), w_dims=tuple(w_shape), y_dims=tuple(y_shape),
                           stride=tuple(a["stride"]), dilation=tuple(d - 1 for d in a["dilation"]),
                           pad_lo=(pt, pl), pad_hi=(pb, pr), groups=a["groups"], data=data)

    def _post(self, s: PostOp) -> dict[str, Any]:
        """A post-op for library.j2: oneDNN's C enum (dnnl_types.h); a clip's bound may be infinite."""
        return {"kind": s.kind, "alg": s.alg, "alpha": self.dialect.literal(s.alpha, "float32"),
                "beta": self.dialect.literal(s.beta, "float32"), "finite_only": s.finite_only, "dims": s.dims}

    def layout_links(self) -> list[str]:
        """Convolution groups whose result is read only by other convolution groups, as their
        input or as their residual-sum operand: oneDNN may keep that tensor in its own (blocked)
        layout in between, saving a reorder out and one back in per reader (decided at load time,
        where the layouts are known: see LibraryOp::keep_native)."""
        links = []
        for g in self.plan.groups:
            roles = self.conv_readers(g)
            if roles:
                listed = ", ".join(f"{{sol::LibraryOp::Reader::{role}, &net->op{h}}}" for role, h in roles)
                links.append(f"net->op{g.id}.keep_native({{{listed}}}, {g.nodes[-1].output.type.nbytes});")
        return links + self.shared_inputs()

    def conv_readers(self, g: Group) -> list[tuple[str, int]] | None:
        """For a convolution group whose result only library convolution groups read: how each
        reads it (_reader_role); None for any other group or result (a graph output, a value a
        fused loop or anything else reads)."""
        if g.kind is not GroupKind.LIBRARY or g.anchor.op not in _CONV_OPS:
            return None
        if self._users is None:
            self._users = self.plan.graph.users()
            self._group_of = {n: h for h in self.plan.groups for n in h.nodes}
        v = g.nodes[-1].output
        readers = list(dict.fromkeys(self._users.get(v, [])))
        if v in self.plan.graph.outputs or g.outputs != [v] or not readers:
            return None
        roles = [self._reader_role(v, n, self._group_of[n]) for n in readers]
        return [r for r in roles if r is not None] if all(r is not None for r in roles) else None

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

    def create_only_params(self) -> list[int]:
        """Positions (parameters, then constants) of the values the network reads only in
        sol_create: the static weights and biases its convolution and dense ops copy into their own
        layouts there. The runtime may release its host copy of those after creating the network
        (sol_x86.runtime.NetworkLibrary.release)."""
        g, memory = self.plan.graph, self.plan.memory
        position = {v: i for i, v in enumerate([*g.params, *g.consts])}
        at_create: set[int] = set()
        at_run: set[int] = {position[memory.resolve(v)[0]] for v in g.outputs
                            if v in memory.slots and memory.resolve(v)[0] in position}
        for grp in self.plan.groups:
            if grp.kind is GroupKind.ALIAS:  # a view: its readers' reads are what count
                continue
            # (node, operand) reads done in sol_create: the weight a weighted op places, its bias
            create_time: set[tuple[int, int]] = set()
            if grp.kind is GroupKind.LIBRARY and grp.anchor.op in (*_CONV_OPS, "dense"):
                if self.library_call(grp).w_init != "nullptr":
                    create_time.add((id(grp.anchor), id(grp.anchor.inputs[1])))
                create_time |= {(id(n), id(st.operand)) for n, st in zip(grp.epilogue, self.steps(grp))
                                if st.kind == "bias" and st.operand is not None}
            for node in grp.nodes:
                for v in node.inputs:
                    # (values fused away inside a group have no slot: never a parameter)
                    owner = memory.resolve(v)[0] if v in memory.slots else v
                    if owner in position:
                        (at_create if (id(node), id(v)) in create_time else at_run).add(position[owner])
        return sorted(at_create - at_run)

    def finite_premise(self) -> tuple[list[int], list[int]]:
        """Which graph inputs and parameters (positions) must be finite for the library groups'
        finite-only post-ops to be exact (libraries.py): the values their operands depend on."""
        operands = [v for g in self.plan.groups if g.kind is GroupKind.LIBRARY
                    for v in finite_premise(g.epilogue, self.steps(g))]
        # A Winograd convolution is exact only for a finite input and weight (sol_x86.winograd).
        operands += [v for g in self.winograd_groups() for v in g.anchor.inputs[:2]]
        premise = set(premise_of(operands))
        g = self.plan.graph
        return ([i for i, v in enumerate(g.inputs) if v in premise],
                [i for i, v in enumerate(g.params) if v in premise])

    def winograd_groups(self) -> list[Group]:
        """The library groups whose convolution runs as Winograd's F(2x2, 3x3)."""
        return [g for g in self.plan.groups if g.kind is GroupKind.LIBRARY
                and g.anchor.op in ("conv2d", "conv2d_nhwc") and self.library_call(g).winograd]

    def _winograd_flops(self, g: Group) -> float:
        call = self.library_call(g)
        return winograd.executed_flops(call.y_dims, call.x_dims[1], [s for s in self.steps(g) if s.kind != "bias"])

    def input_guards(self, inputs: list[int]) -> list[dict[str, Any]]:
        """The all-finite scans sol_forward runs over those inputs before any group."""
        graph_inputs = self.plan.graph.inputs
        return [{"index": i, "bits": _FLOAT_BITS[graph_inputs[i].dtype], "numel": graph_inputs[i].type.numel}
                for i in inputs]

    # --- network ----------------------------------------------------------------------------
    def render(self) -> Source:
        p = self.plan
        groups = self.groups()
        consts = self.consts()
        uses_onednn = any(g["kind"] == "library" or g.get("gemm") == "onednn" for g in groups)
        body = environment(PACKAGE).get_template("fused.j2").module.body  # type: ignore[attr-defined]
        for g in groups:
            if g["kind"] == "fused":
                g["body"] = body(g, self.dialect, PARALLEL_MIN_WORK)
        shared = share_identical_bodies(groups)
        parts = assign_parts(groups)
        finite_inputs, finite_params = self.finite_premise()
        text = render(PACKAGE, "network.cpp.j2", name=p.graph.name, groups=groups, shared=shared, consts=consts,
                      parts=parts,
                      num_params=len(p.graph.params) + len(p.graph.consts), arena_bytes=p.memory.arena_bytes,
                      uses_onednn=uses_onednn, profile=bool(p.options.get("profile")),
                      parallel_min_work=PARALLEL_MIN_WORK, links=self.layout_links(), dialect=self.dialect,
                      finite_guards=self.input_guards(finite_inputs), helpers=self.helpers())
        files = {"network.cpp": text}
        if uses_onednn:
            files[ONEDNN_HEADER] = resources.files(PACKAGE).joinpath("templates", ONEDNN_HEADER).read_text()
        # finite_only: the network has finite-only fusions, exact only while the inputs and
        # parameters listed are finite (the device checks them and keeps an exact variant).
        winograd_groups = self.winograd_groups()
        finite_only = (any(s.finite_only for g in p.groups if g.kind is GroupKind.LIBRARY for s in self.steps(g))
                       or bool(winograd_groups))
        return Source(files, entry="network.cpp",
                      meta={"uses_onednn": uses_onednn, "parts": parts, "finite_only": finite_only,
                            "finite_inputs": finite_inputs, "finite_params": finite_params,
                            "create_only_params": self.create_only_params(),
                            "executed_flops": [[g.id, self._winograd_flops(g)] for g in winograd_groups]})


def _lines(group: dict[str, Any]) -> int:
    """About how many lines of C++ a fused group's function takes (its size for g++): a group
    calling a body another group's part compiles takes a line per buffer."""
    if group.get("shared") and not group["shared"]["owner"]:
        return len(group["decls"]) + 2
    stages = group["lowered"].stages
    return len(group["decls"]) + sum(len(st.loops) + len(st.statements) + 2 if st.kind == "pointwise" else 20
                                     for st in stages)


def assign_parts(groups: list[dict[str, Any]]) -> int:
    """Give every fused group a ``part`` (which compilation of network.cpp defines its function)
    and return the number of parts: one for a network whose generated loops are small, else one
    per physical core, filled largest group first into the lightest part (part 0 also compiles
    sol_create / sol_forward and the library glue, counted as its starting load)."""
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
