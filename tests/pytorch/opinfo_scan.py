"""PyTorch's OpInfo database (``torch.testing._internal.common_methods_invocations.op_db``) against
sol (issue #22 item 3): each op's float32 samples as single-op modules, optimized with
``fallback=False`` and compared with eager. Each op is reported as

* ``ok``: every sample tried compiles whole and matches eager (rtol 1e-3);
* ``refused``: sol refuses a sample (a clear ``UnsupportedOpError`` / export refusal: PyTorch
  would run it with ``fallback=True``);
* ``wrong``: a sample compiles but its result differs from eager: a bug, never acceptable;
* ``error``: anything else raised (a crash in sol: a bug too).

Run as a script to scan every op (``--device interp``, the reference device, no C compile, is the
default; ``--device x86`` compiles each sample) and, with ``--write``, rewrite
``opinfo_exclusions.txt``, the list of refused ops with the first reason, which the suite test
(:mod:`test_opinfo`) skips. ``--samples N`` bounds the samples tried per op (3 by default).
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import types
import unittest
import warnings
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.utils import _pytree as pytree

EXCLUSIONS = Path(__file__).with_name("opinfo_exclusions.txt")
RTOL, ATOL = 1e-3, 1e-4
UNINITIALIZED = {"empty", "empty_like", "new_empty", "empty_strided", "empty_permuted", "new_empty_strided"}
"""Ops whose values are whatever memory held: only shapes and dtypes are compared."""


def op_db() -> list[Any]:
    """OpInfo's ops with float32 on the CPU. PyTorch's test utilities import ``expecttest`` (a
    test-only package, absent here) for their TestCase base class only, which the samples never
    use: a stand-in lets them import without it."""
    if "expecttest" not in sys.modules:
        try:
            import expecttest  # noqa: F401
        except ImportError:
            stub = types.ModuleType("expecttest")
            stub.TestCase = unittest.TestCase  # type: ignore[attr-defined]
            sys.modules["expecttest"] = stub
    from torch.testing._internal.common_methods_invocations import op_db as db

    return [op for op in db if torch.float32 in op.supported_dtypes("cpu")]


def op_name(op: Any) -> str:
    return f"{op.name}.{op.variant_test_name}" if op.variant_test_name else op.name


class OneOp(torch.nn.Module):
    """``op(*args, **kwargs)`` with the sample's tensors as the module's inputs (everything else
    fixed), so that sol sees a graph of that one op on its inputs."""

    def __init__(self, fn: Any, spec: Any, leaves: list[Any], slots: list[int]) -> None:
        super().__init__()
        self.fn, self.spec, self.leaves, self.slots = fn, spec, leaves, slots

    def forward(self, *tensors: torch.Tensor) -> Any:
        leaves = list(self.leaves)
        for slot, t in zip(self.slots, tensors, strict=True):
            leaves[slot] = t
        args, kwargs = pytree.tree_unflatten(leaves, self.spec)
        return self.fn(*args, **kwargs)


def samples(op: Any, limit: int) -> Iterator[tuple[OneOp, tuple[torch.Tensor, ...]]]:
    """Up to ``limit`` float32 samples of ``op`` as (module, inputs)."""
    torch.manual_seed(0)
    for i, sample in enumerate(op.sample_inputs("cpu", torch.float32, requires_grad=False)):
        if i >= limit:
            return
        leaves, spec = pytree.tree_flatten(((sample.input, *sample.args), dict(sample.kwargs)))
        slots = [j for j, leaf in enumerate(leaves) if isinstance(leaf, torch.Tensor)]
        # eval: a module is in training mode when built, and sol compiles those for training
        yield OneOp(op.op, spec, leaves, slots).eval(), tuple(leaves[j] for j in slots)


@dataclass
class Result:
    status: str  # ok | refused | wrong | error | nosample
    why: str = ""


def _same(got: Any, want: Any) -> str:
    """'' where ``got`` equals eager's ``want`` (tensors close, same dtype and shape), else why not."""
    g, w = pytree.tree_leaves(got), pytree.tree_leaves(want)
    if len(g) != len(w):
        return f"{len(g)} outputs, eager has {len(w)}"
    for a, b in zip(g, w):
        if isinstance(b, torch.Tensor):
            if not isinstance(a, torch.Tensor):
                return f"{type(a).__name__} where eager gives a tensor"
            try:
                torch.testing.assert_close(a, b, rtol=RTOL, atol=ATOL, equal_nan=True)
            except AssertionError as exc:
                return str(exc).strip().splitlines()[0]
        elif isinstance(b, float) and isinstance(a, float) and math.isnan(a) and math.isnan(b):
            continue
        elif a != b:
            return f"{a!r} where eager gives {b!r}"
    return ""


def check_sample(module: OneOp, inputs: tuple[torch.Tensor, ...], device: str, values: bool = True) -> Result:
    import sol
    from sol.errors import SolError

    try:
        with torch.no_grad():
            want = module(*[t.clone() for t in inputs])
    except Exception as exc:  # noqa: BLE001 - eager rejects the sample itself: not sol's business
        return Result("nosample", f"eager: {type(exc).__name__}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fast = sol.optimize(module, *inputs, device=device, fallback=False)
            with torch.no_grad():
                got = fast(*[t.clone() for t in inputs])
    except SolError as exc:
        return Result("refused", _first_line(exc))
    except Exception as exc:  # noqa: BLE001 - any other exception is a crash in sol: reported
        return Result("error", f"{type(exc).__name__}: {_first_line(exc)}")
    if not values:
        got, want = _shapes(got), _shapes(want)
    why = _same(got, want)
    return Result("wrong", why) if why else Result("ok")


def _shapes(out: Any) -> Any:
    return [(tuple(t.shape), t.dtype) if isinstance(t, torch.Tensor) else t for t in pytree.tree_leaves(out)]


def _first_line(exc: BaseException) -> str:
    """The gist: for sol's unsupported-op report, the ATen ops it names (with their reasons),
    without the source locations; otherwise the message's first lines."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    ops = sorted({line.split(" in model")[0] for line in lines if line.startswith("aten.")})
    if ops:
        return "; ".join(ops)[:200]
    text = " ".join(lines[:2]) if lines else type(exc).__name__
    return text[:200]


RANK = {"error": 0, "wrong": 1, "refused": 2, "ok": 3, "nosample": 4}


def check_op(op: Any, device: str, limit: int) -> Result:
    """The worst of the op's samples' results (error < wrong < refused < ok)."""
    worst = Result("nosample", "no float32 sample")
    try:
        for module, inputs in samples(op, limit):
            result = check_sample(module, inputs, device, values=op_name(op) not in UNINITIALIZED)
            if RANK[result.status] < RANK[worst.status]:
                worst = result
            if worst.status in ("error", "wrong"):
                break
    except Exception as exc:  # noqa: BLE001 - OpInfo's own sample generator failed
        return Result("nosample", f"samples: {type(exc).__name__}")
    return worst


def excluded() -> dict[str, str]:
    """Op name -> why it is excluded (refused), from ``opinfo_exclusions.txt``."""
    out = {}
    if EXCLUSIONS.exists():
        for line in EXCLUSIONS.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                name, _, why = line.partition("#")
                out[name.strip()] = why.strip()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="interp")
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--only", nargs="*", help="op names to scan (default: all)")
    parser.add_argument("--write", action="store_true", help="rewrite opinfo_exclusions.txt")
    args = parser.parse_args(argv)
    from sol.testing import reference_device

    ops = [op for op in op_db() if not args.only or op_name(op) in args.only]
    results: dict[str, Result] = {}
    start = time.perf_counter()
    with reference_device():
        for op in ops:
            results[op_name(op)] = r = check_op(op, args.device, args.samples)
            if r.status != "ok":
                print(f"{r.status:8} {op_name(op)}: {r.why}", flush=True)
    counts = Counter(r.status for r in results.values())
    scanned = len(results) - counts["nosample"]
    print(f"\n{len(results)} ops ({scanned} with a float32 sample eager runs) in {time.perf_counter() - start:.0f} s: "
          + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())))
    if scanned:
        print(f"compile and match: {counts['ok']} of {scanned} ({100 * counts['ok'] / scanned:.1f}%)")
    if args.write:
        lines = ["# OpInfo ops sol refuses (float32 samples, fallback=False), written by opinfo_scan.py --write.",
                 "# Format: op name  # the first refusal's reason. test_opinfo skips these."]
        lines += [f"{name}  # {r.why.replace('#', '')}" for name, r in sorted(results.items())
                  if r.status == "refused"]
        EXCLUSIONS.write_text("\n".join(lines) + "\n")
    return 1 if counts["wrong"] or counts["error"] else 0


if __name__ == "__main__":
    sys.exit(main())
