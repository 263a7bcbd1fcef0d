"""The C-family lowering of the special functions (:mod:`sol.ops.special`): each op's element-wise
rule calls a helper function of core's shipped template ``sol/special.j2`` (series, continued
fractions, asymptotic expansions and recurrences, written once in the dialect's spelling), and
:func:`helpers` renders those functions for a network that uses one of the ops. A device's network
template puts :meth:`CRenderer.helpers() <sol.lowering.CRenderer.helpers>` at file scope, before
its group functions; that is all a C-family device does for these ops.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sol.ir import Graph
from sol.ops.registry import CExprFn

if TYPE_CHECKING:
    from sol.lowering.cfamily import Dialect

TEMPLATE = "sol/special.j2"
# Every op whose rule calls a helper of the template (sol.ops.special fills it as it defines them).
USES_HELPERS: set[str] = set()


def _double(d: Dialect, T: str, call: str) -> str:
    return d.convert(T, call)


def unary(fn: str) -> CExprFn:
    """``(T)sol_sf_<fn>((double)x)``: the helper computes in double."""
    return lambda d, a, T, _: _double(d, T, f"sol_sf_{fn}({d.convert('double', a[0])})")


def binary(fn: str) -> CExprFn:
    return lambda d, a, T, _: _double(d, T, f"sol_sf_{fn}({d.convert('double', a[0])}, {d.convert('double', a[1])})")


def binary_with(fn: str, *fixed: str) -> CExprFn:
    """A helper of two operands after leading constant arguments."""
    return lambda d, a, T, _: _double(
        d, T, f"sol_sf_{fn}({', '.join(fixed)}, {d.convert('double', a[0])}, {d.convert('double', a[1])})")


def with_args(fn: str, *fixed: str) -> CExprFn:
    """A helper with leading constant arguments (an order, a flag) before the operand."""
    return lambda d, a, T, _: _double(d, T, f"sol_sf_{fn}({', '.join(fixed)}, {d.convert('double', a[0])})")


def polygamma(d: Dialect, a: list[str], T: str, attrs: dict[str, Any]) -> str:
    return _double(d, T, f"sol_sf_polygamma({float(int(attrs['n']))!r}, {d.convert('double', a[0])})")


def polynomial(fn: str) -> CExprFn:
    """The orthogonal polynomials run in the element type (PyTorch's recurrences, overflow
    included): the float form for float, the double one for anything else."""
    def rule(d: Dialect, a: list[str], T: str, attrs: dict[str, Any]) -> str:
        if T == "float":
            return f"sol_sf_{fn}f({a[0]}, {a[1]})"
        return _double(d, T, f"sol_sf_{fn}({d.convert('double', a[0])}, {d.convert('double', a[1])})")

    return rule


def uses_helpers(graph: Graph) -> bool:
    return any(n.op in USES_HELPERS for n in graph.nodes)


def helpers(dialect: Dialect) -> str:
    """The helper functions in ``dialect``'s spelling (C text for file scope)."""
    from sol.codegen import render

    return render("sol.lowering", TEMPLATE, dialect=dialect)
