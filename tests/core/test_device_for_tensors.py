"""``optimize`` without a device, given tensors that live on a device's memory (a GPU's), picks
that device (sol.device_select.for_tensors): the frontend says where its example tensors are
(``Frontend.example_device``), core matches it with the devices' memories."""

from __future__ import annotations

from typing import Any

import pytest

from sol.device_select import for_tensors
from sol.errors import DeviceUnavailableError
from sol.memory import HOST
from sol.roles import Availability


class _Memory:
    def __init__(self, dlpack: tuple[int, int]) -> None:
        self.dlpack_device = dlpack


class _Device:
    def __init__(self, name: str, memory: Any, available: bool = True, emulated: bool = False) -> None:
        self.name, self.memory = name, memory
        self._avail = Availability(available, "" if available else "no hardware", emulated)

    def availability(self) -> Availability:
        return self._avail


def test_host_tensors_leave_the_choice_to_the_default() -> None:
    devices = [_Device("x86", HOST), _Device("gpu", _Memory((2, 0)))]
    assert for_tensors(None, devices) is None
    assert for_tensors((1, 0), devices) is None


def test_tensors_on_a_gpu_pick_the_device_on_that_memory() -> None:
    devices = [_Device("x86", HOST), _Device("gpu", _Memory((2, 0))), _Device("gpu1", _Memory((2, 1)))]
    assert for_tensors((2, 0), devices) == "gpu"
    assert for_tensors((2, 1), devices) == "gpu1"


def test_no_device_on_that_memory_is_a_clear_error_not_a_copy() -> None:
    devices = [_Device("x86", HOST), _Device("gpu", _Memory((2, 0)), available=False),
               _Device("emu", _Memory((2, 0)), emulated=True)]
    with pytest.raises(DeviceUnavailableError, match=r"DLPack device \(2, 0\).*gpu \(no hardware\)"):
        for_tensors((2, 0), devices)


def test_the_pytorch_frontend_says_where_its_tensors_are() -> None:
    torch = pytest.importorskip("torch")
    from sol_pytorch.frontend import PyTorchFrontend

    frontend = PyTorchFrontend()
    assert frontend.example_device((torch.zeros(2), (3, 4))) is None  # CPU tensors and shapes
    assert frontend.example_device((torch.zeros(2, device="meta"),)) is None  # shapes only: no memory
    if torch.cuda.is_available():
        assert frontend.example_device((torch.zeros(2), torch.zeros(2, device="cuda"))) == (2, 0)
