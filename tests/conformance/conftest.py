"""Parametrize conformance tests over devices: --sol-device NAME, else every available one."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))


def pytest_generate_tests(metafunc):  # type: ignore[no-untyped-def]
    if "device" in metafunc.fixturenames:
        from devices import device_params

        metafunc.parametrize("device", device_params(metafunc.config))
