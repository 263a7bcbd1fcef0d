"""ONNX's backend node cases compiled for x86, every one that passes on the reference device
(tests/onnx/test_backend.py runs them there, op by op): the same cases against ONNX's expected
outputs, through the generated C++ and oneDNN. One g++ run per case would take about 0.6 s each
(most of it parsing the same headers), so ``sol.optimize_many`` compiles them in batches (one
translation unit per batch).

The suite takes a stratified sample: the cases grouped by the operator types their graphs use,
at most ``PER_GROUP`` from each group, spread over the group (the first, the last and between).
Every operator type x86 is given stays covered, at under half the compile time (about 400 of
the 858 cases; all of them: ``SOL_ONNX_ALL_CASES=1``).
"""

from __future__ import annotations

import os
import warnings
from collections import defaultdict
from typing import Any

import numpy as np
import onnx
import pytest
from onnx.backend.test.loader import load_model_tests
from test_backend import excluded

import sol
from sol.plugin_api import plugin_roles

# Cases x86 refuses that the reference device runs, each with why: the device's gaps, declared
# (the planner names the op and the device), never a wrong number.
X86_REFUSED = {
    "test_flexattention_double_expanded_ver26": "a float64 matmul: oneDNN takes no float64 and the x86 templates "
                                                "generate no matmul",
}


PER_GROUP = 3


def _cases() -> list[Any]:
    names = excluded()
    cases = [c for c in load_model_tests(kind="node") if c.name not in names and c.data_sets]
    return cases if os.environ.get("SOL_ONNX_ALL_CASES") == "1" else _stratified(cases, PER_GROUP)


def _stratified(cases: list[Any], per_group: int) -> list[Any]:
    """At most ``per_group`` cases per set of operator types, evenly spread over each group."""
    groups: dict[tuple[str, ...], list[Any]] = defaultdict(list)
    for case in cases:
        groups[tuple(sorted({n.op_type for n in case.model.graph.node}))].append(case)
    chosen = []
    for group in groups.values():
        if len(group) <= per_group:
            chosen += group
        else:
            step = (len(group) - 1) / (per_group - 1)
            chosen += [group[round(i * step)] for i in range(per_group)]
    return chosen


def _arrays(values: Any) -> list[np.ndarray]:
    return [onnx.numpy_helper.to_array(v) if isinstance(v, onnx.TensorProto) else np.asarray(v) for v in values]


@pytest.fixture(scope="module")
def compiled() -> dict[str, Any]:
    if "x86" not in plugin_roles().devices.names():
        pytest.skip("the x86 device is not installed")
    cases = _cases()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # special values in ONNX's reference data
        sessions = sol.optimize_many([c.model for c in cases], device="x86", fallback=False, return_exceptions=True)
    return {c.name: (c, s) for c, s in zip(cases, sessions)}


def test_every_case_that_passes_on_the_reference_device_passes_on_x86(compiled: dict[str, Any]) -> None:
    """Each case compiles on x86 or is refused for a reason X86_REFUSED lists, and every compiled
    case gives ONNX's expected outputs."""
    failures = []
    refused = {name: str(s).splitlines()[0] for name, (_, s) in compiled.items() if isinstance(s, Exception)}
    unexpected = {name: why for name, why in refused.items() if name not in X86_REFUSED}
    assert not unexpected, "cases x86 refuses that X86_REFUSED does not list:\n" + "\n".join(
        f"{name}: {why}" for name, why in sorted(unexpected.items()))
    listed = {name for name in X86_REFUSED if name in compiled}  # the sample may leave a listed case out
    assert listed <= set(refused), f"listed as refused but compiled: {listed - set(refused)}"
    for name, (case, session) in compiled.items():
        if name in refused:
            continue
        for inputs, expected in case.data_sets:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                got = session(*_arrays(inputs))
            for g, e in zip(got, _arrays(expected)):
                try:
                    assert g.dtype == e.dtype, f"dtype {g.dtype} != {e.dtype}"
                    np.testing.assert_allclose(g, e, rtol=case.rtol, atol=case.atol)
                except AssertionError as exc:
                    failures.append(f"{name}: {str(exc).strip().splitlines()[0]}")
    assert not failures, f"{len(failures)} of {len(compiled)} cases differ on x86:\n" + "\n".join(failures)
