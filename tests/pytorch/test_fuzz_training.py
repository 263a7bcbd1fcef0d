"""Random-graph fuzzer for training: the random models of tests/pytorch/fuzz_models.py (chains of
2-6 ops over the ATen ops the PyTorch frontend claims), differentiated by sol and compared with
eager's autograd: the gradient of every float input and of every parameter, and ``None``
exactly where eager leaves it None.

Each example draws a model of ``CHAINS`` chains and puts only some chains' outputs into the loss
(a projection on fixed random weights): the other chains' parameters and the inputs only they
read must keep ``.grad is None``, as in eager. Modules keep the generator's eval modes (its
BatchNorms use running statistics: tiny random shapes would often leave one value per channel,
which training mode refuses); the model itself is marked training, so ``optimize`` compiles the
training programs (one forward and one backward compile per example).

Tolerance: rtol 1e-4, atol 1e-5 scaled by the gradient's largest finite magnitude; NaN and inf
where eager has them. An element outside it is sol's error only if sol is also further from a
float64 run of the same model than eager is (float32 rounding along a chain, as test_fuzz judges
outputs), and unless a few elements trade gradient that adds up to the same behind an amax/amin
(a maximum tied in one float32 result only: :func:`_tie_split`).

Modes: CI (default) runs ``EXAMPLES`` seeded hypothesis examples per device (about a minute on
x86); ``SOL_FUZZ_TRAINING_EXAMPLES=500`` (and ``SOL_FUZZ_SEED``) runs longer; ``python
tests/pytorch/test_fuzz_training.py --examples 500 [--device x86] [--seed 0]`` reports every
failing seed (replay one with ``--seed N --examples 1``).
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
import traceback
import warnings
from typing import Any

import numpy as np
import torch
from torch.utils import _pytree as pytree

sys.path.insert(0, os.path.dirname(__file__))

import fuzz_models as fm  # noqa: E402
from test_fuzz import Failure, _bad, _rounding  # noqa: E402

CHAINS = 4
EXAMPLES = int(os.environ.get("SOL_FUZZ_TRAINING_EXAMPLES") or 12)
SEED = int(os.environ.get("SOL_FUZZ_SEED") or 0)
DEVICE_SHARE = {"ve": 0.5, "cuda": 0.5}  # the emulations compile a host file per program as well


def _leaves(case: fm.FuzzCase, dtype: torch.dtype | None = None) -> list[torch.Tensor]:
    """The case's inputs as fresh leaves (float ones requiring grad), strides kept."""
    out = []
    for x in case.inputs:
        t = x.detach()
        if t.dtype.is_floating_point:
            t = (t.to(dtype) if dtype is not None else t).requires_grad_()
        out.append(t)
    return out


def _weights(out: Any) -> list[torch.Tensor]:
    """Fixed random loss weights for each float output leaf (drawn without the global RNG)."""
    gen = torch.Generator().manual_seed(7)
    return [torch.randn(t.shape, generator=gen, dtype=t.dtype) for t in _float_leaves(out)]


def _float_leaves(out: Any) -> list[torch.Tensor]:
    return [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor) and t.dtype.is_floating_point]


def _backward(model: torch.nn.Module, inputs: list[torch.Tensor], used: list[bool]) -> list[torch.Tensor | None]:
    """Gradients of sum(<out, w>) over the outputs of the chains in ``used``: inputs' then the
    parameters' (None where there is none)."""
    outs = model(*inputs)
    terms = []
    for keep, out in zip(used, outs):
        leaves = _float_leaves(out)
        if keep:
            terms += [(t * w).sum() for t, w in zip(leaves, _weights(out)) if t.requires_grad]
    if terms:
        torch.stack([t.double() for t in terms]).sum().backward()
    return [x.grad if x.dtype.is_floating_point else None for x in inputs] + [p.grad for p in model.parameters()]


def _names(case: fm.FuzzCase) -> list[str]:
    return [f"input {i}" for i in range(len(case.inputs))] + [n for n, _ in case.model.named_parameters()]


def check_case(case: fm.FuzzCase, used: list[bool], device: str) -> list[Failure] | None:
    """Compile ``case`` for training on ``device``; compare every gradient with eager's. None:
    sol refuses to train through an op of it, naming the op (``UnsupportedOpError``: with the
    default ``fallback`` PyTorch trains such a model; a refusal is not a wrong gradient)."""
    import sol
    from sol.errors import UnsupportedOpError

    eager = copy.deepcopy(case.model)
    want = _backward(eager, _leaves(case), used)
    model = case.model
    model.training = True  # the root only: optimize compiles training programs, the modules keep their modes
    inputs = _leaves(case)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fast = sol.optimize(model, *inputs, device=device, fallback=False)
            got = _backward(fast, inputs, used)
    except UnsupportedOpError:
        return None
    except Exception as exc:  # a crash is a finding too: report it with the whole model
        return [Failure(-1, f"{type(exc).__name__}: {exc}".strip()[:2000], case.describe())]
    exact: list[torch.Tensor | None] | None = None
    failures = []
    for k, (name, g, w) in enumerate(zip(_names(case), got, want)):
        if (g is None) != (w is None):
            failures.append(Failure(-1, f"{name}: gradient {'None' if g is None else 'given'}, eager's "
                                        f"{'None' if w is None else 'given'}", case.describe()))
            continue
        if g is None or w is None:
            continue
        ga, wa = g.detach().numpy(), w.detach().numpy()
        bad = _bad(ga, wa)
        if not bad.any():
            continue
        if exact is None:
            twin = copy.deepcopy(eager).double()
            twin.zero_grad(set_to_none=True)
            exact = _backward(twin, _leaves(case, torch.float64), used)
        e = exact[k]
        if e is not None and _rounding(ga, wa, e.detach().numpy(), bad):
            continue
        if _tie_split(case, ga, wa, bad):
            continue
        at = tuple(int(j) for j in np.argwhere(bad)[0])
        failures.append(Failure(-1, f"{name}: {int(bad.sum())}/{bad.size} gradient elements differ; at {at}: "
                                    f"sol {ga[at]!r}, eager {wa[at]!r}", case.describe()))
    return failures


def _tie_split(case: fm.FuzzCase, got: np.ndarray, want: np.ndarray, bad: np.ndarray) -> bool:
    """A few elements behind an amax/amin whose extreme is tied in one float32 result and not in
    the other (two elements that a flat function rounds to the same value in one implementation
    only). Eager shares the gradient evenly among exact ties, so each such element gets all,
    none or 1/n of its gradient in one and not the other: zero on exactly one side, or a ratio
    n or 1/n (n <= 8). Anything else is a finding."""
    code = case.describe()
    if not any(f in code for f in (".amax(", ".amin(", "torch.max(", "torch.min(")) or bad.sum() > 8:
        return False
    g, w = got[bad].astype(np.float64), want[bad].astype(np.float64)
    for a, b in zip(g, w):
        if (a == 0) != (b == 0):
            continue
        ratio = max(abs(a), abs(b)) / max(min(abs(a), abs(b)), 1e-300)
        if np.sign(a) != np.sign(b) or abs(ratio - round(ratio)) > 1e-3 * ratio or not 2 <= round(ratio) <= 8:
            return False
    return True


def _draw(ch: fm.Chooser) -> tuple[fm.FuzzCase, list[bool]]:
    case = fm.draw_model(ch, CHAINS)
    used = [ch.boolean(0.7) for _ in range(CHAINS)]
    return case, used


def _budget(device: str) -> int:
    return max(1, int(EXAMPLES * DEVICE_SHARE.get(device, 1.0)))


def test_random_models_train_as_eager(device: str) -> None:
    """Random models' input and parameter gradients against eager (see the module docstring)."""
    from hypothesis import HealthCheck, Phase, given, reject, seed, settings
    from hypothesis import strategies as st

    @seed(SEED)
    @settings(max_examples=_budget(device), deadline=None, database=None, derandomize=SEED == 0,
              phases=[Phase.explicit, Phase.generate], suppress_health_check=list(HealthCheck))
    @given(st.data())
    def run(data: Any) -> None:
        case, used = _draw(fm.HypothesisChooser(data))
        failures = check_case(case, used, device)
        if failures is None:
            reject()
        assert not failures, "\n\n".join(str(f) for f in failures) + f"\n(chains in the loss: {used})"

    run()


def main(argv: list[str] | None = None) -> int:
    """Every seed in turn, every failure reported."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--examples", type=int, default=50)
    p.add_argument("--seed", type=int, default=0, help="first seed")
    p.add_argument("--device", default="x86")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    failing = refused = 0
    start = time.time()
    for s in range(args.seed, args.seed + args.examples):
        case, used = _draw(fm.RandomChooser(s))
        try:
            failures = check_case(case, used, args.device)
        except Exception:  # the checker itself: report and go on
            failures = [Failure(-1, traceback.format_exc()[-2000:], case.describe())]
        if failures is None:
            refused += 1
        elif failures:
            failing += 1
            print(f"--- seed {s}: chains in the loss {used}", flush=True)
            for f in failures:
                print(f, flush=True)
    print(f"done: {args.examples} examples on {args.device}, {failing} with failures, {refused} refused by sol "
          f"(UnsupportedOpError), {time.time() - start:.0f} s")
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
