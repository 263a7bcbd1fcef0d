"""The case machinery of the op tests (test_ops.py, test_index_ops.py): each case is a tiny model with
its inputs, registered in its file's own ``Cases`` list under an op family.

``check_reference`` imports one case and runs the sol graph with the ops' NumPy references;
``check_device`` compiles all cases of a family as one model (``Bundle``) on a device. Both compare
with PyTorch eager through the file's own ``close(got, want, what)``, which states its tolerance and
starts from ``checked_arrays`` (shape and dtype must match PyTorch's).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils import _pytree as pytree

import sol
from sol.debug import run_reference
from sol_pytorch.importer import Constant, import_module, output_layout

Close = Callable[[Any, torch.Tensor, str], None]


class Fn(nn.Module):
    """A function as a model: ``forward(*xs) = fn(*xs)``."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        super().__init__()
        self.fn = fn

    def forward(self, *xs: torch.Tensor) -> Any:
        return self.fn(*xs)


@dataclass
class Case:
    family: str
    id: str
    model: nn.Module
    inputs: tuple[torch.Tensor, ...]


class Cases(list[Case]):
    """One test file's cases; ``add`` (the files' ``case``) registers one."""

    def add(self, family: str, name: str, model: nn.Module | Callable[..., Any], *inputs: torch.Tensor) -> None:
        module = model if isinstance(model, nn.Module) else Fn(model)
        self.append(Case(family, f"{family}-{name}", module.eval(), inputs))

    def by_id(self) -> dict[str, Case]:
        return {c.id: c for c in self}

    def families(self) -> list[str]:
        return sorted({c.family for c in self})


def r(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


def checked_arrays(got: Any, want: torch.Tensor, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``got`` and ``want`` as arrays, after checking that sol's shape and dtype are PyTorch's."""
    got = got.numpy() if isinstance(got, torch.Tensor) else np.asarray(got)
    w = want.detach().numpy()
    assert got.shape == w.shape, f"{what}: shape {got.shape}, PyTorch gives {w.shape}"
    assert got.dtype == w.dtype, f"{what}: dtype {got.dtype}, PyTorch gives {w.dtype}"
    return got, w


def check_reference(c: Case, close: Close, *, constant_outputs: bool = True) -> None:
    """The imported graph, run with sol's NumPy references, computes what PyTorch computes
    (``constant_outputs=False``: and no output is a constant the importer folded)."""
    with torch.no_grad():
        want = pytree.tree_leaves(c.model(*c.inputs))
    graph = import_module(c.model, c.inputs, {})
    got = run_reference(graph, [x.numpy() for x in c.inputs])
    layout = output_layout(graph)
    assert layout is not None and len(layout.slots) == len(want)
    for slot, w in zip(layout.slots, want):
        assert constant_outputs or not isinstance(slot, Constant)
        close(got[slot], w, c.id)


class Bundle(nn.Module):
    """Several cases as one model: inputs concatenated, one output per case."""

    def __init__(self, cases: list[Case]) -> None:
        super().__init__()
        self.cases = nn.ModuleList(c.model for c in cases)
        self.arity = [len(c.inputs) for c in cases]

    def forward(self, *xs: torch.Tensor) -> tuple[Any, ...]:
        outs, start = [], 0
        for model, n in zip(self.cases, self.arity):
            outs.append(model(*xs[start:start + n]))
            start += n
        return tuple(outs)


def check_device(cases: list[Case], device: str, close: Close) -> None:
    """``cases`` compiled together on ``device``, against PyTorch eager."""
    bundle = Bundle(cases).eval()
    inputs = [x for c in cases for x in c.inputs]
    fast = sol.optimize(bundle, *inputs, device=device, fallback=False)  # an op test must compile it
    with torch.no_grad():
        want = bundle(*inputs)
        got = fast(*inputs)
    assert isinstance(got, tuple) and len(got) == len(cases)
    for c, g, w in zip(cases, got, want):
        for gl, wl in zip(pytree.tree_leaves(g), pytree.tree_leaves(w)):
            close(gl, wl, f"{c.id} on {device}")


def case_tests(cases: Cases, close: Close) -> tuple[Callable[[str], None], Callable[[str, str], None]]:
    """The two tests of a case file, to assign as ``test_reference, test_device = case_tests(CASES,
    close)``: each case on sol's NumPy references, and each family compiled together on the
    suite's devices, both against eager."""
    by_id = cases.by_id()

    @pytest.mark.parametrize("case_id", list(by_id))
    def test_reference(case_id: str) -> None:
        """The imported graph, run with sol's NumPy references, gives what eager gives."""
        with np.errstate(all="ignore"):
            check_reference(by_id[case_id], close)

    @pytest.mark.parametrize("family", cases.families())
    def test_device(device: str, family: str) -> None:
        """All cases of a family compiled together on ``device`` give what eager gives."""
        check_device([c for c in cases if c.family == family], device, close)

    return test_reference, test_device
