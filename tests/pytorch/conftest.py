"""PyTorch frontend tests: run on every available sol device (``--sol-device NAME`` to pick).

With no device installed (or ``--sol-device interp``), the NumPy interpreter device from
tests/core is registered explicitly, as a third-party plugin would be, so the frontend is tested
end to end before any real device exists.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

import pytest

HERE = os.path.dirname(__file__)
sys.path.insert(0, HERE)  # op_cases: the op tests' case machinery
sys.path.insert(0, os.path.join(HERE, "..", "..", "benchmarks"))  # zoo: models in plain torch.nn
sys.path.insert(0, os.path.join(HERE, "..", "core"))  # interpreter_device

INTERP = "interp"


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "device" in metafunc.fixturenames:
        from devices import device_params

        metafunc.parametrize("device", device_params(metafunc.config, fallback=INTERP), indirect=True)


@pytest.fixture
def device(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The device name to compile for; the interpreter device is registered on demand."""
    import sol.plugins

    name = request.param
    if name != INTERP or INTERP in sol.plugins.roles().devices:
        yield name
        return
    import sol_pytorch.plugin

    import interpreter_device

    monkeypatch.setenv("SOL_PLUGIN_AUTOLOAD", "0")
    sol.plugins.reset()
    sol.plugins.register(sol_pytorch.plugin, "pytorch")
    sol.plugins.register(interpreter_device, INTERP)
    yield name
    sol.plugins.reset()
