"""Issue #15: PyTorch's training semantics through sol, each case against an eager deep copy of
the same model (same seeds, same optimizer): gradient stops (``detach``, ``torch.no_grad()``
blocks, ``set_grad_enabled(False)``, ``detach_``, ``torch.inference_mode()``), ``padding_idx``,
unused outputs and the weights only they depend on (``.grad is None``, so momentum and weight
decay leave them alone), in-place changes of saved tensors, train/eval modes read from the model,
gradients in eval mode, a replaced parameter, InstanceNorm's running statistics, module hooks and
autocast. Every case here failed before issue #15's changes (wrong gradients, zeros where eager
leaves None, no error, float32 under autocast, hooks not called).

Training compiles are slow (forward and backward): the cases share few small models.
"""

from __future__ import annotations

import copy
import logging
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import sol
from sol.errors import UnsupportedOpError
from sol_pytorch.fallback import SolFallbackWarning

pytestmark = pytest.mark.filterwarnings("ignore:sol device .* runs emulated")

RTOL = 1e-4


def _close(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    scale = float(want.detach().abs().max()) if want.numel() else 0.0
    torch.testing.assert_close(got.detach(), want.detach(), rtol=RTOL, atol=RTOL * max(scale, 1e-3),
                               msg=lambda m: f"{what}: {m}")


def _same_state(fast_model: nn.Module, eager: nn.Module, what: str) -> None:
    """Parameters, gradients (None exactly where eager's are None) and buffers. A gradient is
    compared to its own largest magnitude or 1e-3 of the model's largest one where that is
    larger: a gradient that is zero in exact arithmetic (a bias before a normalization) is
    rounding noise in both."""
    grads = [float(q.grad.abs().max()) for q in eager.parameters() if q.grad is not None and q.grad.numel()]
    floor = 1e-3 * max(grads, default=0.0)
    for (name, p), (_, q) in zip(fast_model.named_parameters(), eager.named_parameters(), strict=True):
        _close(p, q, f"{what}: {name}")
        assert (p.grad is None) == (q.grad is None), f"{what}: {name}.grad is {p.grad} where eager's is {q.grad}"
        if q.grad is not None:
            scale = max(float(q.grad.abs().max()), floor)
            torch.testing.assert_close(p.grad, q.grad, rtol=RTOL, atol=RTOL * scale,
                                       msg=lambda m, name=name: f"{what}: {name}.grad: {m}")
    for (name, b), (_, c) in zip(fast_model.named_buffers(), eager.named_buffers(), strict=True):
        _close(b.float(), c.float(), f"{what}: buffer {name}")


def _probe(shape: tuple[int, ...]) -> torch.Tensor:
    """Fixed loss weights, drawn without touching the global RNG."""
    return torch.randn(shape, generator=torch.Generator().manual_seed(99))


# --- gradient stops, padding_idx, unused outputs, over optimizer steps -------------------------


class Stops(nn.Module):
    """Every way ``forward`` stops a gradient, an embedding with ``padding_idx`` and two heads.
    Eager gives ``k``, ``s``, ``i`` (used only where gradients are off) and ``head1`` (its output
    is not in the loss) no gradient at all, and the embedding's padding row a zero gradient;
    ``r``, under ``torch.enable_grad()`` inside a ``no_grad`` block, trains."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(6, 8)
        self.k = nn.Linear(6, 8)
        self.s = nn.Linear(8, 8)
        self.i = nn.Linear(6, 8)
        self.r = nn.Linear(8, 8)
        self.emb = nn.Embedding(10, 8, padding_idx=0)
        self.head0 = nn.Linear(8, 3)
        self.head1 = nn.Linear(8, 3)

    @torch.no_grad()
    def _held(self, h: torch.Tensor) -> torch.Tensor:
        return self.s(h) * 2

    def forward(self, x: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = torch.tanh(self.a(x))
        with torch.no_grad():
            k = self.k(x)
            with torch.enable_grad():
                r = self.r(k)
        with torch.set_grad_enabled(False):
            g = h * 3
        t = h.clone().detach_()
        with torch.inference_mode():
            e = self.i(x)
        z = h * h.detach() + k * h + g * h + self._held(h) + t * 0.5 + self.emb(ids).mean(1) + e + r * h
        return self.head0(z), self.head1(z)


def _optimizers() -> dict[str, Callable[[Iterator[nn.Parameter]], torch.optim.Optimizer]]:
    return {"sgd": lambda ps: torch.optim.SGD(ps, lr=0.1, momentum=0.9, weight_decay=0.1),
            "adam": lambda ps: torch.optim.Adam(ps, lr=0.05, weight_decay=0.01)}


@pytest.mark.parametrize("optimizer", list(_optimizers()))
def test_gradient_stops_padding_and_unused_outputs_follow_eager_over_steps(device: str, optimizer: str) -> None:
    torch.manual_seed(0)
    model = Stops().train()
    eager = copy.deepcopy(model)
    x = torch.randn(4, 6)
    ids = torch.tensor([[0, 1, 2], [0, 0, 3], [4, 0, 5], [6, 7, 0]])
    fast = sol.optimize(model, x, ids, device=device)
    make = _optimizers()[optimizer]
    opt_fast, opt_eager = make(fast.parameters()), make(eager.parameters())
    for step in range(3):
        for net, opt in ((fast, opt_fast), (eager, opt_eager)):
            opt.zero_grad(set_to_none=True)
            xs = x.clone().requires_grad_()
            out0, out1 = net(xs, ids)
            assert out1.requires_grad  # connected, only not in the loss
            (out0 * _probe(out0.shape)).sum().backward()
            net.input_grad = xs.grad  # type: ignore[assignment]
            opt.step()
        _close(fast.input_grad, eager.input_grad, f"step {step}: input gradient")
        _same_state(model, eager, f"{optimizer} step {step}")
    for name in ("k", "s", "i", "head1"):
        for p in getattr(model, name).parameters():
            assert p.grad is None and p not in opt_fast.state, f"{name}: trained where eager does not train"
    assert torch.all(model.emb.weight.grad[0] == 0) and torch.equal(model.emb.weight[0], eager.emb.weight[0])
    for p, q in zip(model.parameters(), eager.parameters()):  # momentum / Adam moments as eager's
        assert set(opt_fast.state[p]) == set(opt_eager.state[q])
        for key, value in opt_eager.state[q].items():
            _close(opt_fast.state[p][key], value, f"optimizer state {key}")


def test_embedding_gradient_options_sol_cannot_honour_are_named(device: str) -> None:
    model = nn.Sequential(nn.Embedding(10, 4, scale_grad_by_freq=True), nn.Flatten(), nn.Linear(12, 2)).train()
    ids = torch.tensor([[1, 1, 2], [3, 0, 1]])
    with pytest.raises(UnsupportedOpError, match="scale_grad_by_freq"):
        sol.optimize(model, ids, device=device, fallback=False)
    with pytest.warns(SolFallbackWarning, match="scale_grad_by_freq"):
        fast = sol.optimize(model, ids, device=device)
    eager = copy.deepcopy(model)
    for net in (fast, eager):
        (net(ids) * _probe((2, 2))).sum().backward()
    _same_state(model, eager, "scale_grad_by_freq, trained by PyTorch")


class Kinks(nn.Module):
    """Where eager's gradient rules choose: ``max(x, dim)`` gives a tie's gradient to the index it
    returns, ``amax`` shares it; ``relu`` selects, so ``sqrt(relu(x))``'s infinite gradient at 0
    stops there (0 where x < 0, not 0 * inf = NaN); ``clamp`` and ``hardswish`` alike, with
    eager's inf and NaN where their pieces pass it. At their bounds ``clamp`` passes the gradient,
    ``hardtanh`` and ``relu6`` (the same forward op) do not."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tied = torch.cat([x, x], 1)  # every maximum tied
        values, index = torch.max(tied, 1)
        flat = torch.sqrt(torch.relu(x)) + torch.sqrt(x.clamp(0.0, 1.0)) + torch.sqrt(F.hardswish(x) + 0.375)
        lo, hi = torch.full_like(x, -2.0), torch.full_like(x, 3.0)
        bounds = 3 * F.relu6(2 * x) + 5 * F.hardtanh(x, -2.0, 3.0) + 7 * x.clamp(-2.0, 3.0) + 9 * x.clamp(lo, hi)
        return values + tied.amin(1) + flat.sum(1) + bounds.sum(1), index


def test_ties_and_kinks_give_eagers_gradients(device: str) -> None:
    x = torch.tensor([[-1.0, 0.5, 2.0], [0.0, -2.0, 1.5], [3.0, -0.2, 0.7], [-1.5, 4.0, -3.5]])
    fast = sol.optimize(Kinks().train(), x, device=device)
    grads, indices = [], []
    for net in (fast, Kinks().train()):
        xs = x.clone().requires_grad_()
        out, index = net(xs)
        (out * torch.arange(1.0, 5.0)).sum().backward()
        grads.append(xs.grad)
        indices.append(index)
    assert torch.equal(indices[0], indices[1]) and torch.equal(indices[1], torch.tensor([2, 2, 0, 1]))
    assert not torch.isfinite(grads[1]).all()  # eager's own inf and NaN (clamp passes its bounds): sol's too
    torch.testing.assert_close(grads[0], grads[1], rtol=RTOL, atol=1e-5, equal_nan=True)


# --- saved tensors changed in place --------------------------------------------------------------


def test_in_place_changes_of_saved_tensors_raise_as_in_eager(device: str) -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh()).train()
    linear = model[0]
    fast = sol.optimize(model, (3, 4), device=device)
    x = torch.randn(3, 4)
    for net in (fast, copy.deepcopy(model)):  # tanh's backward reads its output: eager saves it
        out = net(x)
        out.mul_(3)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            out.sum().backward()
    xs = x.clone().requires_grad_()  # an input the weight gradient reads
    out = fast(xs)
    with torch.no_grad():
        xs.mul_(2)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        out.sum().backward()
    # A linear layer's output is not read by its backward: changing it in place is fine, and the
    # gradient goes through the change, as in eager.
    model.zero_grad()
    plain = sol.optimize(linear, (3, 4), device=device)
    eager = copy.deepcopy(linear)
    for net in (plain, eager):
        out = net(x)
        out.mul_(3)
        out.sum().backward()
    _same_state(linear, eager, "in-place change of an unsaved output")


def test_saved_outputs_go_back_to_the_output_pool_each_step() -> None:
    """Saved tensors live until the backward, then the device reuses their memory: a training
    loop's large outputs (x86's pool: outputs of 1 MiB and more) cycle through at most two
    buffers, step after step."""
    torch.manual_seed(2)
    model = nn.Sequential(nn.Linear(64, 4096), nn.Tanh()).train()  # tanh saves its 1 MiB output
    x = torch.randn(64, 64)
    fast = sol.optimize(model, x, device="x86")
    opt = torch.optim.SGD(fast.parameters(), lr=0.01)
    addresses = set()
    for _ in range(6):
        out = fast(x)
        addresses.add(out.data_ptr())
        opt.zero_grad()
        out.sum().backward()
        opt.step()
        del out
    assert len(addresses) <= 2, f"{len(addresses)} output buffers for 6 steps"


# --- modes ---------------------------------------------------------------------------------------


class Moded(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(5, 6)
        self.bn = nn.BatchNorm1d(6)
        self.drop = nn.Dropout(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(torch.relu(self.bn(self.fc(x))))


def _run_both(fast: nn.Module, eager: nn.Module, x: torch.Tensor, what: str) -> None:
    """One call with the same seed on both; outputs, gradients and buffers compared."""
    outs = []
    for net in (fast, eager):
        torch.manual_seed(5)
        out = net(x)
        if out.requires_grad:
            (out * _probe(out.shape)).sum().backward()
        outs.append(out)
    _close(outs[0], outs[1], f"{what}: output")
    _same_state(fast.model, eager, what)
    fast.model.zero_grad(set_to_none=True)
    eager.zero_grad(set_to_none=True)


def test_modes_are_the_models_own_in_every_order_of_switching(device: str) -> None:
    torch.manual_seed(3)
    model = Moded().train()
    eager = copy.deepcopy(model)
    x = torch.randn(4, 5)
    fast = sol.optimize(model, x, device=device)
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("fast.eval", fast.eval), ("model.train", model.train), ("model.eval", model.eval),
        ("fast.train", fast.train), ("model.drop.eval", model.drop.eval), ("fast.training = False",
                                                                             lambda: setattr(fast, "training", False)),
        ("model.bn.train", model.bn.train), ("fast.eval again", fast.eval)]
    for what, switch in steps:
        switch()
        # the same switch on the eager copy, by module path
        for (_, m), (_, e) in zip(model.named_modules(), eager.named_modules(), strict=True):
            e.training = m.training
        assert fast.training == model.training, what
        assert [m.training for m in fast.modules()] == [m.training for m in model.modules()], what
        _run_both(fast, eager, x, what)  # dropout and BatchNorm as each module's own flag says
        with torch.no_grad():
            torch.manual_seed(6)
            got = fast(x)
            torch.manual_seed(6)
            _close(got, eager(x), f"{what}: no-grad output")


def test_optimize_training_false_puts_the_model_in_eval_mode_and_calls_follow_its_modes(device: str) -> None:
    torch.manual_seed(4)
    model = Moded().train()
    eager = copy.deepcopy(model)
    x = torch.randn(4, 5)
    with pytest.warns(UserWarning, match="optimize puts the model in eval mode"):
        fast = sol.optimize(model, x, device=device, training=False)
    assert not fast.training and not any(m.training for m in model.modules())
    eager.eval()
    _run_both(fast, eager, x, "training=False on a training-mode model")
    model.drop.train()  # the model's modes from then on
    eager.drop.train()
    assert not fast.training
    _run_both(fast, eager, x, "dropout switched back on")


class FrozenBN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def test_eval_mode_calls_give_parameter_gradients_as_eager(device: str, caplog: pytest.LogCaptureFixture) -> None:
    """Frozen-BatchNorm fine-tuning: ``model.eval()``, a loss with an L2 penalty on the weights,
    optimizer steps. BatchNorm uses (and keeps) its running statistics; the gradients are
    eager's. The first call runs the inference program (its backward recomputes with the
    training program); later calls run the training program, which reads the updated weights
    live: no recompile per step."""
    torch.manual_seed(5)
    model = FrozenBN()
    with torch.no_grad():
        model.bn.running_mean.uniform_(-1, 1)
        model.bn.running_var.uniform_(0.5, 2)
    model.eval()
    eager = copy.deepcopy(model)
    x = torch.randn(2, 3, 6, 6)
    fast = sol.optimize(model, x, device=device)
    out = fast(x)  # outside no_grad but never differentiated (validation): no training program compiled
    assert out.requires_grad and not fast._train_variants
    _close(out, eager(x), "eval output")
    opts = [torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9) for net in (fast, eager)]
    kinds = []
    for step in range(3):
        for net, opt in zip((fast, eager), opts):
            opt.zero_grad()
            out = net(x)
            if net is fast:
                kinds.append(type(out.grad_fn).__name__)
            loss = (out * _probe(out.shape)).sum() + 0.01 * sum((p ** 2).sum() for p in net.parameters())
            loss.backward()
            opt.step()
        _same_state(model, eager, f"eval-mode step {step}")
    assert kinds[0] == "_RecomputeBackward" and set(kinds[1:]) == {"_SolFunctionBackward"}, kinds
    assert not model.training and not model.bn.training
    with caplog.at_level(logging.INFO, logger="sol"), torch.no_grad():
        _close(fast(x), eager(x), "no-grad eval output after the steps")
    assert sum("compiling again" in r.getMessage() for r in caplog.records) <= 1  # once, for the new weights
    # A backward after the modes changed cannot recompute the eval-mode forward: an error says so.
    out = fast(torch.randn(3, 3, 6, 6))  # a new shape: the inference program again
    model.train()
    with pytest.raises(RuntimeError, match="modes or requires_grad flags .* changed between this forward and its"):
        out.sum().backward()
    model.eval()


# --- the wrapper's view of the model -------------------------------------------------------------


class Weighted(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(x @ self.w, dim=1)


def test_a_replaced_parameter_is_what_the_wrapper_and_its_optimizer_train(device: str) -> None:
    torch.manual_seed(6)
    model = Weighted().train()
    x, y = torch.randn(8, 4), torch.randint(0, 3, (8,))
    fast = sol.optimize(model, x, device=device)
    model.w = nn.Parameter(torch.zeros(4, 3))  # before the optimizer is built on the wrapper
    eager = copy.deepcopy(model)
    assert list(fast.parameters()) == [model.w] and fast.w is model.w
    assert list(fast.state_dict()) == ["w"] and fast.state_dict()["w"].data_ptr() == model.w.data_ptr()
    model.extra = nn.Linear(2, 2)  # a new submodule: the wrapper's tree is the model's
    assert [n for n, _ in fast.named_modules()] == [n for n, _ in model.named_modules()] == ["", "extra"]
    assert list(fast.state_dict()) == list(model.state_dict()) == ["w", "extra.weight", "extra.bias"]
    del model.extra
    opts = [torch.optim.SGD(net.parameters(), lr=2.0) for net in (fast, eager)]
    losses: list[list[float]] = [[], []]
    for _ in range(20):
        for k, (net, opt) in enumerate(zip((fast, eager), opts)):
            opt.zero_grad()
            loss = nn.functional.nll_loss(net(x), y)
            loss.backward()
            opt.step()
            losses[k].append(float(loss.detach()))
    assert losses[0] == pytest.approx(losses[1], rel=1e-4)
    assert losses[0][-1] < 0.8 * losses[0][0], "it learns (the old wrapper trained the replaced tensor)"
    _same_state(model, eager, "replaced parameter")


# --- InstanceNorm's running statistics ----------------------------------------------------------


class Instance(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.norm = nn.InstanceNorm2d(4, affine=True, track_running_stats=True, momentum=0.2)
        self.plain = nn.InstanceNorm2d(4, track_running_stats=True, momentum=None)  # momentum None: 0, no update

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(self.conv(x))
        return self.plain(self.norm(torch.relu(h)))  # norm runs twice: its second update reads the first


def test_instance_norm_running_statistics_move_as_in_eager(device: str) -> None:
    torch.manual_seed(7)
    model = Instance().train()
    eager = copy.deepcopy(model)
    x = torch.randn(2, 3, 7, 7)
    fast = sol.optimize(model, x, device=device)
    for step in range(3):
        for net in (fast, eager):
            out = net(x * (step + 1))
            (out * _probe(out.shape)).sum().backward()
        _same_state(model, eager, f"step {step}")
    assert model.norm.running_mean.abs().sum() > 0.01


# --- hooks ---------------------------------------------------------------------------------------


def test_hooks_on_the_model_run_with_sol_at_every_call(device: str) -> None:
    torch.manual_seed(8)
    model = nn.Sequential(nn.Linear(4, 4), nn.Tanh(), nn.Linear(4, 2)).train()
    eager = copy.deepcopy(model)
    x = torch.randn(3, 4)
    fast = sol.optimize(model, x, device=device)
    calls: dict[int, list[str]] = {id(model): [], id(eager): []}

    def register(net: nn.Module) -> None:
        log = calls[id(net)]
        net.register_forward_pre_hook(lambda m, args: (log.append("pre"), (args[0] * 2,))[1])
        net.register_forward_hook(lambda m, args, out: (log.append("post"), out + 1)[1])
        net.register_full_backward_hook(lambda m, gin, gout: (log.append("backward"), None)[1])

    register(model)
    register(eager)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SolFallbackWarning)  # compiled, not run by PyTorch
        for step in range(2):
            for net in (fast, eager):
                xs = x.clone().requires_grad_()
                out = net(xs)
                (out * _probe(out.shape)).sum().backward()
                net.input_grad = xs.grad  # type: ignore[assignment]
            _close(fast.input_grad, eager.input_grad, f"step {step}: input gradient through the hooks")
            _same_state(model, eager, f"root hooks, step {step}")
    assert calls[id(model)] == calls[id(eager)] == ["pre", "post", "backward"] * 2
    assert fast._train_variants, "the calls ran sol's training program"


def test_hooks_on_submodules_make_training_calls_run_in_pytorch(device: str) -> None:
    torch.manual_seed(9)
    model = nn.Sequential(nn.Linear(4, 4), nn.ReLU(), nn.Linear(4, 2)).train()
    eager = copy.deepcopy(model)
    x = torch.randn(3, 4)
    fast = sol.optimize(model, x, device=device)
    with warnings.catch_warnings():
        warnings.simplefilter("error", SolFallbackWarning)  # no hooks: compiled
        _run_both(fast, eager, x, "no hooks")
    seen: dict[int, list[tuple[str, torch.Size]]] = {id(model): [], id(eager): []}
    for net in (model, eager):
        log = seen[id(net)]
        net[0].register_forward_hook(lambda m, args, out, log=log: log.append(("forward", out.shape)))
        net[0].register_full_backward_hook(lambda m, gin, gout, log=log: log.append(("backward", gout[0].shape)))
    with pytest.warns(SolFallbackWarning, match=r"while submodules have hooks.*: 0 \(forward hook, backward hook\)$"):
        _run_both(fast, eager, x, "hooked submodule")
    with warnings.catch_warnings():
        warnings.simplefilter("error", SolFallbackWarning)  # warned once
        _run_both(fast, eager, x, "hooked submodule again")
    assert seen[id(model)] == seen[id(eager)] == [("forward", (3, 4)), ("backward", (3, 4))] * 2
    with torch.no_grad():  # no gradients needed: the inference program (hooks as traced; see the README)
        _close(fast.eval()(x), eager.eval()(x), "inference with hooks")


# --- autocast ------------------------------------------------------------------------------------


def test_autocast_calls_give_eagers_dtypes_and_gradients(device: str) -> None:
    torch.manual_seed(10)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2)).eval()
    eager = copy.deepcopy(model)
    x = torch.randn(3, 4)
    fast = sol.optimize(model, x, device=device)
    with pytest.warns(SolFallbackWarning, match="torch.autocast"):
        with torch.autocast("cpu", torch.bfloat16), torch.no_grad():
            got = fast(x)
    with torch.autocast("cpu", torch.bfloat16), torch.no_grad():
        want = eager(x)
    assert got.dtype == want.dtype == torch.bfloat16
    assert torch.equal(got, want)
    model.train()
    eager.train()
    with torch.autocast("cpu", torch.bfloat16):
        for net in (fast, eager):
            (net(x).float() * _probe((3, 2))).sum().backward()
    _same_state(model, eager, "autocast training step")
    with torch.no_grad():
        assert fast(x).dtype == torch.float32  # outside autocast: sol's program again


class Piecewise(nn.Module):
    """Every piecewise op whose gradient PyTorch picks by comparisons: at NaN, at +-inf, at the
    kinks and on ties. hardtanh/relu6 and relu pass the gradient at NaN, clamp stops it there,
    maximum/minimum give both operands a NaN's gradient, clamp's tensor bounds take it only where
    they win outright."""

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        parts = [F.relu(x), F.relu6(x), F.hardtanh(x, -1.0, 1.0), x.clamp(-1.0, 1.0), x.clamp(min=0.0),
                 F.hardswish(x), F.hardsigmoid(x), F.leaky_relu(x, 0.1), torch.maximum(x, y), torch.minimum(x, y),
                 torch.clamp(x, y, None), torch.clamp(x, None, y)]
        return torch.stack(parts, 1)


def test_piecewise_gradients_at_nan_inf_kinks_and_ties_as_eager(device: str) -> None:
    nan, inf = float("nan"), float("inf")
    x = torch.tensor([nan, inf, -inf, 0.0, 6.0, 1.0, -1.0, 3.0, -3.0, 0.5, 2.0, nan, -0.0])
    y = torch.tensor([0.0, 1.0, 1.0, 0.0, 6.0, 1.0, nan, 3.0, -2.0, 0.7, 1.0, nan, 0.0])
    fast = sol.optimize(Piecewise().train(), x, y, device=device)
    grads = []
    for net in (fast, Piecewise().train()):
        xs, ys = x.clone().requires_grad_(), y.clone().requires_grad_()
        (net(xs, ys) * torch.arange(1.0, 13.0)).sum().backward()
        grads.append((xs.grad, ys.grad))
    for got, want, name in zip(grads[0], grads[1], ("x", "y")):
        torch.testing.assert_close(got, want, rtol=RTOL, atol=1e-6, equal_nan=True, msg=lambda m, n=name: f"{n}: {m}")
