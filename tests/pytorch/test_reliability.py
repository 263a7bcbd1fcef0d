"""An optimized module under real use: called from several threads, its model changed after
``optimize``, batch 0, copied and saved, dropped, and called with many shapes."""

from __future__ import annotations

import copy
import gc
import io
import logging
import os
import pickle
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

import sol
from sol_pytorch import variants, wrapper

torch.manual_seed(0)


def _same(got: torch.Tensor, want: torch.Tensor, rtol: float = 1e-4) -> None:
    torch.testing.assert_close(got, want, rtol=rtol, atol=rtol * max(1.0, float(want.detach().abs().max())))


class ConvNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.bn(self.conv(x))).mean((2, 3)))


def _statistics(bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    assert bn.running_mean is not None and bn.running_var is not None
    return bn.running_mean, bn.running_var


def _convnet() -> ConvNet:
    model = ConvNet().eval()
    mean, var = _statistics(model.bn)
    with torch.no_grad():  # statistics that matter, so that changing them changes the result
        mean.uniform_(-1, 1)
        var.uniform_(0.5, 2)
    return model


def _state(model: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Each parameter and buffer: the object, and a copy of its values."""
    return {n: (t, t.detach().clone()) for n, t in [*model.named_parameters(), *model.named_buffers()]}


def _assert_untouched(model: nn.Module, before: dict[str, tuple[torch.Tensor, torch.Tensor]]) -> None:
    now = dict([*model.named_parameters(), *model.named_buffers()])
    assert list(now) == list(before)
    for name, (obj, values) in before.items():
        assert now[name] is obj, f"{name} was replaced"
        assert type(obj) in (torch.Tensor, nn.Parameter), f"{name} is a {type(obj).__name__}"
        assert torch.equal(obj.detach(), values), f"{name} changed"
    torch.save(model.state_dict(), io.BytesIO())  # real tensors: the checkpoint saves


def _run_threads(target: Callable[[int], None], n: int) -> list[BaseException]:
    errors: list[BaseException] = []
    start = threading.Barrier(n)

    def run(i: int) -> None:
        try:
            start.wait()
            target(i)
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


# --- threads ----------------------------------------------------------------------------------


def test_threads_calling_with_new_shapes_get_eagers_results(device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = _convnet()
    fast = sol.optimize(model, torch.randn(2, 3, 6, 6), device=device, trace_cache=False)
    before = _state(model)
    inputs = {b: torch.randn(b, 3, 6, 6) for b in (3, 4, 5, 6)}
    traces = {"now": 0, "most": 0}
    real_export = torch.export.export
    count = threading.Lock()

    def export(*args: Any, **kwargs: Any) -> Any:
        with count:
            traces["now"] += 1
            traces["most"] = max(traces["most"], traces["now"])
        try:
            time.sleep(0.02)  # widen the window a race would need
            return real_export(*args, **kwargs)
        finally:
            with count:
                traces["now"] -= 1

    monkeypatch.setattr(torch.export, "export", export)
    got: dict[int, torch.Tensor] = {}

    def call(i: int) -> None:
        batch = 3 + i % 4
        with torch.no_grad():
            out = fast(inputs[batch])
        if i < 4:
            got[batch] = out

    errors = _run_threads(call, 8)
    assert not errors, errors
    assert traces["most"] == 1, "torch.export is not thread-safe: traces must not overlap"
    assert sorted(v.key[0][0][0] for v in fast.variants) == [2, 3, 4, 5, 6], "each new shape compiled once"
    _assert_untouched(model, before)
    with torch.no_grad():
        for batch, x in inputs.items():
            _same(got[batch], model(x))
            _same(fast(x), model(x))


def test_threads_training_with_new_shapes_accumulate_eagers_gradients(device: str) -> None:
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 4 * 4, 2)).train()
    reference = copy.deepcopy(model)
    fast = sol.optimize(model, torch.randn(2, 3, 6, 6), device=device)
    inputs = [torch.randn(3 + i % 4, 3, 6, 6) for i in range(8)]
    outs: dict[int, torch.Tensor] = {}

    def step(i: int) -> None:
        y = fast(inputs[i])
        y.pow(2).sum().backward()
        outs[i] = y.detach()

    errors = _run_threads(step, 8)
    assert not errors, errors
    for i, x in enumerate(inputs):
        y = reference(x)
        _same(outs[i], y.detach())
        y.pow(2).sum().backward()
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert p.grad is not None and q.grad is not None, name
        _same(p.grad, q.grad, rtol=1e-3)
    assert len(fast.variants) == 5, "one training variant per shape: 2, 3, 4, 5, 6"


class Picky(nn.Module):
    """Its forward refuses batch 3 (user code raising while sol traces it)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] == 3:
            raise ValueError("Picky takes no batch of 3")
        return torch.relu(self.bn(self.conv(x)))


@pytest.mark.parametrize("mode", ["eval", "train"])
def test_a_trace_that_raises_leaves_the_model_and_the_module_intact(device: str, mode: str) -> None:
    model = Picky().train(mode == "train")
    fast = sol.optimize(model, torch.randn(2, 3, 6, 6), device=device)
    before = _state(model)
    with pytest.raises(ValueError, match="Picky takes no batch of 3"):
        fast(torch.randn(3, 3, 6, 6))
    if mode == "eval":  # training-mode calls write the running statistics: compare after
        _assert_untouched(model, before)
    assert model.training == (mode == "train") and model.bn.training == (mode == "train")
    assert fast.training == (mode == "train")
    for batch in (2, 5):  # the compiled shape and a new one
        x = torch.randn(batch, 3, 6, 6)
        reference = copy.deepcopy(model)
        with torch.set_grad_enabled(mode == "train"):
            _same(fast(x), reference(x))
    assert all(type(p) is nn.Parameter for p in model.parameters())


def test_optimize_from_several_threads_in_a_fresh_process() -> None:
    """Different models optimized at once, as the first thing a process does (sol's plugin
    registries are filled then, by whichever thread comes first)."""
    script = textwrap.dedent("""
        import threading, torch
        from torch import nn
        import sol
        errors, good = [], []
        start = threading.Barrier(4)
        def run(i):
            try:
                start.wait()
                m = nn.Sequential(nn.Conv2d(3, 2 + i, 3), nn.ReLU(), nn.Flatten()).eval()
                fast = sol.optimize(m, torch.zeros(1, 3, 5, 5))
                x = torch.randn(2, 3, 5, 5)
                with torch.no_grad():
                    good.append(torch.allclose(fast(x), m(x), rtol=1e-4, atol=1e-4))
            except Exception as exc:
                errors.append(repr(exc))
        threads = [threading.Thread(target=run, args=(i,)) for i in range(4)]
        [t.start() for t in threads]
        [t.join() for t in threads]
        print("RESULT", errors, good)
    """)
    out = subprocess.run([sys.executable, "-W", "ignore", "-c", script], capture_output=True, text=True,
                         timeout=600, env=os.environ.copy())
    assert "RESULT [] [True, True, True, True]" in out.stdout, out.stdout + out.stderr


# --- changes to the model after optimize --------------------------------------------------------


def _other_forward(x: torch.Tensor) -> torch.Tensor:
    return torch.tanh(x).mean((1, 2, 3)).unsqueeze(1)


def _hook(module: nn.Module, args: Any, out: torch.Tensor) -> torch.Tensor:
    return out * 2


# Each changes the model the way user code does; the next call must compute the changed model.
CHANGES: list[tuple[str, Callable[[ConvNet], Any]]] = [
    ("weight.data.mul_", lambda m: m.conv.weight.data.mul_(0.5)),
    ("weight.data = new", lambda m: setattr(m.conv.weight, "data", torch.randn_like(m.conv.weight))),
    ("bias.data.fill_", lambda m: m.fc.bias.data.fill_(3)),
    ("running_var.data.mul_", lambda m: _statistics(m.bn)[1].data.mul_(4)),
    ("in-place write of one element", lambda m: m.fc.weight.detach()[0, 1].add_(5)),
    ("load_state_dict", lambda m: m.load_state_dict(_convnet().state_dict())),
    ("eps", lambda m: setattr(m.bn, "eps", 1.0)),
    ("submodule replaced", lambda m: setattr(m, "fc", nn.Linear(4, 3).eval())),
    ("padding", lambda m: setattr(m.conv, "padding", (2, 2))),
    ("forward hook added", lambda m: m.fc.register_forward_hook(_hook)),
    ("forward replaced", lambda m: setattr(m, "forward", _other_forward)),
]


def test_every_change_after_optimize_takes_effect_at_the_next_call(device: str,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    model = _convnet()
    x = torch.randn(2, 3, 6, 6)
    fast = sol.optimize(model, x, device=device)
    handles = []
    with torch.no_grad():
        _same(fast(x), model(x))
        for name, change in CHANGES:
            result = change(model)
            if name == "forward hook added":
                handles.append(result)
            before = model(x).clone()
            with caplog.at_level(logging.INFO, logger="sol"):
                caplog.clear()
                got = fast(x)
            assert got.shape == before.shape, name
            assert torch.allclose(got, before, rtol=1e-4, atol=1e-4), f"{name}: {got} != {before}"
            assert any("compiling again" in r.getMessage() for r in caplog.records), f"{name}: no recompile logged"
        assert fast.fc is model.fc, "the replaced submodule is the module's child too (state_dict, parameters)"
        handles[0].remove()  # removing the hook is a change too
        _same(fast(x), model(x))


def test_unchanged_models_are_not_compiled_again(device: str) -> None:
    """Other activity in the process (new modules, mode switches, another model's changes, reading
    weights) does not make a module compile again."""
    model = _convnet()
    x = torch.randn(2, 3, 6, 6)
    fast = sol.optimize(model, x, device=device)
    first = fast.variants[0]
    other = _convnet()
    with torch.no_grad():
        for _ in range(3):
            fast(x)
            nn.Linear(3, 3)  # modules made elsewhere
            other.bn.eps = 0.5  # another model changed
            fast.eval()
            model.conv.weight.data  # noqa: B018 - a read
            _ = model.state_dict()
    assert fast.variants == [first]


def test_training_reads_weights_live_and_compiles_again_for_configuration(device: str,
                                                                         caplog: pytest.LogCaptureFixture) -> None:
    model = _convnet().train()
    reference = copy.deepcopy(model)
    fast = sol.optimize(model, torch.randn(4, 3, 6, 6), device=device)
    steps: list[tuple[str, Callable[[ConvNet], Any], bool]] = [
        ("nothing", lambda m: None, False),
        ("weight.data = new", lambda m: setattr(m.conv.weight, "data", torch.full_like(m.conv.weight, 0.1)), False),
        ("weight.data.mul_", lambda m: m.fc.weight.data.mul_(-2), False),
        ("eps", lambda m: setattr(m.bn, "eps", 0.5), True),
    ]
    for name, change, recompiles in steps:
        change(model)
        change(reference)
        x = torch.randn(4, 3, 6, 6)
        with caplog.at_level(logging.INFO, logger="sol"):
            caplog.clear()
            y = fast(x)
        want = reference(x)
        _same(y, want)
        y.sum().backward()
        want.sum().backward()
        for p, q in zip(model.parameters(), reference.parameters()):
            assert p.grad is not None and q.grad is not None
            _same(p.grad, q.grad, rtol=1e-3)
            p.grad, q.grad = None, None
        for a, b in zip(model.buffers(), reference.buffers()):
            _same(a.float(), b.float())
        compiled = any("compiling" in r.getMessage() for r in caplog.records)
        assert compiled == recompiles, f"{name}: compiled again: {compiled}"


# --- edges ------------------------------------------------------------------------------------


class Everything(nn.Module):
    """Convolution, BatchNorm, pooling, flatten, linear, softmax, an LSTM and a reduction."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 5)
        self.lstm = nn.LSTM(5, 6, batch_first=True)

    def forward(self, x: torch.Tensor, s: torch.Tensor) -> tuple[torch.Tensor, ...]:
        h = self.pool(torch.relu(self.bn(self.conv(x))))
        y = torch.softmax(self.fc(torch.flatten(h, 1)), -1)
        z, (hn, _) = self.lstm(s)
        return y, z, hn, y.sum(0)


def _batch0() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(0, 3, 8, 8), torch.randn(0, 7, 5)


def _check_outputs(got: tuple[torch.Tensor, ...], want: tuple[torch.Tensor, ...]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        torch.testing.assert_close(g, w.detach(), rtol=1e-4, atol=1e-4)


def test_batch_0_gives_eagers_empty_results(device: str) -> None:
    model = Everything().eval()
    x, s = _batch0()
    with torch.no_grad():
        want = model(x, s)
        _check_outputs(sol.optimize(model, x, s, device=device)(x, s), want)  # compiled for batch 0
        fast = sol.optimize(model, torch.randn(2, 3, 8, 8), torch.randn(2, 7, 5), device=device)
        _check_outputs(fast(x, s), want)  # a batch-0 variant of a batch-2 module


def test_batch_0_trains_as_eager(device: str) -> None:
    model = Everything().train()
    reference = copy.deepcopy(model)
    fast = sol.optimize(model, torch.randn(2, 3, 8, 8), torch.randn(2, 7, 5), device=device)
    x, s = _batch0()
    xs = [x.clone().requires_grad_(), x.clone().requires_grad_()]
    got, want = fast(xs[0], s), reference(xs[1], s)
    _check_outputs(got, want)
    for outs, inp in ((got, xs[0]), (want, xs[1])):
        (outs[0].sum() + outs[1].sum() + outs[3].sum()).backward()
        assert inp.grad is not None and inp.grad.shape == x.shape
    for (name, p), q in zip(model.named_parameters(), reference.parameters()):
        assert (p.grad is None) == (q.grad is None), name
        if q.grad is not None:
            torch.testing.assert_close(p.grad, q.grad, msg=name)
    for (name, a), b in zip(model.named_buffers(), reference.buffers()):
        torch.testing.assert_close(a, b, msg=name)  # running statistics untouched, the counter counted


def _saved_model() -> tuple[nn.Module, torch.Tensor]:
    bn = nn.BatchNorm2d(4)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), bn, nn.ReLU(), nn.Flatten(), nn.Linear(64, 3)).eval()
    with torch.no_grad():
        _statistics(bn)[1].uniform_(0.5, 2)
    return model, torch.randn(2, 3, 6, 6)


def test_deepcopy_and_pickle_give_working_independent_modules(device: str) -> None:
    model, x = _saved_model()
    fast = sol.optimize(model, x, device=device, max_variants=3)
    fast.register_forward_hook(_hook)  # hooks on the optimized module travel with it
    with torch.no_grad():
        want = fast(x)
        for twin in (copy.deepcopy(fast), pickle.loads(pickle.dumps(fast))):
            assert isinstance(twin, wrapper.SolModule) and twin.model is not model
            assert twin._max_variants == 3 and not twin.training
            _same(twin(x), want)
            _same(twin(x[:1]), want[:1])  # and it compiles variants of its own
            twin.model[0].weight.data.zero_()  # independent of the original
            _same(fast(x), want)


def test_torch_save_and_load_in_a_fresh_process(device: str, tmp_path: Path) -> None:
    model, x = _saved_model()
    fast = sol.optimize(model, x, device=device)
    with torch.no_grad():
        want = fast(x)
    torch.save({"module": fast, "x": x}, tmp_path / "fast.pt")
    script = textwrap.dedent(f"""
        import torch
        saved = torch.load({str(tmp_path / "fast.pt")!r}, weights_only=False)
        module = saved["module"]
        with torch.no_grad():
            out = module(saved["x"])
        torch.save({{"out": out, "kind": type(module).__name__, "device": module.program.device}},
                   {str(tmp_path / "out.pt")!r})
    """)
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", script], capture_output=True, text=True,
                          timeout=600, env=os.environ.copy())
    assert done.returncode == 0, done.stdout + done.stderr
    loaded = torch.load(tmp_path / "out.pt")
    assert loaded["kind"] == "SolModule" and loaded["device"] == device
    _same(loaded["out"], want)


def _mapped(paths: set[str]) -> set[str]:
    with open("/proc/self/maps") as maps:
        return {line.split()[-1] for line in maps if line.rstrip().split()[-1] in paths}


def _artifacts(module: wrapper.SolModule) -> set[str]:
    """The shared objects this process maps for the module's programs."""
    out = set()
    for v in module.variants:
        for p in v.programs:
            library = p.info.get("library")  # an offload device: what it loaded, beside the artifact
            out.add(str(getattr(library, "path", p.info["artifact"])))
    return {os.path.realpath(p) for p in out}


def test_dropped_modules_unload_their_libraries(device: str) -> None:
    """9 optimize-call-drop cycles over 3 networks: their libraries are unloaded once dropped
    (x86 builds with -fno-gnu-unique: g++ would otherwise mark the first library to define one
    of libstdc++'s "unique" statics as never to be unloaded)."""
    seen: set[str] = set()
    for i in range(9):
        width = 3 + i % 3
        model = nn.Sequential(nn.Linear(4, width), nn.ReLU()).eval()
        fast = sol.optimize(model, torch.zeros(2, 4), device=device)
        with torch.no_grad():
            fast(torch.ones(2, 4))
        seen |= _artifacts(fast)
        assert _mapped(seen), "the module's library is mapped while it lives"
        del fast, model
        gc.collect()
    assert len(seen) == 3
    assert not _mapped(seen), _mapped(seen)


def test_max_variants_keeps_the_most_recently_used(device: str, caplog: pytest.LogCaptureFixture) -> None:
    assert variants.MAX_VARIANTS == 8
    model = _convnet()
    fast = sol.optimize(model, torch.randn(2, 3, 6, 6), device=device, max_variants=2)
    with torch.no_grad(), caplog.at_level(logging.INFO, logger="sol"):
        for batch in (3, 2, 4, 3):  # 3 is dropped for 4 (2 was used since), then compiled again
            x = torch.randn(batch, 3, 6, 6)
            _same(fast(x), model(x))
    messages = [r.getMessage() for r in caplog.records]
    dropped = [m for m in messages if "max_variants" in m]
    assert len(dropped) == 2 and "float32[3, 3, 6, 6]" in dropped[0] and "float32[2, 3, 6, 6]" in dropped[1], dropped
    assert sum("compiling ConvNet again for inputs (float32[3, 3, 6, 6])" in m for m in messages) == 2
    assert [v.key[0][0][0] for v in fast.variants] == [4, 3]
    with pytest.raises(ValueError, match="max_variants must be a positive int .* got 0"):
        sol.optimize(model, torch.randn(2, 3, 6, 6), device=device, max_variants=0)
