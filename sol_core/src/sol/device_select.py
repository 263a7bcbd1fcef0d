"""``sol.device.set("x86")``: the default device for later ``optimize`` calls."""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from sol.config import config
from sol.errors import DeviceUnavailableError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sol.roles import Device

_index = 0
_warned_emulated: set[str] = set()


def checked(device: Device, stacklevel: int = 3) -> Device:
    """Raise if ``device`` cannot run here; warn once per process if it runs emulated."""
    avail = device.availability()
    if not avail.available:
        raise DeviceUnavailableError(f"device {device.name!r} is not available here: {avail.detail}")
    if avail.emulated and device.name not in _warned_emulated:
        _warned_emulated.add(device.name)
        warnings.warn(f"sol device {device.name!r} runs emulated: {avail.detail}", stacklevel=stacklevel + 1)
    return device


def set(name: str, index: int = 0) -> None:  # noqa: A001 - mirrors the seed's API
    global _index
    from sol.plugins import roles

    checked(roles().devices.get(name))
    config["device"] = name
    _index = index


def index() -> int:
    """The device index given to :func:`set` (0 by default): which card of a multi-device host a
    device plugin should use."""
    return _index


def get() -> str:
    """The device ``optimize`` uses when none is named."""
    from sol.plugins import roles

    name = config["device"]
    devices = roles().devices
    if name:
        return name
    for d in devices:
        if d.availability().available and not d.availability().emulated:
            return d.name
    for d in devices:
        if d.availability().available:
            return d.name
    raise DeviceUnavailableError(
        "no sol device is available; installed devices: "
        + (", ".join(f"{d.name} ({d.availability().detail})" for d in devices) or "none (pip install sol-device-x86)"))


def for_tensors(dlpack: tuple[int, int] | None, devices: Iterable[Device] | None = None) -> str | None:
    """The device for example tensors that live on DLPack device ``dlpack`` (what the frontend's
    :meth:`~sol.roles.Frontend.example_device` says) when the user named none: the available,
    not emulated, device whose memory is that one (a GPU's tensors: that GPU's device). None
    for host tensors (the default device applies); DeviceUnavailableError where no device runs
    on that memory, rather than a copy the user did not ask for."""
    from sol.memory import DLPACK_CPU
    from sol.plugins import roles

    if dlpack is None or dlpack[0] == DLPACK_CPU:  # host tensors: the default device's business
        return None

    candidates = list(roles().devices if devices is None else devices)
    for d in candidates:
        avail = d.availability()
        if avail.available and not avail.emulated and d.memory.dlpack_device == tuple(dlpack):
            return d.name
    listed = ", ".join(f"{d.name} ({d.availability().detail or 'available'})" for d in candidates) or "none"
    raise DeviceUnavailableError(f"the example inputs live on DLPack device {tuple(dlpack)}, and no available sol "
                                 f"device runs on that memory (installed devices: {listed}); name one with "
                                 f"optimize(..., device=...) or sol.device.set(name, index), or pass host tensors")
