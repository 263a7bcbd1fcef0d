"""The x86 dialect of the shared C-family generator spells the element-wise table as the x86
templates always have (C++ casts, std:: math, numeric_limits): generated code stays the same."""

from __future__ import annotations

from sol.ir import Graph, TensorType
from sol_x86.render import X86Dialect


def _expr(op: str, attrs: dict | None = None, n: int = 1, dtype: str = "float32") -> str:
    g = Graph()
    xs = [g.add_input(f"x{i}", TensorType((4,), dtype)) for i in range(n)]
    node = g.add_node(op, xs, attrs or {})
    return X86Dialect().elementwise(node, [f"a{i}" for i in range(n)], "float")


def test_x86_spelling_of_the_elementwise_table() -> None:
    assert _expr("relu") == "(a0 < float(0) ? float(0) : a0)"
    assert _expr("abs") == "std::abs(a0)"
    assert _expr("hardswish") == "(a0 * sol_min(sol_max(a0 + float(3), float(0)), float(6)) / float(6))"
    assert _expr("gelu", {"approximate": "none", "inf_to_nan": True}) == (
        "(a0 == std::numeric_limits<float>::infinity() ? std::numeric_limits<float>::quiet_NaN() : "
        "(float(0.5) * a0 * (float(1) + std::erf(a0 * float(0.7071067811865476)))))")
    assert _expr("cast", {"dtype": "float32"}, dtype="int64") == "static_cast<float>(a0)"
    assert _expr("logical_and", n=2, dtype="bool") == "(static_cast<bool>(a0) && static_cast<bool>(a1))"
    assert _expr("maximum", n=2) == "((a0 > a1 || a0 != a0) ? a0 : a1)"
    assert X86Dialect().literal(float("-inf"), "float32") == "-std::numeric_limits<float>::infinity()"
