"""PyTorch tensors cross into sol without copies where device and PyTorch share memory (x86: a
contiguous CPU tensor is used in place, inputs and outputs), and one optimized module called
from four threads at once gives eager's results."""

from __future__ import annotations

import threading
from typing import Any

import pytest
import torch
from torch import nn

import sol
from sol.memory import Buffer

pytestmark = pytest.mark.filterwarnings("ignore:sol device .ve. runs emulated")

torch.manual_seed(0)


def _x86_here() -> str:
    from sol.plugins import roles

    if "x86" not in roles().devices:
        return "sol-device-x86 is not installed"
    avail = roles().devices.get("x86").availability()
    return "" if avail.available else f"x86 unavailable: {avail.detail}"


x86 = pytest.mark.skipif(bool(_x86_here()), reason=_x86_here() or "x86 available")


def _tiny() -> nn.Module:
    return nn.Sequential(nn.Linear(16, 16), nn.Tanh()).eval()


def _spy(program: Any, monkeypatch: pytest.MonkeyPatch) -> list[tuple[list[int], list[int]]]:
    """Record the pointers each buffer call of ``program`` hands to its device."""
    seen: list[tuple[list[int], list[int]]] = []
    real = program._run_into

    def run_into(ins: list[Buffer], outs: list[Buffer]) -> None:
        seen.append(([b.ptr for b in ins], [b.ptr for b in outs]))
        real(ins, outs)

    monkeypatch.setattr(program, "_run_into", run_into)
    return seen


@x86
def test_a_contiguous_cpu_tensor_is_used_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    model = _tiny()
    x = torch.randn(1, 16)
    fast = sol.optimize(model, x, device="x86")
    program = fast.program
    assert program.memory.dlpack_device == x.__dlpack_device__() and program.runs_in_place
    seen = _spy(program, monkeypatch)
    with torch.no_grad():
        out = fast(x)
        torch.testing.assert_close(out, model(x), rtol=1e-5, atol=1e-5)
    (ins, outs), = seen
    assert ins == [x.data_ptr()]  # the input tensor's own memory
    assert outs == [out.data_ptr()]  # the output tensor is the memory the program wrote
    # A layout the device cannot read in place is made contiguous first (a copy), still right.
    wide = torch.randn(16, 3).t()
    with torch.no_grad():
        torch.testing.assert_close(fast(wide), model(wide), rtol=1e-5, atol=1e-5)
    assert len(seen) == 1  # it took the host-array route
    assert not x.requires_grad and x.is_contiguous()  # the caller's tensor is left as it was


@x86
def test_outputs_are_fresh_tensors_the_caller_owns() -> None:
    model = _tiny()
    x = torch.randn(1, 16)
    fast = sol.optimize(model, x, device="x86")
    with torch.no_grad():
        a, b = fast(x), fast(x)
    assert a.data_ptr() != b.data_ptr() and a.data_ptr() != x.data_ptr()
    a.add_(1)  # writable, and changing one result changes nothing else
    torch.testing.assert_close(b, fast(x))


@x86
def test_outputs_are_pytorchs_own_resizable_tensors() -> None:
    """The results come from PyTorch's allocator, as ``torch.empty`` would make them (a tensor
    wrapping NumPy memory cannot grow), with empty results too."""
    model = _tiny()
    x = torch.randn(3, 16)
    fast = sol.optimize(model, x, device="x86")
    with torch.no_grad():
        out = fast(x)
        want = model(x)
    out.resize_(6, 16)  # raises "Trying to resize storage that is not resizable" for NumPy memory
    torch.testing.assert_close(out[:3], want, rtol=1e-5, atol=1e-5)
    empty = torch.zeros(0, 16)
    with torch.no_grad():
        got = sol.optimize(_tiny(), empty, device="x86")(empty)
    assert got.shape == (0, 16)


def test_four_threads_calling_one_module_at_once_get_eagers_results(device: str) -> None:
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(8, 5)).eval()
    example = torch.randn(2, 3, 12, 12)
    fast = sol.optimize(model, example, device=device)
    xs = [torch.randn(2, 3, 12, 12) for _ in range(4)]
    with torch.no_grad():
        want = [model(x) for x in xs]
        fast(example)  # compiled before the threads start: they race on running, not on compiling
    start = threading.Barrier(4)
    errors: list[BaseException] = []
    got: list[list[torch.Tensor]] = [[] for _ in range(4)]

    def work(i: int) -> None:
        try:
            start.wait()
            with torch.no_grad():
                for _ in range(25):
                    got[i].append(fast(xs[i]))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for i in range(4):
        for out in got[i]:
            torch.testing.assert_close(out, want[i], rtol=1e-4, atol=1e-4)
