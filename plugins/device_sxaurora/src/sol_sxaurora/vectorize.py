"""Element-wise chains as VEL vector code: one strip of up to 256 lanes at a time.

Pointwise stages of fused groups and the epilogues of generated convolution/GEMM kernels are the
same problem: some registers are loaded with a stride (or broadcast), a chain of element-wise ops
runs on them, results are stored with a stride. Index arithmetic comes from core's lowering
(``sol.lowering.Access``); this module only chooses instructions: a VE instruction where
``vector.j2`` has one, a multiply feeding an add becomes one fused multiply-add, and an op with no
VE instruction (exp, tanh, erf, ...) runs its scalar C expression lane by lane inside the strip.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sol.plugin_api import Node
from sol.plugin_api import op_registry as registry

FLOAT_BYTES = 4


@dataclass
class VectorOp:
    """``out = node(args)`` on registers; ``comment`` names the source op (``// #2 relu``)."""

    node: Node
    out: str
    args: list[str]
    comment: str


def load(reg: str, base: str, offset: str, stride: int) -> str:
    """A strided single-precision load, or a broadcast when every lane reads the same element."""
    if stride == 0:
        return f"__vr {reg} = _vel_vbrds_vsl({base}[{offset}], vl);"
    return f"__vr {reg} = _vel_vldu_vssl({FLOAT_BYTES * stride}L, {base} + {offset}, vl);"


def store(reg: str, base: str, offset: str, stride: int) -> str:
    return f"_vel_vstu_vssl({reg}, {FLOAT_BYTES * stride}L, {base} + {offset}, vl);"


class VectorCode:
    """Renders chains of :class:`VectorOp` with the ``vector.j2`` macros (fallback: scalar)."""

    def __init__(self, vector_module: Any, scalar: Callable[[Node, list[str], str], str]) -> None:
        self.vec = vector_module
        self.scalar = scalar

    def expression(self, node: Node, args: list[str]) -> str | None:
        macro = getattr(self.vec, node.op, None)
        if macro is None:
            return None
        text = str(macro(*args, "vl", **registry.lowering_attrs(node))).strip()
        return text or None

    def needs_scalar(self, ops: list[VectorOp]) -> bool:
        """Does any op run lane by lane (a call to a math function inside the strip)?"""
        return any(self.expression(op.node, op.args) is None for op in ops)

    def ops(self, ops: list[VectorOp], keep: set[str], live_in: list[str]) -> list[str]:
        """Statements computing ``ops`` in order. ``live_in``: registers defined before (loads);
        ``keep``: registers read afterwards (stores)."""
        uses = Counter(a for op in ops for a in op.args) + Counter(keep)
        producer = {op.out: op for op in ops}
        fused: dict[str, tuple[VectorOp, str]] = {}  # add's out -> (the mul it absorbs, other addend)
        for op in ops:
            if op.node.op != "add" or len(op.args) != 2:
                continue
            for i, a in enumerate(op.args):
                mul = producer.get(a)
                if mul is not None and mul.node.op == "mul" and uses[a] == 1 and a != op.args[1 - i]:
                    fused[op.out] = (mul, op.args[1 - i])
                    break
        skipped = {mul.out for mul, _ in fused.values()}
        emitted = [op for op in ops if op.out not in skipped]
        reads = [list(fused[op.out][0].args) + [fused[op.out][1]] if op.out in fused else op.args for op in emitted]
        lines: list[str] = []
        defined = list(live_in)
        for i, op in enumerate(emitted):
            if op.out in fused:
                mul, addend = fused[op.out]
                fma = str(self.vec.fma(mul.args[0], mul.args[1], addend, "vl")).strip()
                lines.append(f"__vr {op.out} = {fma};  {mul.comment} and {op.comment.removeprefix('// ')} "
                             "(one fused multiply-add)")
            elif (expr := self.expression(op.node, op.args)) is not None:
                lines.append(f"__vr {op.out} = {expr};  {op.comment}")
            else:
                later = set(keep).union(*map(set, reads[i + 1:]))
                lines += self.lane_by_lane(op, [r for r in defined if r in later])
            defined.append(op.out)
        return lines

    def lane_by_lane(self, op: VectorOp, live: list[str]) -> list[str]:
        """No VE instruction: spill the operands of this strip, run the scalar expression per
        lane (a math-library call), reload. The strip stays in the same loop, so loads and stores
        stay vectorized. LLVM's VE backend cannot keep vector registers across a call, so every
        other register still needed afterwards (``live``) goes through memory too."""
        names = {a: f"s{i}_{op.out}" for i, a in enumerate(dict.fromkeys(op.args))}
        spills = {r: f"k_{r}_{op.out}" for r in live}
        lines = [f"__vr {op.out};  {op.comment} (no VE instruction: scalar per lane)", "{"]
        # A register can be both an operand and live afterwards: it then needs both buffers (the
        # operand's is overwritten with the result), so the two maps are not merged.
        for reg, buf in [*names.items(), *spills.items()]:
            lines.append(f"  float {buf}[256];")
            lines.append(f"  _vel_vstu_vssl({reg}, {FLOAT_BYTES}L, {buf}, vl);")
        expr = self.scalar(op.node, [f"{names[a]}[l]" for a in op.args], "float")
        first = names[op.args[0]]
        lines.append(f"  for (int l = 0; l < vl; ++l) {first}[l] = {expr};")
        # A fresh, opaque vector length: LLVM must not merge a vector operation after the calls
        # with an identical one before them (that would make it live across the calls).
        lines.append("  vl = SOL_VL(vl);")
        lines.append(f"  {op.out} = _vel_vldu_vssl({FLOAT_BYTES}L, {first}, vl);")
        for reg, buf in spills.items():
            lines.append(f"  {reg} = _vel_vldu_vssl({FLOAT_BYTES}L, {buf}, vl);")
        lines.append("}")
        return lines
