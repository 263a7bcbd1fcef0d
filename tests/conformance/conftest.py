"""Parametrize conformance tests over devices: --sol-device NAME, else every available one."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))


def _devices(config) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    from sol.plugins import roles

    names = config.getoption("--sol-device") or roles().devices.names()
    out = []
    for name in names:
        a = roles().devices.get(name).availability()
        out.append((name, "" if a.available else a.detail))
    return out


def pytest_generate_tests(metafunc):  # type: ignore[no-untyped-def]
    if "device" in metafunc.fixturenames:
        import pytest

        params = [pytest.param(n, id=n, marks=pytest.mark.skip(reason=f"{n} unavailable: {why}") if why else ())
                  for n, why in _devices(metafunc.config)]
        metafunc.parametrize("device", params)
