"""The VE dialect of the shared C-family generator: C casts, the sol_<fn>[f] builtins and the
SOL_NANF/SOL_INFF macros of network.c.j2 (freestanding C for clang's VE target)."""

from __future__ import annotations

from sol.ir import Graph, TensorType
from sol_sxaurora.render import VeDialect


def _expr(op: str, attrs: dict | None = None, n: int = 1, dtype: str = "float32", out: str = "float") -> str:
    g = Graph()
    xs = [g.add_input(f"x{i}", TensorType((4,), dtype)) for i in range(n)]
    node = g.add_node(op, xs, attrs or {})
    return VeDialect().elementwise(node, [f"a{i}" for i in range(n)], out)


def test_ve_spelling_of_the_elementwise_table() -> None:
    assert _expr("relu") == "(a0 < (float)0 ? (float)0 : a0)"
    assert _expr("abs") == "sol_fabsf(a0)"
    assert _expr("exp", dtype="float64", out="double") == "sol_exp(a0)"
    assert _expr("gelu", {"approximate": "tanh", "inf_to_nan": True}) == (
        "(a0 == (float)SOL_INFF ? (float)SOL_NANF : ((float)0.5 * a0 * ((float)1 + sol_tanhf((float)0.7978845608028654"
        " * (a0 + (float)0.044715 * a0 * a0 * a0)))))")
    assert _expr("cast", {"dtype": "float32"}, dtype="int64") == "((float)(a0))"
    assert _expr("clamp", {"min": None, "max": 6.0}) == "SOL_MIN(a0, (float)6.0)"
    assert VeDialect().literal(float("nan"), "float64") == "SOL_NAN"
    assert VeDialect().literal(True, "bool") == "1"
