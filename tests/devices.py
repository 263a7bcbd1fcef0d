"""Which sol devices a test runs on: ``--sol-device NAME`` (repeatable), else every installed
one. An installed device that cannot run here is a skip that says why (no hardware); a device
that is available always runs."""

from __future__ import annotations

from typing import Any

import pytest


def device_params(config: pytest.Config, fallback: str | None = None) -> list[Any]:
    from sol.plugins import roles

    names = config.getoption("--sol-device") or roles().devices.names() or ([fallback] if fallback else [])
    params = []
    for name in names:
        why = ""
        if name in roles().devices:
            avail = roles().devices.get(name).availability()
            why = "" if avail.available else f"{name} unavailable: {avail.detail}"
        elif name != fallback:
            why = f"{name} is not installed"
        params.append(pytest.param(name, id=name, marks=pytest.mark.skip(reason=why) if why else ()))
    return params
