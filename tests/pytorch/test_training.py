"""Issue #7 items 2-4: training through sol with PyTorch.

``optimize`` on a model in training mode returns a module whose forward runs sol's compiled
training forward and whose ``backward`` fills the ``.grad`` of the model's own parameters;
gradients, outputs and BatchNorm running statistics are compared with eager PyTorch on a deep
copy of the same model (rtol 1e-4 on small networks, 1e-3 on the zoo's networks, each tensor
against its own largest magnitude), dropout masks with the same seed. Small networks run on
every device; the zoo networks and the distributed test on x86.

Losses are projections on fixed random tensors, not sums or squares: a BatchNorm with batch
statistics makes the gradient of ``sum(y)`` or ``sum(y**2)`` zero, which would compare noise.
"""

from __future__ import annotations

import copy
import os
import socket
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils import _pytree as pytree

import sol
from sol.errors import UnsupportedOpError
from sol_pytorch.fallback import SolFallbackWarning

import zoo
from foreign_ops import cumulative_product

pytestmark = pytest.mark.filterwarnings("ignore:sol device .* runs emulated")


def _close(got: torch.Tensor, want: torch.Tensor, rtol: float, what: str = "") -> None:
    """Close relative to the reference tensor's own largest magnitude."""
    scale = float(want.detach().abs().max()) if want.numel() else 0.0
    torch.testing.assert_close(got.detach().float(), want.detach().float(), rtol=rtol, atol=rtol * scale,
                               msg=lambda m: f"{what}: {m}")


def _check_state(fast_model: nn.Module, eager: nn.Module, rtol: float) -> None:
    """Every parameter's gradient (None where eager has None) and every buffer. A gradient is
    compared relative to its own largest magnitude, or to 1e-3 of the model's largest gradient
    where that is larger: a gradient that is zero in exact arithmetic (a BatchNorm bias whose
    output feeds a convolution and another BatchNorm with batch statistics) is rounding noise in
    both, and relative to itself, noise never matches."""
    grads = [q.grad.abs().max() for q in eager.parameters() if q.grad is not None and q.grad.numel()]
    floor = 1e-3 * float(max(grads)) if grads else 0.0
    for (name, p), (_, q) in zip(fast_model.named_parameters(), eager.named_parameters(), strict=True):
        if q.grad is None:
            assert p.grad is None, f"{name}: eager leaves .grad None, sol filled it"
        else:
            assert p.grad is not None, f"{name}: no gradient from sol"
            scale = max(float(q.grad.abs().max()), floor)
            torch.testing.assert_close(p.grad, q.grad, rtol=rtol, atol=rtol * scale,
                                       msg=lambda m, name=name: f"{name}.grad: {m}")
    for (name, b), (_, c) in zip(fast_model.named_buffers(), eager.named_buffers(), strict=True):
        if b.dtype.is_floating_point:
            _close(b, c, rtol, name)
        else:
            assert torch.equal(b, c), f"{name}: {b} != {c}"


def _probe(shape: Sequence[int]) -> torch.Tensor:
    """Fixed weights for the loss, drawn without touching the global RNG (dropout's)."""
    return torch.randn(tuple(shape), generator=torch.Generator().manual_seed(1234))


def _step(model: nn.Module, inputs: Sequence[torch.Tensor], seed: int) -> torch.Tensor:
    """Forward with the RNG seeded (dropout masks), backward of a projection of the output (of
    each floating-point output); returns the outputs concatenated."""
    torch.manual_seed(seed)
    out = model(*inputs)
    outs = [t for t in pytree.tree_leaves(out) if isinstance(t, torch.Tensor) and t.dtype.is_floating_point]
    sum((t * _probe(t.shape)).sum() for t in outs).backward()  # type: ignore[union-attr]
    return torch.cat([t.detach().flatten() for t in outs])


def _compare_steps(model: nn.Module, inputs: Sequence[torch.Tensor], device: str, rtol: float,
                   steps: int = 2, **options: Any) -> nn.Module:
    """Optimize ``model`` (in training mode) and run forward + backward ``steps`` times on it and on
    a deep copy in eager mode with the same seeds; compare outputs, gradients and buffers."""
    eager = copy.deepcopy(model)
    rng = torch.get_rng_state()
    fast = sol.optimize(model, *inputs, device=device, **options)
    assert torch.equal(rng, torch.get_rng_state()), "optimize must not consume the user's random numbers"
    assert fast.training
    for step in range(steps):
        _close(_step(fast, inputs, step), _step(eager, inputs, step), rtol, f"output of step {step}")
        _check_state(model, eager, rtol)
        model.zero_grad()
        eager.zero_grad()
    return fast


# --- small networks, every device -------------------------------------------------------------


class SmallCNN(nn.Module):
    """Convolution, BatchNorm, ReLU, max and average pooling, dropout, linear; the second
    BatchNorm keeps a cumulative average (``momentum=None``)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.pool = nn.MaxPool2d(2)
        self.conv2 = nn.Conv2d(8, 16, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(16, momentum=None)
        self.drop = nn.Dropout(0.25)
        self.fc = nn.Linear(16, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(F.relu(self.bn1(self.conv1(x))))
        x = F.adaptive_avg_pool2d(F.relu(self.bn2(self.conv2(x))), 1).flatten(1)
        return self.fc(self.drop(x))


def _small_cnn() -> SmallCNN:
    torch.manual_seed(0)
    return zoo.randomize_batchnorm(SmallCNN()).train()  # type: ignore[return-value]


def test_small_cnn_gradients_statistics_and_masks_match_eager(device: str) -> None:
    model = _small_cnn()
    x = torch.randn(4, 3, 12, 12)
    fast = _compare_steps(model, [x], device, rtol=1e-4, steps=3)
    assert int(model.bn1.num_batches_tracked) == 3 and int(model.bn2.num_batches_tracked) == 3
    assert len(fast.variants) == 1, "new weights and statistics every step: no recompile"


def test_mlp_gradients_with_dropout_and_input_gradients(device: str) -> None:
    torch.manual_seed(0)
    model = zoo.mlp().train()
    x = torch.randn(8, 64)
    _compare_steps(model, [x], device, rtol=1e-4)
    eager = copy.deepcopy(model)
    fast = sol.optimize(model, x, device=device)
    x_sol, x_eager = x.clone().requires_grad_(), x.clone().requires_grad_()
    _close(_step(fast, [x_sol], seed=7), _step(eager, [x_eager], seed=7), 1e-4, "output")
    assert x_sol.grad is not None
    _close(x_sol.grad, x_eager.grad, 1e-4, "input gradient")
    _check_state(model, eager, 1e-4)


def test_residual_network_gradients_match_eager(device: str) -> None:
    torch.manual_seed(0)
    model = zoo.randomize_batchnorm(zoo.small_resnet()).train()
    # 64x64: the last stage is 2x2, so its BatchNorms see 8 values per channel (with 1 or 2 the
    # normalization is so ill-conditioned that float32 rounding dominates any gradient).
    _compare_steps(model, [torch.randn(2, 3, 64, 64)], device, rtol=1e-4)


class Norms(nn.Module):
    """BatchNorm variants: without running statistics, 1-D, frozen in eval mode inside a model
    in training mode; channel-wise dropout and dropout with p=0."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, bias=False)
        self.free = nn.BatchNorm2d(6, track_running_stats=False)
        self.frozen = nn.BatchNorm2d(6)
        self.drop2d = nn.Dropout2d(0.5)
        self.fc = nn.Linear(6, 5, bias=False)  # a bias before batch statistics has no gradient
        self.bn1d = nn.BatchNorm1d(5, momentum=0.3)
        self.never = nn.Dropout(0.0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.drop2d(F.relu(self.frozen(self.free(self.conv(x)))))
        return self.never(self.bn1d(self.fc(x.mean((2, 3)))))


def _randomize_norms(model: nn.Module) -> nn.Module:
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                if m.running_mean is not None:
                    m.running_mean.uniform_(-0.5, 0.5)
                    m.running_var.uniform_(0.5, 2.0)
    return model


def test_batchnorm_variants_frozen_modules_and_channel_dropout(device: str) -> None:
    torch.manual_seed(0)
    model = _randomize_norms(Norms()).train()
    model.frozen.eval()  # fine-tuning with frozen statistics: a mixed-mode model
    model.conv.weight.requires_grad_(False)  # a frozen layer: no gradient, as in eager
    _compare_steps(model, [torch.randn(4, 3, 6, 6)], device, rtol=1e-4)
    assert model.conv.weight.grad is None
    assert int(model.frozen.num_batches_tracked) == 0, "a BatchNorm in eval mode keeps its statistics"


def test_modes_switch_between_training_and_inference_programs(device: str) -> None:
    model = _small_cnn()
    eager = copy.deepcopy(model)
    x = torch.randn(4, 3, 12, 12)
    fast = sol.optimize(model, x, device=device)
    with torch.no_grad():  # training mode without gradients: statistics still move, masks drawn
        torch.manual_seed(1)
        got = fast(x)
        torch.manual_seed(1)
        _close(got, eager(x), 1e-4, "no-grad training output")
    _check_state(model, eager, 1e-4)
    assert fast.eval() is fast and not (model.training or model.bn1.training or model.drop.training)
    eager.eval()
    with torch.no_grad():
        _close(fast(x), eager(x), 1e-4, "eval output")
        assert torch.equal(fast(x), fast(x)), "eval mode: no dropout"
    fast.train()
    eager.train()
    _close(_step(fast, [x], 2), _step(eager, [x], 2), 1e-4, "training output after eval")
    _check_state(model, eager, 1e-4)
    assert len(fast.variants) == 2, "one training and one inference variant, each compiled once"


def test_optimizer_on_either_module_updates_both(device: str) -> None:
    model = _small_cnn()
    eager = copy.deepcopy(model)
    x = torch.randn(4, 3, 12, 12)
    fast = sol.optimize(model, x, device=device)
    assert [id(p) for p in fast.parameters()] == [id(p) for p in model.parameters()]
    # Plain SGD: alternating optimizers must not depend on which one holds momentum state.
    opt_fast = torch.optim.SGD(fast.parameters(), lr=0.1)
    opt_model = torch.optim.SGD(model.parameters(), lr=0.1)
    opt_eager = torch.optim.SGD(eager.parameters(), lr=0.1)
    for step, opt in enumerate([opt_fast, opt_model, opt_fast]):
        _close(_step(fast, [x], step), _step(eager, [x], step), 1e-4, f"step {step}")
        opt.step()
        opt.zero_grad()
        opt_eager.step()
        opt_eager.zero_grad()
        for p, q in zip(model.parameters(), eager.parameters()):
            _close(p, q, 1e-4, "updated parameter")
    assert len(fast.variants) == 1


def test_gradients_flow_on_through_the_rest_of_a_pytorch_graph(device: str) -> None:
    """The compiled model as one layer of a larger eager model, inputs from trained layers."""
    torch.manual_seed(0)
    inner = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4)).train()
    head = nn.Linear(5, 6)
    eager_inner, eager_head = copy.deepcopy(inner), copy.deepcopy(head)
    fast = sol.optimize(inner, (3, 6), device=device)
    x = torch.randn(3, 5)
    (fast(head(x)) * _probe((3, 4))).sum().backward()
    (eager_inner(eager_head(x)) * _probe((3, 4))).sum().backward()
    _check_state(head, eager_head, 1e-4)
    _check_state(inner, eager_inner, 1e-4)


def test_unsupported_operation_trains_in_pytorch_with_a_warning(device: str) -> None:
    class Cumulative(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return cumulative_product(self.fc(x), 1)

    torch.manual_seed(0)
    model = Cumulative().train()
    with pytest.raises(UnsupportedOpError, match="cumulative_product"):
        sol.optimize(model, (2, 4), device=device, fallback=False)
    with pytest.warns(SolFallbackWarning, match=r"for training; PyTorch trains the whole model"):
        fast = sol.optimize(model, (2, 4), device=device)
    eager = copy.deepcopy(model)
    x = torch.randn(2, 4)
    _close(_step(fast, [x], 0), _step(eager, [x], 0), 1e-6, "output")
    _check_state(model, eager, 1e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fast(x)  # warned once


# --- a training run ---------------------------------------------------------------------------


def _train(model: nn.Module, data: list[tuple[torch.Tensor, torch.Tensor]],
           loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]) -> list[float]:
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    losses = []
    for step, (x, y) in enumerate(data):
        torch.manual_seed(step)
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    return losses


@pytest.mark.slow
@pytest.mark.parametrize("net", ["small_cnn", "mlp"])
def test_fifty_sgd_momentum_steps_follow_eager(device: str, net: str) -> None:
    torch.manual_seed(0)
    if net == "mlp":
        model: nn.Module = zoo.mlp().train()
        batches = [(torch.randn(16, 64), torch.randint(0, 10, (16,))) for _ in range(4)]
        loss_fn: Callable[..., torch.Tensor] = F.nll_loss  # the MLP ends in log_softmax
    else:
        model = _small_cnn()
        batches = [(torch.randn(8, 3, 12, 12), torch.randint(0, 10, (8,))) for _ in range(4)]
        loss_fn = F.cross_entropy
    data = [batches[i % len(batches)] for i in range(50)]  # four batches, learnt by heart
    eager = copy.deepcopy(model)
    fast = sol.optimize(model, data[0][0], device=device)
    got, want = _train(fast, data, loss_fn), _train(eager, data, loss_fn)
    torch.testing.assert_close(torch.tensor(got), torch.tensor(want), rtol=1e-3, atol=1e-4)
    assert want[-1] < 0.9 * want[0], "the run learns"
    for p, q in zip(model.parameters(), eager.parameters()):
        _close(p, q, 1e-3, "parameter after 50 steps")
    assert len(fast.variants) == 1


# --- the zoo, x86 -----------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize(("name", "batch", "size"), [("resnet18", 8, 32), ("mobilenet_v2", 4, 64)])
def test_zoo_cnn_gradients_match_eager(name: str, batch: int, size: int) -> None:
    """Batch and size keep the BatchNorms of the last stages at 8 to 16 values per channel:
    with fewer, normalization amplifies float32 rounding until a ReLU6 mask flips and gradients
    differ between any two float32 implementations (eager's own float32 and float64 included)."""
    torch.manual_seed(0)
    model = zoo.randomize_batchnorm(getattr(zoo, name)(10)).train()
    _compare_steps(model, [torch.randn(batch, 3, size, size)], "x86", rtol=1e-3, steps=1)


@pytest.mark.slow
def test_bert_encoder_gradients_match_eager() -> None:
    torch.manual_seed(0)
    model = zoo.bert_encoder(vocab_size=100, hidden=64, num_layers=2, num_heads=4).train()
    ids = torch.randint(1, 100, (2, 8))
    types = torch.randint(0, 2, (2, 8))
    mask = torch.ones(2, 8, dtype=torch.long)
    mask[1, 6:] = 0
    _compare_steps(model, [ids, types, mask], "x86", rtol=1e-3, steps=1)


# --- distributed data parallel, x86 -----------------------------------------------------------


def _ddp_worker(rank: int, world: int, port: int, out_dir: str) -> None:
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        model = _small_cnn()
        eager = copy.deepcopy(model)
        x0 = torch.randn(4, 3, 12, 12)
        fast = DDP(sol.optimize(model, x0, device="x86"))
        ref = DDP(eager)
        opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in (fast, ref)]
        for step in range(3):
            g = torch.Generator().manual_seed(100 * step + rank)  # each rank its own shard
            x, y = torch.randn(4, 3, 12, 12, generator=g), torch.randint(0, 10, (4,), generator=g)
            for m, opt in zip((fast, ref), opts):
                torch.manual_seed(step)
                loss = F.cross_entropy(m(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
        torch.save({"sol": model.state_dict(), "eager": eager.state_dict()}, os.path.join(out_dir, f"{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_distributed_data_parallel_matches_eager_ddp(tmp_path: Any) -> None:
    import torch.multiprocessing as mp

    sol.optimize(_small_cnn(), torch.randn(4, 3, 12, 12), device="x86")  # the workers load it from the cache
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    states = [torch.load(tmp_path / f"{rank}.pt") for rank in range(2)]
    for rank, state in enumerate(states):
        for key, want in state["eager"].items():  # buffers differ between ranks (each its own batch)
            got = state["sol"][key]
            if want.dtype.is_floating_point:
                _close(got, want, 1e-4, f"rank {rank}: {key}")
            else:
                assert torch.equal(got, want), key
    for name, _ in _small_cnn().named_parameters():  # DDP keeps the parameters equal
        _close(states[1]["sol"][name], states[0]["sol"][name], 1e-6, f"{name} on both ranks")
    assert not torch.equal(states[0]["sol"]["fc.weight"], _small_cnn().fc.weight), "the workers trained"
