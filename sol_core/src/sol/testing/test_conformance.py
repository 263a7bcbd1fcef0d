"""Device conformance: what every sol device must compute, against the ops' NumPy references.

Run it on an installed device with ``pytest --pyargs sol.testing --sol-device NAME`` (see
:mod:`sol.testing`). Each test compiles through the public path (``compile_graph``: passes,
planner, the device's render/compile/load, the compile cache) and calls the program with host
arrays. An op the device declares unsupported is a skip with the device's reason; every other
difference is a failure that names the op, the case and the output.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np
import pytest

from sol.api import compile_graph
from sol.autodiff import compile_training, differentiate
from sol.debug import run_reference
from sol.errors import UnsupportedOpError
from sol.ir import Graph
from sol.ops.registry import registry
from sol.program import Program
from sol.testing.cases import CASES
from sol.testing.graphs import assert_close, assert_special_equal, graph_ops, network, op_graph, pattern_graph

THREADS, CALLS = 4, 8


def _declared(device: str) -> dict[str, str]:
    from sol.plugins import roles

    return dict(roles().devices.get(device).capabilities.unsupported_ops)


def _skip_unsupported(device: str, ops: set[str]) -> None:
    declared = _declared(device)
    hit = sorted(ops & declared.keys())
    if hit:
        pytest.skip("; ".join(f"{device} declares {op!r} unsupported: {declared[op]}" for op in hit))


def _compile(graph: Graph, device: str) -> Program:
    """``compile_graph``, with a skip where the device refuses an op it declared unsupported
    (also one a core pass introduced, e.g. an LSTM's recurrence); any other refusal fails."""
    _skip_unsupported(device, graph_ops(graph))
    try:
        return compile_graph(graph, device)
    except UnsupportedOpError as exc:
        _skip_unsupported(device, {exc.op})
        raise


def test_every_registered_op_has_cases() -> None:
    """An op without cases would go untested on every device: a plugin registering ops adds
    their cases with ``sol.testing.cases.add_cases``."""
    missing = sorted(set(registry.names()) - set(CASES))
    assert not missing, f"registered ops without conformance cases: {missing} (add them with " \
                        f"sol.testing.cases.add_cases in your conftest.py)"


def test_op(sol_device: str, sol_op: str) -> None:
    """All of one op's cases in one graph: dtypes, shapes, broadcasting and attributes."""
    g, feeds = op_graph(sol_op)
    want = run_reference(g, feeds)
    got = _compile(g, sol_device)(*feeds)
    assert_close(got, want, f"{sol_op} on {sol_device}")


def test_special_values(sol_device: str, sol_op: str) -> None:
    """NaN, +inf, -inf and -0.0 as the NumPy reference has them (the reference being each
    framework's semantics): NaN exactly where the reference has NaN, infinities with their sign.
    ``sol.testing.cases.SPECIAL_EXCLUDED`` lists the cases left out, and why."""
    g, feeds = op_graph(sol_op, special=True)
    with np.errstate(all="ignore"):  # NaN parameters meet NumPy in the reference and in folding passes
        want = run_reference(g, feeds)
        got = _compile(g, sol_device)(*feeds)
    assert len(got) == len(want)
    for i, (o, w) in enumerate(zip(got, want)):
        assert_special_equal(np.asarray(o), w, f"{sol_op} case output {i} on {sol_device} with NaN/inf inputs")


def test_pattern(sol_device: str, sol_pattern: str) -> None:
    """Fusion patterns: several ops in one fused loop nest or one library call with epilogue."""
    g, feeds = pattern_graph(sol_pattern)
    want = run_reference(g, feeds)
    got = _compile(g, sol_device)(*feeds)
    assert_close(got, want, f"pattern {sol_pattern} on {sol_device}")


def test_training(sol_device: str) -> None:
    """A training step: the forward graph (returning what the backward needs) and the backward
    graph from ``sol.autodiff``, both compiled on the device, the backward fed with the device's
    own saved tensors; against both graphs run with the NumPy references."""
    net = network()
    g = net.graph
    wrt = ["x", *net.trained]
    params = {v.name: np.asarray(v.data) for v in g.params}
    feeds = [*net.inputs, *(params[name] for name in net.trained)]
    ref = differentiate(g, wrt)  # the same differentiation, never compiled (passes rewrite in place)
    _skip_unsupported(sol_device, graph_ops(ref.forward) | graph_ops(ref.backward))
    ref_out = run_reference(ref.forward, feeds)
    grads = [np.random.default_rng(i).standard_normal(ref.forward.outputs[k].shape).astype(np.float32)
             for i, k in enumerate(ref.grad_outputs)]
    saved = [feeds[s.index] if s.kind == "input" else ref_out[s.index] for s in ref.saved]
    want_grads = run_reference(ref.backward, saved + grads)
    try:
        program = compile_training(g, wrt, sol_device)
    except UnsupportedOpError as exc:
        _skip_unsupported(sol_device, {exc.op})
        raise
    outs, dev_saved = program.forward(*feeds)
    assert_close(outs, ref_out[:ref.num_outputs], f"training forward on {sol_device}")
    got = program.backward(dev_saved, grads)
    assert_close(got, want_grads, f"gradients of {wrt} on {sol_device}", atol=1e-4)


def test_threads(sol_device: str) -> None:
    """One program called from several threads at once: each call gives the reference's result
    for its own inputs, and its outputs stay its own (no buffer shared between calls)."""
    nets = [network(seed=t) for t in range(THREADS)]
    wants = [run_reference(n.graph, n.inputs) for n in nets]
    program = _compile(nets[0].graph, sol_device)
    start = threading.Barrier(THREADS)
    results: list[list[Sequence[np.ndarray]]] = [[] for _ in range(THREADS)]
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            start.wait(timeout=60)
            for _ in range(CALLS):
                results[t].append(program(*nets[t].inputs))
        except BaseException as exc:  # reported below, with the thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,), name=f"sol-kit-{t}") for t in range(THREADS)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(timeout=300)
    assert not any(th.is_alive() for th in threads), f"{sol_device}: a call from a thread did not return"
    assert not errors, f"{sol_device}: a call from a thread raised {errors[0]!r}"
    for t in range(THREADS):
        assert len(results[t]) == CALLS
        for c, got in enumerate(results[t]):
            assert_close(got, wants[t], f"thread {t}, call {c} on {sol_device}")
