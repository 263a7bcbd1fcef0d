"""nn.LSTM and nn.GRU (aten.lstm.input / aten.gru.input) against PyTorch eager on every device.

Single layers at rtol 1e-4 (the single-op tolerance); stacked and bidirectional modules too.
Each family compiles as one model per device (a Bundle of its cases), as tests/pytorch/test_ops.py
does, to keep the suite fast.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils import _pytree as pytree

import sol
from sol.debug import run_reference
from sol.errors import UnsupportedOpError
from sol.planner.plan import GroupKind
from sol_pytorch.importer import import_module, output_layout

torch.manual_seed(0)


class WithState(nn.Module):
    """A recurrent layer called with explicit initial states."""

    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: torch.Tensor, *state: torch.Tensor) -> Any:
        return self.rnn(x, tuple(state) if len(state) == 2 else state[0])


class Bundle(nn.Module):
    def __init__(self, models: list[nn.Module], arity: list[int]) -> None:
        super().__init__()
        self.models = nn.ModuleList(models)
        self.arity = arity

    def forward(self, *xs: torch.Tensor) -> tuple[Any, ...]:
        outs, start = [], 0
        for m, n in zip(self.models, self.arity):
            outs.append(m(*xs[start:start + n]))
            start += n
        return tuple(outs)


def r(*shape: int) -> torch.Tensor:
    return torch.randn(*shape)


# (id, model, inputs): time-major input (T=6, N=3, I=10) unless batch_first.
SINGLE = [
    ("lstm", nn.LSTM(10, 20), (r(6, 3, 10),)),
    ("lstm-nobias-batch-first", nn.LSTM(10, 20, bias=False, batch_first=True), (r(3, 6, 10),)),
    ("lstm-state", WithState(nn.LSTM(10, 20)), (r(6, 3, 10), r(1, 3, 20), r(1, 3, 20))),
    ("lstm-batch1", nn.LSTM(10, 70), (r(7, 1, 10),)),  # 280 gate columns: more than one 256-lane strip
    ("gru", nn.GRU(10, 20), (r(6, 3, 10),)),
    ("gru-nobias-batch-first", nn.GRU(10, 20, bias=False, batch_first=True), (r(3, 6, 10),)),
    ("gru-state", WithState(nn.GRU(10, 20)), (r(6, 3, 10), r(1, 3, 20))),
]
STACKED = [
    ("lstm-2layer-bidir-dropout", nn.LSTM(10, 16, num_layers=2, bidirectional=True, dropout=0.5), (r(5, 2, 10),)),
    ("lstm-3layer-batch-first-state", WithState(nn.LSTM(10, 16, num_layers=3, batch_first=True)),
     (r(2, 5, 10), r(3, 2, 16), r(3, 2, 16))),
    ("gru-2layer-bidir-state", WithState(nn.GRU(10, 16, num_layers=2, bidirectional=True)),
     (r(5, 2, 10), r(4, 2, 16))),
    ("gru-2layer-nobias-dropout", nn.GRU(10, 16, num_layers=2, bias=False, dropout=0.2), (r(5, 2, 10),)),
]
ALL = {c[0]: c for c in SINGLE + STACKED}


def _check(got: Any, want: Any, what: str) -> None:
    g, w = pytree.tree_leaves(got), pytree.tree_leaves(want)
    assert len(g) == len(w), what
    for a, b in zip(g, w):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, msg=lambda m: f"{what}: {m}")


@pytest.mark.parametrize("family", ["single", "stacked"])
def test_device(device: str, family: str) -> None:
    """Each family as one model: outputs (output, h_n[, c_n]) of every case match eager."""
    cases = SINGLE if family == "single" else STACKED
    bundle = Bundle([m for _, m, _ in cases], [len(xs) for _, _, xs in cases]).eval()
    inputs = [x for _, _, xs in cases for x in xs]
    fast = sol.optimize(bundle, *inputs, device=device, fallback=False)
    with torch.no_grad():
        want = bundle(*inputs)
        got = fast(*inputs)
    for (name, _, _), g, w in zip(cases, got, want):
        _check(g, w, f"{name} on {device}")


@pytest.mark.parametrize("name", sorted(ALL))
def test_reference(name: str) -> None:
    """The imported graph, run with the ops' NumPy references, computes what PyTorch computes."""
    _, model, inputs = ALL[name]
    model.eval()
    with torch.no_grad():
        want = pytree.tree_leaves(model(*inputs))
    graph = import_module(model, inputs, {})
    got = run_reference(graph, [x.numpy() for x in inputs])
    layout = output_layout(graph)
    assert layout is not None
    for slot, w in zip(layout.slots, want):
        np.testing.assert_allclose(got[slot], w.numpy(), rtol=1e-4, atol=1e-5, err_msg=name)  # type: ignore[index]


def test_one_node_per_layer_and_direction() -> None:
    graph = import_module(nn.LSTM(4, 8, num_layers=2, bidirectional=True).eval(), (r(3, 2, 4),), {})
    nodes = [n for n in graph.nodes if n.op == "lstm"]
    assert [n.attrs["reverse"] for n in nodes] == [False, True, False, True]
    assert [n.inputs[0].shape for n in nodes] == [(3, 2, 4), (3, 2, 4), (3, 2, 16), (3, 2, 16)]


def test_plan_hoists_the_input_projection(device: str) -> None:
    """Per layer and direction: one dense over all T*N rows outside the loop, then one RECURRENT
    group whose step is h @ W_hh^T + one fused cell; explain says so."""
    model = nn.GRU(10, 16, num_layers=2).eval()
    plan = sol.explain(model, r(6, 3, 10), device=device).plan
    recurrent = [g for g in plan.groups if g.kind is GroupKind.RECURRENT]
    assert [g.nodes[0].op for g in recurrent] == ["gru_recurrence"] * 2
    dense = [n for n in plan.graph.nodes if n.op == "dense"]
    assert [n.output.shape for n in dense] == [(6, 3, 48), (6, 3, 48)]
    for g in recurrent:
        k = g.recurrent
        assert k is not None and (k.steps, k.batch, k.hidden, k.gates) == (6, 3, 16, 3)
        assert k.gx.producer is not None and k.gx.producer.op in ("dense", "add")  # the hoisted projection
        assert g.id in plan.memory.scratch
    text = str(sol.explain(model, r(6, 3, 10), device=device))
    assert "execution-order constrained  sequential loop over 6 steps" in text
    assert "one fused gru cell pass over 3x16" in text


def test_proj_size_is_reported() -> None:
    with pytest.raises(UnsupportedOpError, match="proj_size"):
        import_module(nn.LSTM(4, 8, proj_size=3).eval(), (r(3, 2, 4),), {})
