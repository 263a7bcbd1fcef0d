"""Regenerates ``backend_exclusions.txt``: runs every ONNX backend test case (node, simple,
PyTorch-converted and -operator; "real" models need a download) on sol's reference device with
``fallback=False`` and lists each case that does not pass with the reason sol gave.

    python tests/onnx/backend_scan.py [--device x86] [--write]

Without ``--write`` it prints the counts (and, per device, the seconds each case took). A case that
fails with a wrong number rather than a refusal is printed as ``WRONG`` and never written as an
exclusion: that is a bug to fix. ``--device x86`` compiles every case (about 1 s of g++ each).
"""

from __future__ import annotations

import argparse
import collections
import dataclasses
import glob
import os
import re
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper
from onnx.backend.test.loader import load_model_tests

KINDS = ("node", "simple", "pytorch-converted", "pytorch-operator")
HEADER = """\
# ONNX backend test cases (onnx.backend.test) that tests/onnx/test_backend.py excludes, each with its
# reason: an operator sol has no converter for (and ONNX defines no function body sol converts), a use
# of an operator its converter refuses (sol's fallback then runs it in ONNX Runtime; the tests run with
# fallback=False), a dtype sol has no type for, or a kind of case that needs a download. Format: case
# name, whitespace, '#', reason. Written by tests/onnx/backend_scan.py --write; a case that computes a
# wrong number is never excluded here: it is a bug to fix.
"""


def _array(a: Any) -> Any:
    if isinstance(a, onnx.TensorProto):
        return numpy_helper.to_array(a)
    return np.asarray(a) if isinstance(a, np.generic) else a


def _data(case: Any) -> tuple[Any, list[Any], list[Any]] | None:
    """(model, inputs, expected outputs) of a case, None where it has no tensor data."""
    model, data = case.model, case.data_sets
    if model is None and case.model_dir:
        model = onnx.load(os.path.join(case.model_dir, "model.onnx"))
        sets = sorted(glob.glob(os.path.join(case.model_dir, "test_data_set_*")))
        if sets:
            def read(pattern: str) -> list[Any]:
                files = sorted(glob.glob(os.path.join(sets[0], pattern)), key=lambda p: int(p.rsplit("_", 1)[1][:-3]))
                return [numpy_helper.to_array(onnx.load_tensor(f)) for f in files]
            data = [(read("input_*.pb"), read("output_*.pb"))]
    if model is None or not data:
        return None
    ins, outs = ([_array(a) for a in part] for part in data[0])
    if any(not isinstance(a, np.ndarray) for a in [*ins, *outs]):
        return None
    return model, ins, outs


def run_case(case: Any, device: str) -> tuple[str, str]:
    """("pass" | "refused" | "wrong" | "nodata", reason)."""
    from sol_onnx.backend import SolBackend

    found = _data(case)
    if found is None:
        return "nodata", "inputs or outputs are sequences/optionals, or no test data (sol holds tensors only)"
    model, ins, outs = found
    try:
        got = SolBackend.prepare(model, "CPU", sol_device=device, fallback=False).run(ins)
    except Exception as exc:  # a refusal names the node and why; anything else is reported as it is
        return "refused", _reason(exc)
    try:
        for g, e in zip(got, outs):
            assert g.dtype == e.dtype, f"dtype {g.dtype}, expected {e.dtype}"
            np.testing.assert_allclose(g, e, rtol=case.rtol, atol=case.atol)
    except AssertionError as exc:
        return "wrong", str(exc).strip().splitlines()[0]
    return "pass", ""


def _reason(exc: Exception) -> str:
    text = str(exc)
    m = re.search(r"\n  (\S+) \(node '[^']*'\)(?:: (.*))?", text)
    if m:
        why = m.group(2) or "not converted"
        if why == "sol has no converter for this operator":
            return f"no converter for {m.group(1)}"
        return f"{m.group(1)}: {why}"[:200]
    return re.sub(r" of test_\w+", "", f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}")[:200]


def _all_float32(case: Any) -> bool:
    model = case.model if case.model is not None else onnx.load(os.path.join(case.model_dir, "model.onnx"))
    values = [*model.graph.input, *model.graph.output]
    return bool(values) and all(v.type.tensor_type.elem_type == onnx.TensorProto.FLOAT for v in values)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="interp")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    from sol.testing import reference_device

    lines: list[str] = []
    wrong: list[str] = []
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    float_cases = float_passed = 0  # node cases whose inputs and outputs are all float32
    seconds = 0.0
    with reference_device():
        for kind in (*KINDS, "real"):
            for case in load_model_tests(kind=kind):
                if kind == "real":
                    status, why = "refused", "real model: ONNX downloads it from the model zoo (no network here)"
                else:
                    t0 = time.perf_counter()
                    status, why = run_case(dataclasses.replace(case), args.device)
                    seconds += time.perf_counter() - t0 if status == "pass" else 0.0
                counts[kind, status] += 1
                if kind == "node" and status != "nodata" and _all_float32(case):
                    float_cases += 1
                    float_passed += status == "pass"
                if status == "wrong":
                    wrong.append(f"WRONG {case.name}: {why}")
                elif status != "pass":
                    lines.append(f"{case.name}  # {why}")
    print("\n".join(wrong))
    print(sorted(counts.items()), f"passing cases took {seconds:.1f} s on {args.device}")
    print(f"float32 node cases (inputs and outputs all float32) that pass: {float_passed} of {float_cases} "
          f"({100 * float_passed / max(float_cases, 1):.1f}%)")
    if args.write and not wrong:
        Path(__file__).with_name("backend_exclusions.txt").write_text(HEADER + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
