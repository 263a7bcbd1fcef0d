"""What the convolution and GEMM templates need for one ``ve-generated`` library group.

Both kernels put output channels (convolution) or output features (dense, matmul) on the 256
vector lanes: every lane does the same multiply-add with a scalar input element and a vector of
weights, so padding, stride, dilation and groups cost nothing in the vector code (out-of-image
taps read 0), and the weights are loaded with unit stride once they are re-laid out on the device
at load time (``Prepared``). Several output pixels (rows) share each weight vector load: ``BLOCK``
accumulators per weight load.

The epilogue is built here for both variants from the group's element-wise ops: in registers
(vel) or per lane (ncc), reading each other operand through broadcast strides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sol.plugin_api import Group, Node, SolError, Value, contiguous_strides, numel
from sol_sxaurora.vectorize import VectorCode, VectorOp, load, store

VLEN = 256
BLOCK = 4  # output pixels (conv) or rows (GEMM) per weight vector load in the vel variant


@dataclass
class Prepared:
    """A weight re-laid out for the kernels, in the workspace after the arena: once on the device
    for a parameter, or before every call (``per_call``) for a weight that is a run-time tensor."""

    index: int  # net->prep[index]
    source: str  # C expression of the weight (inside sol_create, or inside sol_forward if per_call)
    kind: str  # "conv": (O, C/g, kh, kw) -> [g][c][kh][kw][o]; "dense": (N, K) -> [K][N]
    dims: dict[str, int]
    nbytes: int
    per_call: bool = False


def _offset(strides: list[int], index: list[str]) -> str:
    terms = [(e if s == 1 else f"({e}) * {s}") for s, e in zip(strides, index) if s]
    return " + ".join(terms) or "0"


def row_index(shape: tuple[int, ...], row: str) -> list[str]:
    """Index expressions of the leading dims of ``shape`` for flattened row number ``row``."""
    lead = shape[:-1]
    out = []
    for d in range(len(lead)):
        inner = numel(lead[d + 1:])
        e = f"({row})" if inner == 1 else f"(({row}) / {inner})"
        out.append(e if d == 0 else f"({e} % {lead[d]})")
    return out


class Epilogue:
    """The element-wise ops after the anchor, applied to a strip of accumulated results."""

    def __init__(self, group: Group, sym: Callable[[Value], str], comment: Callable[[int, Node], str],
                 scalar: Callable[[Node, list[str], str], str], vector: VectorCode | None, lane_axis: int) -> None:
        self.group = group
        self.sym = sym
        self.scalar = scalar
        self.vector = vector
        self.lane_axis = lane_axis
        self.result = group.nodes[-1].output
        self.shape = group.anchor.output.shape
        self.comments = [comment(i + 2, n) for i, n in enumerate(group.epilogue)]

    def _operands(self) -> list[Value]:
        chain = {n.output for n in self.group.nodes}
        return list(dict.fromkeys(v for n in self.group.epilogue for v in n.inputs if v not in chain))

    @property
    def calls(self) -> bool:
        """Does the vel epilogue call math functions (so no other vector register may be live)?"""
        assert self.vector is not None
        regs = {v: "x" for n in self.group.nodes for v in n.inputs + n.outputs}
        return self.vector.needs_scalar([VectorOp(n, "x", [regs[v] for v in n.inputs], "")
                                         for n in self.group.epilogue])

    def _strides(self, v: Value) -> list[int]:
        return contiguous_strides(v.shape, len(self.shape))

    def vel(self, acc: str, index: list[str]) -> list[str]:
        """Vector statements: ``acc`` (a register of ``vl`` lanes along the lane axis, whose
        first lane is at output ``index``) through the epilogue and into the result."""
        assert self.vector is not None
        lines, regs = [], {self.group.anchor.output: acc}
        for k, v in enumerate(self._operands()):
            st = self._strides(v)
            regs[v] = f"e{k}"
            lines.append(load(f"e{k}", self.sym(v), _offset(st, index), st[self.lane_axis]))
        ops = []
        for i, n in enumerate(self.group.epilogue):
            regs[n.output] = f"r{i}"
            ops.append(VectorOp(n, f"r{i}", [regs[v] for v in n.inputs], self.comments[i]))
        last = regs[self.result]
        lines += self.vector.ops(ops, {last}, [acc] + [regs[v] for v in self._operands()])
        st = self._strides(self.result)
        lines.append(store(last, self.sym(self.result), _offset(st, index), st[self.lane_axis]))
        return lines

    def ncc(self, acc: str, index: list[str]) -> list[str]:
        """The body of a ``for (long l = 0; l < vl; ++l)`` loop: lane ``l`` of ``acc[]``."""
        lines, regs = [f"const float q = {acc}[l];"], {self.group.anchor.output: "q"}

        def at(v: Value) -> str:
            st = self._strides(v)
            lane = st[self.lane_axis]
            return f"{self.sym(v)}[{_offset(st, index)}{f' + l * {lane}' if lane else ''}]"

        for i, n in enumerate(self.group.epilogue):
            args = [regs.get(v) or at(v) for v in n.inputs]
            lines.append(f"const float r{i} = {self.scalar(n, args, 'float')};  {self.comments[i]}")
            regs[n.output] = f"r{i}"
        lines.append(f"{at(self.result)} = {regs[self.result]};")
        return lines


def _window_context(group: Group, sym: Callable[[Value], str], prep: Prepared, epilogue: Epilogue, variant: str,
                    op: str, og: int, column_step: int) -> dict[str, Any]:
    """The fields conv and deconv share: sizes, window, operands, and the epilogue of ``BLOCK``
    output pixels of one row, ``column_step`` columns apart (vel), or of one pixel (ncc)."""
    node = group.anchor
    x, y, a = node.inputs[0], node.output, node.attrs
    (pt, _), (pl, _) = a["padding"]
    n, c, h, wd = x.shape
    groups = a["groups"]
    kh, kw = node.inputs[1].shape[2:]
    s = {"op": op, "N": n, "C": c, "H": h, "W": wd, "O": og * groups, "OH": y.shape[2], "OW": y.shape[3],
         "G": groups, "CG": c // groups, "OG": og, "kh": kh, "kw": kw, "sh": a["stride"][0], "sw": a["stride"][1],
         "dh": a["dilation"][0], "dw": a["dilation"][1], "pt": pt, "pl": pl, "x": sym(x), "wp": prep_ptr(prep),
         "bias": sym(node.inputs[2]) if len(node.inputs) == 3 else None, "OB": -(-og // VLEN), "block": BLOCK}
    if variant == "vel":
        s["epilogue"] = [epilogue.vel(f"a{p}", ["n", "o0", "oh", f"ow + {p * column_step}" if p else "ow"])
                         for p in range(BLOCK)]
        s["spill"] = epilogue.calls
    else:
        s["epilogue"] = epilogue.ncc("acc", ["n", "o0", "oh", "ow"])
    return s


def conv_context(group: Group, sym: Callable[[Value], str], prep: Prepared, epilogue: Epilogue,
                 variant: str) -> dict[str, Any]:
    w = group.anchor.inputs[1]
    return _window_context(group, sym, prep, epilogue, variant, "conv", w.shape[0] // group.anchor.attrs["groups"], 1)


def deconv_context(group: Group, sym: Callable[[Value], str], prep: Prepared, epilogue: Epilogue,
                   variant: str) -> dict[str, Any]:
    """Transposed convolution in gather form: output channels on the lanes, as for conv2d; an
    output pixel sums the taps (i, j) whose source position (oh + pt - i*dh) / sh (and likewise
    for columns) is a whole input pixel. In the vel variant a block shares each weight load
    between ``BLOCK`` pixels of one row spaced ``sw`` apart: they have the same taps, at
    consecutive input columns."""
    og = group.anchor.inputs[1].shape[1]
    return _window_context(group, sym, prep, epilogue, variant, "deconv", og, group.anchor.attrs["stride"][1])


def gemm_context(group: Group, sym: Callable[[Value], str], prep: Prepared | None, epilogue: Epilogue,
                 variant: str) -> dict[str, Any]:
    """dense: x (..., K) @ W(N, K)^T [+ b]; matmul: A (..., M, K) @ B (..., K, N), batch dims
    broadcast. Both become ``batch`` GEMMs of M x K times K x N with B laid out [K][N]."""
    node = group.anchor
    y = node.output
    out = y.shape
    if node.op == "dense":
        x, w = node.inputs[0], node.inputs[1]
        if prep is None:
            raise SolError("ve: dense needs its prepared weight")
        batch, m, k, nn = 1, numel(x.shape[:-1]), x.shape[-1], w.shape[0]
        a_off, b_ptr = "0", prep_ptr(prep)
        bias = sym(node.inputs[2]) if len(node.inputs) == 3 else None
        a_sym = sym(x)
    else:
        av, bv = node.inputs
        m, k, nn = av.shape[-2], av.shape[-1], bv.shape[-1]
        bshape = out[:-2]
        batch = numel(bshape)
        bidx = row_index(bshape + (1,), "b") if bshape else []
        a_st = contiguous_strides(av.shape[:-2], len(bshape))
        b_st = contiguous_strides(bv.shape[:-2], len(bshape))
        a_off = _offset([s * m * k for s in a_st], bidx)
        b_ptr = f"{sym(bv)} + {_offset([s * k * nn for s in b_st], bidx)}"
        bias, a_sym = None, sym(av)
    s = {"op": "gemm", "batch": batch, "M": m, "K": k, "N": nn, "a": a_sym, "a_off": a_off, "b": b_ptr,
         "bias": bias, "NB": -(-nn // VLEN), "block": BLOCK, "MB": -(-m // BLOCK)}
    if variant == "vel":
        s["epilogue"] = [epilogue.vel(f"a{p}", row_index(out, f"row + {p}" if p else "row") + ["n0"])
                         for p in range(BLOCK)]
        s["spill"] = epilogue.calls
    else:
        s["epilogue"] = epilogue.ncc("acc", row_index(out, "row") + ["n0"])
    return s


def prep_ptr(prep: Prepared) -> str:
    return f"net->prep[{prep.index}]"
