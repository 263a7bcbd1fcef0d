"""The PyTorch frontend's user surface: example inputs, output structures, call-time checks,
error messages, training mode, parameters kept by reference, the returned nn.Module."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sol
from sol.errors import UnsupportedOpError
from sol_pytorch.importer import SolTrainingModeWarning, import_module
from sol_pytorch.wrapper import SolModule

from op_cases import Fn
from zoo import mlp, small_resnet

torch.manual_seed(0)


class Two(nn.Module):
    """Two inputs, a parameterized layer, two outputs."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 4)

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.relu(self.fc(a)) * torch.sigmoid(b)
        return h, torch.softmax(h, dim=1)


def _same(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-4) -> None:
    torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * max(1.0, float(want.abs().max())))


# --- example inputs ---------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [torch.Size([3, 8]), (3, 8), [3, 8]], ids=["Size", "tuple", "list"])
def test_shape_as_example_input(device: str, spec: object) -> None:
    model = nn.Sequential(nn.Linear(8, 5), nn.GELU()).eval()
    fast = sol.optimize(model, spec, device=device)
    x = torch.rand(3, 8)
    with torch.no_grad():
        _same(fast(x), model(x))
    assert fast.program.input_types[0].shape == (3, 8)


def test_tensors_shapes_and_a_tuple_of_them_as_example_inputs(device: str) -> None:
    model = Two().eval()
    a, b = torch.rand(3, 8), torch.rand(3, 4)
    for examples in [(a, b), (a, b.size()), ((a.size(), b.size()),)]:
        fast = sol.optimize(model, *examples, device=device)
        with torch.no_grad():
            for g, w in zip(fast(a, b), model(a, b)):
                _same(g, w)


def test_example_inputs_are_validated_naming_what_was_given() -> None:
    model = Two().eval()
    with pytest.raises(TypeError, match=r"example input 1 must be a torch.Tensor or a shape.*got str 'abc'"):
        import_module(model, (torch.rand(3, 8), "abc"), {})
    with pytest.raises(TypeError, match=r"example input 0 .* got tuple \(3, -1\)"):
        import_module(model, ((3, -1), (3, 4)), {})
    with pytest.raises(TypeError, match=r"Two.forward takes 2 input\(s\) \(a, b\), got 1 example input"):
        import_module(model, (torch.rand(3, 8),), {})


# --- outputs ----------------------------------------------------------------------------------


class Structured(nn.Module):
    def forward(self, x: torch.Tensor) -> dict[str, object]:
        h = x * 2
        return {"h": h, "pair": (torch.relu(h), [h.sum(1)]), "none": None, "scale": 2, "again": h, "x": x}


def test_tuple_list_dict_and_constant_outputs_keep_their_structure(device: str) -> None:
    model = Structured().eval()
    x = torch.rand(2, 3)
    fast = sol.optimize(model, x, device=device)
    with torch.no_grad():
        got, want = fast(x), model(x)
    assert isinstance(got, dict) and list(got) == list(want)
    assert isinstance(got["pair"], tuple) and isinstance(got["pair"][1], list)
    assert got["none"] is None and got["scale"] == 2
    assert got["again"] is got["h"], "a tensor returned twice is one tensor, as in PyTorch"
    assert got["x"] is not x and torch.equal(got["x"], x), "an input returned as is comes back as a copy"
    for g, w in [(got["h"], want["h"]), (got["pair"][0], want["pair"][0]), (got["pair"][1][0], want["pair"][1][0])]:
        _same(g, w)


def test_sizes_and_numbers_in_the_output_are_returned_as_is(device: str) -> None:
    model = Fn(lambda x: (x.shape[0], torch.relu(x), 1.5)).eval()
    fast = sol.optimize(model, (3, 2), device=device)
    got = fast(torch.ones(3, 2))
    assert got[0] == 3 and got[2] == 1.5 and torch.equal(got[1], torch.ones(3, 2))


def test_multiple_inputs_by_position_or_name(device: str) -> None:
    model = Two().eval()
    a, b = torch.rand(3, 8), torch.rand(3, 4)
    fast = sol.optimize(model, a, b, device=device)
    with torch.no_grad():
        want = model(a, b)
        for got in (fast(a, b), fast(a, b=b), fast(b=b, a=a)):
            assert isinstance(got, tuple) and len(got) == 2
            _same(got[0], want[0])
    with pytest.raises(TypeError, match=r"expects 2 input\(s\) \(float32\[3, 8\], float32\[3, 4\]\), got 1"):
        fast(a)
    with pytest.raises(TypeError, match="missing input"):
        fast(a=a)
    with pytest.raises(TypeError, match="unexpected input 'c'"):
        fast(a, c=b)


# --- call-time checks -------------------------------------------------------------------------


def test_wrong_shape_rank_dtype_and_type_raise_naming_expected_and_given(device: str) -> None:
    """Another shape compiles a new variant by default (tests/pytorch/test_dynamic.py); with
    dynamic=False it is an error, as another rank or dtype always is."""
    fast = sol.optimize(mlp().eval(), torch.rand(4, 64), device=device, dynamic=False)
    with pytest.raises(ValueError, match=r"expected shape \(4, 64\), got \(5, 64\)"):
        fast(torch.rand(5, 64))
    with pytest.raises(ValueError, match=r"expected rank 2 with shape \(4, 64\), got rank 3"):
        fast(torch.rand(4, 64, 1))
    with pytest.raises(TypeError, match="expected dtype float32, got float64"):
        fast(torch.rand(4, 64, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"input 0 \(input\): expected a torch.Tensor, got ndarray"):
        fast(np.zeros((4, 64), np.float32))
    with pytest.raises(TypeError, match=r"expects 1 input\(s\)"):
        fast(torch.rand(4, 64), torch.rand(4, 64))


def test_non_contiguous_input_gives_the_right_result(device: str) -> None:
    model = nn.Sequential(nn.Linear(6, 3), nn.Tanh()).eval()
    fast = sol.optimize(model, (4, 6), device=device)
    x = torch.rand(6, 4).t()
    assert not x.is_contiguous()
    with torch.no_grad():
        _same(fast(x), model(x))


def test_eval_mode_inputs_requiring_grad_get_gradients(device: str) -> None:
    model = nn.Linear(4, 2).eval()
    fast = sol.optimize(model, (3, 4), device=device)
    x = torch.rand(3, 4)
    out = fast(x)  # eval mode, no input requires grad: the inference program, connected to the weights as eager's
    assert out.requires_grad and model(x).requires_grad
    _same(out.detach(), model(x).detach())
    with torch.no_grad():
        assert not fast(x).requires_grad
    x_sol, x_eager = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = fast(x_sol)  # an input requires grad: eval-mode behaviour, differentiable
    _same(out, model(x_eager))
    out.sum().backward()
    model(x_eager).sum().backward()
    _same(x_sol.grad, x_eager.grad)
    with torch.no_grad():
        _same(fast(x), model(x))


# --- errors at import -------------------------------------------------------------------------


class Odd(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.fft.rfft(x, dim=1).abs()  # unsupported: the line the error must name


class HasOdd(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(3, 3)
        self.odd = Odd()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.odd(self.fc(x))


def _line_of(marker: str) -> int:
    with open(__file__) as f:
        return next(i for i, line in enumerate(f, 1) if marker in line and "_line_of" not in line)


def test_unsupported_op_names_the_op_module_and_source_line(device: str) -> None:
    line = _line_of("# unsupported: the line the error must name")
    with pytest.raises(UnsupportedOpError) as info:
        sol.optimize(HasOdd().eval(), torch.rand(2, 3), device=device, fallback=False)
    message = str(info.value)
    assert re.search(rf"aten\._fft_r2c\.default .*model\.odd \(Odd\).*test_frontend\.py:{line}", message), message
    assert "torch.fft.rfft(x, dim=1)" in message
    assert "fallback=True" in message and "PyTorch" in message
    assert info.value.op == "aten._fft_r2c.default"
    assert info.value.source == f"model.odd (test_frontend.py:{line})"


def test_unsupported_use_of_a_supported_op_says_why() -> None:
    model = Fn(lambda x: torch.topk(x, 2, sorted=False).values).eval()  # sorted topk compiles; unsorted: eager's order
    with pytest.raises(UnsupportedOpError, match=r"aten\.topk.*\[.*sorted=False"):
        import_module(model, ((3, 6),), {})


def test_every_unsupported_op_is_listed_also_downstream_of_another() -> None:
    model = Fn(lambda x: torch.linalg.svdvals(torch.linalg.matrix_exp(x)).sum() + torch.linalg.matrix_exp(x)).eval()
    with pytest.raises(UnsupportedOpError, match=r"uses 2 operation\(s\)") as info:
        import_module(model, ((3, 3),), {})
    assert "aten.linalg_matrix_exp.default" in str(info.value) and "aten._linalg_svd.default" in str(info.value)


def test_in_place_buffer_update_in_forward_reads_the_buffer_live_and_writes_it_back() -> None:
    """A buffer the forward updates is a graph input (read live, never a folded weight), and the
    layout says which program output is written back into it (test_generation.py runs it)."""
    class Counter(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("calls", torch.zeros(1))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            self.calls += 1
            return x * 2

    model = Counter().eval()
    graph = import_module(model, ((2,),), {})
    layout = graph.meta["pytorch.outputs"]
    assert [t for _, t in layout.buffers] == [model.calls] and not graph.params
    assert len(layout.updates) == 1 and layout.updates[0][0] == layout.buffers[0][0]


# --- training mode ----------------------------------------------------------------------------


def test_training_false_on_a_training_mode_model_warns_compiles_eval_behaviour_and_puts_it_in_eval_mode(
        device: str) -> None:
    model = nn.Sequential(nn.Linear(5, 5), nn.BatchNorm1d(5), nn.Dropout(0.5), nn.ReLU())
    model.train()
    model[3].eval()  # a mixed-mode model: each submodule's mode must come back as it was
    x = torch.rand(4, 5)
    message = r"training mode, but sol compiles its eval-mode behaviour here \(training=False\); call model.eval"
    with pytest.warns(SolTrainingModeWarning, match=message) as record:
        fast = sol.optimize(model, x, device=device, training=False)
    assert record.pop(SolTrainingModeWarning).filename == __file__, "the warning points at the user's call"
    assert not any(m.training for m in model.modules()), "eval mode, as training=True means train mode"
    assert not fast.training, "the module's mode is the model's"
    model.eval()
    with torch.no_grad():
        _same(fast(x), model(x))


def test_training_option_puts_an_eval_mode_model_in_training_mode(device: str) -> None:
    model = nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.5)).eval()
    fast = sol.optimize(model, (4, 2), device=device, training=True)
    assert fast.training and model.training and model[1].training
    x = torch.rand(4, 2)
    torch.manual_seed(3)
    got = fast(x)
    torch.manual_seed(3)
    _same(got, model(x))


# --- the graph and the returned module --------------------------------------------------------


def test_parameters_and_buffers_are_numpy_views_named_as_in_the_state_dict() -> None:
    model = small_resnet().eval()
    graph = import_module(model, (torch.Size([1, 3, 16, 16]),), {})
    state = model.state_dict()
    assert graph.params
    for p in graph.params:
        assert p.name in state, p.name
        assert np.shares_memory(p.data, state[p.name].numpy()), f"{p.name} was copied"
    assert {p.name for p in graph.params} >= {"conv1.weight", "bn1.running_mean", "fc.weight", "fc.bias"}


def test_graph_is_named_after_the_model_and_its_inputs_after_forward_arguments() -> None:
    graph = import_module(Two().eval(), (torch.Size([2, 8]), torch.Size([2, 4])), {})
    assert graph.name == "Two"
    assert [v.name for v in graph.inputs] == ["a", "b"]
    here = os.path.basename(__file__)
    for node in graph.nodes:
        assert node.source and node.source.startswith("model") and f"({here}:" in node.source, node
    dense = next(n for n in graph.nodes if n.op == "dense")
    assert dense.source.startswith("model.fc (")


def test_public_import_path_and_the_returned_module(device: str) -> None:
    from sol.pytorch import optimize

    model = mlp().eval()
    x = torch.rand(4, 64)
    fast = optimize(model, x.size(), device=device)
    assert isinstance(fast, nn.Module) and isinstance(fast, SolModule)
    assert fast.model is model
    assert "cached" in fast.program.info
    assert list(fast.state_dict()) == list(model.state_dict())
    assert all(a is b for a, b in zip(fast.parameters(), model.parameters()))
    assert getattr(fast, "1") is model[1]  # submodules under their own names
    model.note = "kept"
    assert fast.note == "kept"  # other attributes of the model read through
    text = repr(fast)
    assert "Sequential" in text and device in text and "float32[4, 64]" in text
    with torch.no_grad():
        _same(fast(x), model(x))


def test_plugin_module_imports_no_torch() -> None:
    code = "import sys, sol_pytorch.plugin, sol_pytorch; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --- whole networks ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["small_resnet", "mlp", "functional"])
def test_whole_network_against_eager(device: str, name: str) -> None:
    """fp32, rtol 1e-3 for whole networks."""

    class Functional(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 8, 3, padding=1)
            self.head = nn.Linear(8, 5)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = F.hardswish(self.conv(x))
            h = F.max_pool2d(h, 2, ceil_mode=True) + F.avg_pool2d(h, 2, ceil_mode=True)
            h = h.mean((2, 3)) if h.shape[-1] > 1 else h.flatten(1)  # shape-dependent Python control flow
            return F.log_softmax(self.head(h), dim=-1)

    model, shape = {"small_resnet": (small_resnet, (2, 3, 32, 32)), "mlp": (mlp, (8, 64)),
                    "functional": (Functional, (2, 3, 9, 9))}[name]
    net = model().eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.rand(*shape)
    fast = sol.optimize(net, x, device=device)
    with torch.no_grad():
        _same(fast(x), net(x), rtol=1e-3)
