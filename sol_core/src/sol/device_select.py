"""``sol.device.set("x86")``: the default device for later ``optimize`` calls."""

from __future__ import annotations

from sol.config import config
from sol.errors import DeviceUnavailableError

_index = 0


def set(name: str, index: int = 0) -> None:  # noqa: A001 - mirrors the seed's API
    global _index
    from sol.plugins import roles

    device = roles().devices.get(name)
    avail = device.availability()
    if not avail.available:
        raise DeviceUnavailableError(f"device {name!r} is not available here: {avail.detail}")
    config["device"] = name
    _index = index


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
