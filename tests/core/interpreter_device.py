"""The reference interpreter device, now shipped in the conformance kit
(:mod:`sol.testing.interpreter`); this module stays a plugin the tests register by name
(``sol.plugins.register(interpreter_device, ...)``), with the same hooks and device."""

from __future__ import annotations

from sol.testing.interpreter import (  # noqa: F401  (the plugin's hook and declaration)
    DEVICE,
    FUSIBLE,
    SOL_PLUGIN_API,
    InterpreterDevice,
    TextCompiler,
    run_plan,
    sol_register_devices,
)
