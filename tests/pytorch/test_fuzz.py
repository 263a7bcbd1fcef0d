"""Random-graph fuzzer: random small models (tests/pytorch/fuzz_models.py: chains of 2-6 ops over the
ATen ops the PyTorch frontend claims, random shapes, dims, keepdim, broadcasting, dtypes,
non-contiguous inputs) compiled with ``fallback=False`` and compared with PyTorch eager.

Tolerance: rtol 1e-4, atol 1e-5 scaled by the output's largest finite magnitude; NaN and inf must
sit where eager has them. An element outside it is sol's error only if sol is also further from a
float64 run of the same model than eager is (``_rounding``): float32 rounding in a long chain can
move a result further than a single op's tolerance, and then eager is no closer to the truth than
sol. Failing that, a chain being a small network, the network tolerance applies (rtol 1e-3, atol
1e-4 scaled; DESIGN.md section 7): a layer norm of a row of equal values turns sol's one-ulp
different mean into 1e-4 where PyTorch's mean is exact. An argmax/argmin/max(dim) index may name
any element whose value ties the extreme.

``test_generator_covers_every_claimed_op`` checks that the generator reaches every ATen overload
the frontend claims (but the few a forward cannot produce, fuzz_models.UNREACHABLE).

Modes:

- CI (default): a fixed, seeded budget, ``EXAMPLES`` hypothesis examples per device, each a
  model of ``CHAINS`` independent chains (one compile per example).
- Longer runs: ``SOL_FUZZ_EXAMPLES=2000 pytest tests/pytorch/test_fuzz.py`` (``SOL_FUZZ_SEED``
  picks another seed; hypothesis stops at the first failing example), or, for release checks that
  should report every failure, ``python tests/pytorch/test_fuzz.py --examples 2000 [--device x86]
  [--seed 0] [--log fuzz.jsonl]``: seeds one after another with a plain ``random.Random`` each,
  every failure printed with its chain as code (replay one with ``--seed N --examples 1``).
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import time
import traceback
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from torch.utils import _pytree as pytree

sys.path.insert(0, os.path.dirname(__file__))

import fuzz_models as fm  # noqa: E402

CHAINS = 6
EXAMPLES = int(os.environ.get("SOL_FUZZ_EXAMPLES") or 30)
SEED = int(os.environ.get("SOL_FUZZ_SEED") or 0)
# The emulated VE and CUDA devices compile a host file per example as well: a smaller share.
DEVICE_SHARE = {"ve": 0.5, "cuda": 0.5}  # the emulations compile a host file per example as well
RTOL, ATOL = 1e-4, 1e-5  # one op (DESIGN.md section 7)
NET_RTOL, NET_ATOL = 1e-3, 1e-4  # a whole network: the last word for a chain float64 does not settle


@dataclass
class Failure:
    chain: int
    what: str
    code: str

    def __str__(self) -> str:
        return f"chain {self.chain}: {self.what}\n{self.code}"


def _arrays(out: Any) -> list[np.ndarray]:
    return [t.detach().numpy() for t in pytree.tree_leaves(out)]


def _scale(want: np.ndarray) -> float:
    finite = np.abs(want[np.isfinite(want)]) if want.dtype.kind == "f" else np.abs(want)
    return max(1.0, float(finite.max())) if finite.size else 1.0


def _bad(got: np.ndarray, want: np.ndarray, rtol: float = RTOL, atol: float = ATOL) -> np.ndarray:
    """Elements outside the tolerance (NaN-aware: NaN must meet NaN, inf the same inf)."""
    if want.dtype.kind != "f":
        return np.asarray(got != want)
    tol = atol * _scale(want) + rtol * np.abs(np.nan_to_num(want, posinf=0.0, neginf=0.0))
    same_special = (np.isnan(got) & np.isnan(want)) | (np.isinf(want) & (got == want))
    with np.errstate(invalid="ignore"):
        close = np.abs(got.astype(np.float64) - want) <= tol
    return ~(same_special | (close & np.isfinite(want) & np.isfinite(got)))


def _rounding(got: np.ndarray, want: np.ndarray, exact: np.ndarray, bad: np.ndarray) -> bool:
    """At every bad element, sol is no further from the float64 result than eager is (or within
    the tolerance of it): float32 rounding, not sol's error."""
    g, w, e = (a[bad].astype(np.float64) for a in (got, want, exact))
    with np.errstate(invalid="ignore"):
        err_sol, err_eager = np.abs(g - e), np.abs(w - e)
    tol = ATOL * _scale(exact) + RTOL * np.abs(np.nan_to_num(e, posinf=0.0, neginf=0.0))
    ok = (err_sol <= np.maximum(4 * err_eager, tol)) | (np.isnan(g) & np.isnan(e)) | (np.isinf(e) & (g == e))
    return bool(ok.all())


def _selection_ok(step: fm.SelectStep, src: np.ndarray, idx: np.ndarray) -> bool:
    """``idx`` names, along ``step.dim``, elements of ``src`` that tie the extreme (or the first
    NaN, as PyTorch picks it)."""
    if not step.keepdim:
        idx = np.expand_dims(idx, step.dim)
    if idx.min(initial=0) < 0 or idx.max(initial=0) >= src.shape[step.dim]:
        return False
    picked = np.take_along_axis(src, idx, step.dim).astype(np.float64)
    biggest = "max" in step.code
    with np.errstate(invalid="ignore"):
        ext = src.max(axis=step.dim, keepdims=True) if biggest else src.min(axis=step.dim, keepdims=True)
    ext = ext.astype(np.float64)
    nan_rows = np.isnan(ext)
    tol = ATOL * _scale(src) + RTOL * np.abs(np.nan_to_num(ext))
    ok = np.where(nan_rows, np.isnan(picked), np.abs(picked - ext) <= tol)
    return bool(ok.all())


def _float64(case: fm.FuzzCase) -> tuple[Any, ...]:
    model = copy.deepcopy(case.model).double()
    inputs = [x.double() if x.dtype.is_floating_point else x for x in case.inputs]
    with torch.no_grad():
        return model(*inputs)


def check_case(case: fm.FuzzCase, device: str) -> list[Failure]:
    """Compile ``case`` on ``device`` and compare each chain with eager; the failures found."""
    import sol

    with torch.no_grad():
        want = case.model(*case.inputs)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fast = sol.optimize(case.model, *case.inputs, device=device, fallback=False)
            with torch.no_grad():
                got = fast(*case.inputs)
    except Exception as exc:  # a crash is a finding too: report it with the whole model
        return [Failure(-1, f"{type(exc).__name__}: {exc}".strip()[:2000], case.describe())]
    exact: tuple[Any, ...] | None = None
    failures = []
    for i, chain in enumerate(case.model.chain_list()):
        g, w = _arrays(got[i]), _arrays(want[i])
        last = list(chain.steps)[-1] if len(chain.steps) else None
        select = last if isinstance(last, fm.SelectStep) else None
        if len(g) != len(w):
            failures.append(Failure(i, f"{len(g)} outputs, eager has {len(w)}", case.describe(i)))
            continue
        for k, (ga, wa) in enumerate(zip(g, w)):
            if ga.shape != wa.shape or ga.dtype != wa.dtype:
                failures.append(Failure(i, f"output {k}: {ga.dtype}{list(ga.shape)}, eager {wa.dtype}{list(wa.shape)}",
                                        case.describe(i)))
                continue
            if select is not None and k == len(g) - 1 and wa.dtype.kind in "iu":
                if not _selection_ok(select, w[0], ga):
                    failures.append(Failure(i, f"index output: sol {ga.ravel()[:8]}, eager {wa.ravel()[:8]}",
                                            case.describe(i)))
                continue
            bad = _bad(ga, wa)
            if not bad.any():
                continue
            if wa.dtype.kind == "f":
                exact = exact if exact is not None else _float64(case)
                e = _arrays(exact[i])[k]
                if e.shape == wa.shape and _rounding(ga, wa, e, bad):
                    continue
                if not _bad(ga, wa, NET_RTOL, NET_ATOL).any():
                    continue
            at = tuple(int(j) for j in np.argwhere(bad)[0])
            failures.append(Failure(i, f"output {k}: {int(bad.sum())}/{bad.size} elements differ; at {at}: "
                                       f"sol {ga[at]!r}, eager {wa[at]!r}", case.describe(i)))
    return failures


def _budget(device: str) -> int:
    return max(1, int(EXAMPLES * DEVICE_SHARE.get(device, 1.0)))


def test_random_models_match_eager(device: str) -> None:
    """Random multi-chain models, one compile each, against eager (see the module docstring)."""
    from hypothesis import HealthCheck, Phase, given, seed, settings
    from hypothesis import strategies as st

    @seed(SEED)
    @settings(max_examples=_budget(device), deadline=None, database=None, derandomize=SEED == 0,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(data: Any) -> None:
        case = fm.draw_model(fm.HypothesisChooser(data), CHAINS)
        failures = check_case(case, device)
        assert not failures, "\n\n".join(str(f) for f in failures)

    run()


def test_generator_covers_every_claimed_op() -> None:
    """The generator reaches every ATen overload the frontend claims (sol_pytorch.supported_ops()),
    but those a forward cannot produce through torch.export (fuzz_models.UNREACHABLE), within a
    fixed set of seeds: the graphs torch.export makes of its models name them."""
    from sol_pytorch.aten import supported_ops
    from sol_pytorch.importer import export

    claimed = set(supported_ops()) - fm.UNREACHABLE
    assert fm.UNREACHABLE <= set(supported_ops()), "UNREACHABLE names ops the frontend no longer claims"
    seen: set[str] = set()
    # The seeds that covered every claimed op when this was written (a greedy cover of the first
    # 68), tried first: 20 exports instead of 68 (the cost: ~1.4 s each). The property checked is
    # the same either way (coverage within seeds 0-99); the rest follow if the generator changed.
    cover = [0, 4, 5, 7, 15, 17, 19, 22, 25, 29, 30, 42, 45, 46, 52, 54, 55, 59, 63, 67]
    for s in cover + [s for s in range(100) if s not in cover]:  # 24 chains a model: fewer exports
        case = fm.draw_model(fm.RandomChooser(s), 24)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            graph = export(case.model, tuple(case.inputs)).graph
        seen |= {str(n.target) for n in graph.nodes if n.op == "call_function"}
        if claimed <= seen:
            return
    raise AssertionError(f"claimed ops the fuzzer never generates: {sorted(claimed - seen)}")


@pytest.mark.parametrize("seed_", range(20))
def test_generator_is_deterministic(seed_: int) -> None:
    """The same choices give the same model and inputs (a failure replays from its seed)."""
    a, b = fm.draw_model(fm.RandomChooser(seed_), 3), fm.draw_model(fm.RandomChooser(seed_), 3)
    assert a.describe() == b.describe()
    assert all(torch.equal(x, y) for x, y in zip(a.inputs, b.inputs))
    with torch.no_grad():
        wa, wb = a.model(*a.inputs), b.model(*b.inputs)
    for x, y in zip(pytree.tree_leaves(wa), pytree.tree_leaves(wb)):
        assert torch.equal(x, y) or (x.isnan() == y.isnan()).all()


def main(argv: list[str] | None = None) -> int:
    """Release-check mode: every seed in turn, every failure reported (see the module docstring)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--examples", type=int, default=100)
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--device", default="x86")
    p.add_argument("--chains", type=int, default=CHAINS)
    p.add_argument("--log", help="append one JSON line per failing example here")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    graphs = failing = 0
    start = time.time()
    for s in range(args.seed, args.seed + args.examples):
        case = fm.draw_model(fm.RandomChooser(s), args.chains)
        try:
            failures = check_case(case, args.device)
        except Exception:  # the checker itself: report and go on
            failures = [Failure(-1, traceback.format_exc()[-2000:], case.describe())]
        graphs += len(case.model.chain_list())
        if failures:
            failing += 1
            print(f"--- seed {s}: {len(failures)} failing chain(s)", flush=True)
            for f in failures:
                print(f, flush=True)
            if args.log:
                with open(args.log, "a") as fh:
                    fh.write(json.dumps({"seed": s, "failures": [vars(f) for f in failures]}) + "\n")
        if (s - args.seed + 1) % 25 == 0:
            print(f"... {s - args.seed + 1} examples, {graphs} chains, {failing} failing, "
                  f"{time.time() - start:.0f} s", flush=True)
    print(f"done: {args.examples} examples ({graphs} chains) on {args.device}, {failing} with failures, "
          f"{time.time() - start:.0f} s")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
