"""Which sol devices a test runs on: ``--sol-device NAME`` (repeatable), else every installed
one. An installed device that cannot run here is a skip that says why (no hardware); a device
that is available always runs. The skip rule is the conformance kit's (sol.testing.plugin)."""

from __future__ import annotations

from typing import Any

import pytest

from sol.testing.plugin import device_param


def device_params(config: pytest.Config, fallback: str | None = None) -> list[Any]:
    from sol.plugins import roles

    names = config.getoption("--sol-device") or roles().devices.names() or ([fallback] if fallback else [])
    return [device_param(name, fallback) for name in names]
