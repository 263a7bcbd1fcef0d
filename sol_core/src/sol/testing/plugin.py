"""The conformance kit's pytest plugin: its options and the parametrization of its tests.

Loaded by sol-core's ``pytest11`` entry point in every pytest run of an environment with sol-core,
so it is careful: importing it imports no sol module, it adds two ``--sol-*`` options, and it
touches only tests that ask for the kit's fixtures (``sol_device``, ``sol_op``, ``sol_pattern``),
never a project's own ``device`` fixture.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("sol", "sol conformance kit (pytest --pyargs sol.testing)")
    group.addoption("--sol-device", action="append", default=[], metavar="NAME",
                    help="device to run sol's conformance kit on (repeatable; default: every installed "
                         "device and the reference device 'interp')")
    group.addoption("--sol-quick", action="store_true", default=False,
                    help="run the kit on a few representative ops and patterns only (a smoke test)")


def pytest_report_header(config: pytest.Config) -> list[str]:
    """Which devices the kit runs on; only when asked for devices (``--sol-device``): in another
    project's pytest run the plugin must not load sol's plugins."""
    if not config.getoption("sol_device"):
        return []
    import sol

    names = [str(p.id) for p in device_params(config)]
    mode = "quick" if config.getoption("sol_quick") else "full"
    return [f"sol {sol.__version__} conformance kit ({mode}) on: {', '.join(names)}"]


def device_params(config: pytest.Config) -> list[Any]:
    """``--sol-device`` names, else every installed device plus the reference device. A named
    device that is not installed, or cannot run here, is a skip saying why."""
    from sol.plugins import roles
    from sol.testing import REFERENCE_DEVICE

    names = list(dict.fromkeys(config.getoption("sol_device"))) or [*roles().devices.names(), REFERENCE_DEVICE]
    return [device_param(name, REFERENCE_DEVICE) for name in dict.fromkeys(names)]


def device_param(name: str, registered_later: str | None = None) -> Any:
    """``name`` as a pytest parameter: a skip saying why where the device is not installed or
    cannot run here (no hardware). ``registered_later`` is a device the tests register themselves
    (the reference device): not installed, yet never a skip."""
    from sol.plugins import roles

    why = ""
    if name in roles().devices:
        avail = roles().devices.get(name).availability()
        why = "" if avail.available else f"{name} unavailable: {avail.detail}"
    elif name != registered_later:
        why = f"{name} is not installed (installed devices: {', '.join(roles().devices.names()) or 'none'})"
    return pytest.param(name, id=name, marks=pytest.mark.skip(reason=why) if why else ())


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    names = metafunc.fixturenames
    if not {"sol_device", "sol_op", "sol_pattern"} & set(names):
        return
    from sol.testing.cases import CASES, PATTERNS, QUICK_OPS, QUICK_PATTERNS

    quick = metafunc.config.getoption("sol_quick")
    if "sol_device" in names:
        metafunc.parametrize("sol_device", device_params(metafunc.config), indirect=True, scope="module")
    if "sol_op" in names:
        metafunc.parametrize("sol_op", [op for op in sorted(CASES) if not quick or op in QUICK_OPS])
    if "sol_pattern" in names:
        metafunc.parametrize("sol_pattern", [p for p in sorted(PATTERNS) if not quick or p in QUICK_PATTERNS])


@pytest.fixture(scope="module")
def sol_device(request: pytest.FixtureRequest) -> Iterator[str]:
    """The device under test; the reference device is registered for as long as it is used."""
    from sol.testing import REFERENCE_DEVICE, reference_device

    name: str = request.param
    if name != REFERENCE_DEVICE:
        yield name
        return
    with reference_device() as ref:
        yield ref
