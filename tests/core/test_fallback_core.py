"""Partitioned graphs in core (:mod:`sol.fallback`), through the public API: sol IR graphs with
framework nodes (Python callables over NumPy arrays standing for what a framework runs), given to
``sol.optimize``. What is checked: the fewest compiled parts the framework nodes allow, parts
that only move data not compiled, nothing compiled when nothing is left, the run order (epochs,
hidden framework-side values), values crossing both ways with their types checked, and the
shared helpers (one warning class, the stack level, the converter table)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

import sol
import sol.api
import sol.plugin_api
from sol import fallback
from sol.converters import ConverterTable
from sol.errors import SolError, SolFallbackWarning
from sol.ir import Graph, Node, TensorType, Value
from sol.ir_frontend import CompiledGraph

DEVICE = "x86"  # the cut is the same for every device; one keeps the compiles few
F = TensorType((3, 4))


def _fw(g: Graph, fn: Callable[..., Any], *inputs: Value, out: TensorType | None = F,
        after: tuple[Node, ...] = ()) -> Node:
    return fallback.mark(g, fn, list(inputs), [out] if out is not None else [], after=after, label=fn.__name__)


def _kinds(compiled: CompiledGraph) -> list[str]:
    program = compiled.program
    assert isinstance(program, fallback.PartitionedProgram)
    return ["part" if isinstance(s, fallback.SolStep) and s.compiled else "host" if isinstance(s, fallback.SolStep)
            else f"framework{len(s.nodes)}" for s in program.steps]


def _x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((3, 4)).astype("float32")


def test_fewest_parts_in_epoch_order_with_values_crossing_both_ways() -> None:
    """relu and the independent tanh branch share part 0; the chain cumsum -> cumsum is one
    framework step; the two framework nodes reading relu in parallel share it too; sigmoid and
    the adds that join everything form part 1. Two parts, where a cut per connected region would
    make more; part 1 reads the weight by reference."""
    g = Graph("mixed")
    x = g.add_input("x", F)
    w = g.add_param("w", np.linspace(-1, 1, 12, dtype="float32").reshape(3, 4))
    r = g.add_node("relu", [x]).output
    side = g.add_node("mul", [g.add_node("tanh", [x]).output, g.add_const(np.float32(3))]).output

    def cumsum(a: np.ndarray) -> np.ndarray:
        return np.cumsum(a, axis=1)

    def rowmax(a: np.ndarray) -> np.ndarray:
        return np.broadcast_to(a.max(axis=1, keepdims=True), a.shape).astype("float32")

    c1 = _fw(g, cumsum, r)
    c2 = _fw(g, cumsum, c1.output)
    m = _fw(g, rowmax, r)
    s = g.add_node("sigmoid", [c2.output]).output
    y = g.add_node("add", [g.add_node("add", [s, side]).output, g.add_node("mul", [m.output, w]).output]).output
    g.outputs = [y, c1.output]

    compiled = sol.optimize(g, device=DEVICE)
    assert _kinds(compiled) == ["part", "framework3", "part"]
    program = compiled.program
    assert isinstance(program, fallback.PartitionedProgram) and len(program.programs) == 2
    first, second = program.partition.parts
    assert sorted(n.op for n in first.graph.nodes) == ["mul", "relu", "tanh"]
    assert sorted(n.op for n in second.graph.nodes) == ["add", "add", "mul", "sigmoid"]
    assert [v.name for v in first.outputs] == [r.name, side.name], "read later: by the framework and by the add"
    snapshot = next(p for p in program.graph.params if p.name == "w").data  # optimize's copy of the user's
    assert np.shares_memory(next(p for p in second.graph.params if p.name == "w").data, snapshot)

    xv = _x()
    rv = np.maximum(xv, 0)
    want = 1 / (1 + np.exp(-np.cumsum(np.cumsum(rv, 1), 1))) + np.tanh(xv) * 3 + rowmax(rv) * w.data
    got = compiled(xv)
    np.testing.assert_allclose(got[0], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got[1], np.cumsum(rv, 1), rtol=1e-6)


def test_parts_that_only_move_data_and_graphs_with_nothing_to_compile_compile_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("nothing here is worth a compile")

    # The plugin API caches a name on first use: patched first (its lookup then caches the real
    # function, which monkeypatch restores), a stub cached there would outlive this test.
    monkeypatch.setattr(sol.plugin_api, "compile_graph", refuse)
    monkeypatch.setattr(sol.api, "compile_graph", refuse)

    def flip(a: np.ndarray) -> np.ndarray:
        return a[::-1].copy()

    g = Graph("views")
    x = g.add_input("x", F)
    t = g.add_node("transpose", [x], {"perm": (1, 0)}).output
    f = _fw(g, flip, t, out=TensorType((4, 3)))
    y = g.add_node("reshape", [f.output], {"shape": (12,)}).output
    g.outputs = [y, t]
    compiled = sol.optimize(g, device=DEVICE)
    assert _kinds(compiled) == ["host", "framework1", "host"]
    assert compiled.program.programs == []
    xv = _x()
    got = compiled(xv)
    np.testing.assert_array_equal(got[0], xv.T[::-1].reshape(-1))
    np.testing.assert_array_equal(got[1], xv.T)
    assert not np.shares_memory(got[1], xv), "an output is the caller's own array, never a view of its input"

    alone = Graph("alone")
    a = alone.add_input("a", F)
    alone.outputs = [_fw(alone, np.negative, a).output]
    compiled = sol.optimize(alone, device=DEVICE)
    assert _kinds(compiled) == ["framework1"] and compiled.program.programs == []
    np.testing.assert_array_equal(compiled(xv)[0], -xv)


def test_framework_nodes_run_in_order_also_through_values_only_the_framework_holds() -> None:
    """``after``: the second framework node reads what the first kept on the framework's side
    (no sol value); a sol node between them puts the second one an epoch later."""
    kept: list[np.ndarray] = []

    def keep(a: np.ndarray) -> None:
        kept.append(a * 2)

    def use(a: np.ndarray) -> np.ndarray:
        return a + kept[-1]

    g = Graph("hidden")
    x = g.add_input("x", F)
    k = _fw(g, keep, x, out=None)
    e = g.add_node("exp", [x]).output
    u = _fw(g, use, e, after=(k,))
    g.outputs = [g.add_node("neg", [u.output]).output]
    compiled = sol.optimize(g, device=DEVICE)
    assert _kinds(compiled) == ["part", "framework2", "part"]
    xv = _x()
    np.testing.assert_allclose(compiled(xv)[0], -(np.exp(xv) + xv * 2), rtol=1e-5)

    bad = Graph("bad")
    b = bad.add_input("b", F)
    exp = bad.add_node("exp", [b])
    with pytest.raises(SolError, match="not a framework node"):
        fallback.mark(bad, np.negative, [b], [F], after=[exp])


def test_a_framework_result_of_another_type_than_declared_is_an_error_not_a_wrong_result() -> None:
    g = Graph("liar")
    x = g.add_input("x", F)
    g.outputs = [_fw(g, lambda a: a.astype("float64"), x).output]
    with pytest.raises(SolError, match=r"returned float64\[3, 4\] .* declared float32\[3, 4\]"):
        sol.optimize(g, device=DEVICE)(_x())


def test_partitioned_graphs_are_refused_where_a_whole_graph_is_expected() -> None:
    g = Graph("marked")
    x = g.add_input("x", F)
    g.outputs = [g.add_node("relu", [_fw(g, np.negative, x).output]).output]
    with pytest.raises(SolError, match="compile_partitioned"):
        sol.api.compile_graph(g, DEVICE)
    g.nodes[0].attrs["call"] = fallback.FrameworkCall("not callable")
    with pytest.raises(SolError, match="Python callable"):
        sol.optimize(g, device=DEVICE)


def _module(name: str, source: str) -> dict[str, Any]:
    scope: dict[str, Any] = {"__name__": name}
    exec(compile(source, f"<{name}>", "exec"), scope)
    return scope


def test_the_fallback_warning_points_at_the_users_line_past_sol_and_the_framework() -> None:
    plugin = _module("sol_acme.importer", (
        "import warnings\n"
        "from sol.errors import SolFallbackWarning, user_stacklevel\n"
        "def warn(*framework):\n"
        "    warnings.warn('falls back', SolFallbackWarning, stacklevel=user_stacklevel(*framework))\n"))
    framework = _module("acmeframework.layers", "def call(f, *a):\n    f(*a)\n")
    core = _module("sol.api_like", "def optimize(f, *a):\n    f(*a)\n")
    assert issubclass(SolFallbackWarning, UserWarning)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        core["optimize"](framework["call"], plugin["warn"], "acmeframework"); line = _lineno()  # noqa: E702
        core["optimize"](framework["call"], plugin["warn"])  # the framework not named: its frame is the user's
    assert [(w.filename, w.lineno) for w in caught] == [(__file__, line), ("<acmeframework.layers>", 2)]


def _lineno() -> int:
    import sys

    return sys._getframe(1).f_lineno


def test_converter_table() -> None:
    table: ConverterTable[Callable[..., int]] = ConverterTable("Acme")

    @table.converts("B", "A")
    def conv(*args: Any) -> int:
        return 1

    assert table.lookup("A") is conv and table.lookup("C") is None
    assert table.names() == ["A", "B"]
    with pytest.raises(ValueError, match="two Acme converters for B"):
        table.converts("B")(conv)
