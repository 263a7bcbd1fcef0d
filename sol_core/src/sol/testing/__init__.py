"""sol's conformance kit: the tests a device must pass, runnable against any installed device.

::

    pip install "sol-core[testing]" sol-device-acme
    pytest --pyargs sol.testing --sol-device acme          # the whole kit on one device
    pytest --pyargs sol.testing --sol-device acme --sol-quick   # a smoke test in a minute

Every registered op (all of its cases: dtypes, broadcasting, attributes), the same again with
NaN, +inf, -inf and -0.0 in the inputs, fusion patterns, a training graph (forward and backward
through :mod:`sol.autodiff`) and one program called from four threads at once are compiled on
the device and compared with the ops' NumPy references. Ops a device declares unsupported
(:attr:`sol.roles.DeviceCapabilities.unsupported_ops`) are skipped with the device's reason.

Without ``--sol-device`` the kit runs on every installed device and on the reference device
(:mod:`sol.testing.interpreter`, ``interp``), which runs each plan group with the NumPy
references: its passing checks the kit and core's planner on this install.

The pytest plugin (:mod:`sol.testing.plugin`: the options, the device parametrization) loads
through sol-core's ``pytest11`` entry point; a source checkout without that entry point runs
``pytest -p sol.testing.plugin --pyargs sol.testing``. Ops a plugin registers itself get their
cases with :func:`sol.testing.cases.add_cases`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

REFERENCE_DEVICE = "interp"
"""The name of the reference device (:mod:`sol.testing.interpreter`)."""


@contextmanager
def reference_device() -> Iterator[str]:
    """Register the reference device next to the installed plugins for the duration of the
    block, and yield its name. sol registers plugins before its first use, so this starts the
    plugin state over (entry points load again, lazily) on the way in and on the way out; a
    device a test registered by hand with :func:`sol.plugins.register` is gone afterwards."""
    import sol.plugins
    from sol.testing import interpreter

    if REFERENCE_DEVICE in sol.plugins.roles().devices:
        yield REFERENCE_DEVICE
        return
    sol.plugins.reset()
    try:
        sol.plugins.register(interpreter, REFERENCE_DEVICE)
        yield REFERENCE_DEVICE
    finally:
        sol.plugins.reset()


__all__ = ["REFERENCE_DEVICE", "reference_device"]
