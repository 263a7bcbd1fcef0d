"""The conformance kit (sol.testing) as a vendor runs it, ``pytest --pyargs sol.testing
--sol-device NAME``, on a device that is wrong on purpose: the kit must fail where the device
computes wrong numbers or shares output buffers between concurrent calls, and skip (with the
device's reason) the ops it declares unsupported. And a declared-unsupported op through
``sol.optimize`` is a clear UnsupportedOpError, not a crash in the device's code generation."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import sol
from sol.errors import UnsupportedOpError
from sol.ir import Graph, TensorType
from sol.plugin_api import DeviceRegistry, hookimpl
from sol.testing.interpreter import InterpreterDevice

# A vendor's device with two bugs: `add` (its conformance graph) is off by 0.01, and every call of a program returns
# the same output arrays (a second thread's call overwrites the first one's results).
BROKEN_DEVICE = '''
from __future__ import annotations

import numpy as np

import sol.plugins
from sol.plugin_api import hookimpl
from sol.testing import interpreter

SOL_PLUGIN_API = ">=1.0,<2"
SHARED = {}


class Broken(interpreter.InterpreterDevice):
    name = "broken"

    def load(self, artifact, plan, source):
        program = super().load(artifact, plan, source)
        run = program._runner

        def wrong(xs):
            outs = run(xs)
            if plan.graph.name == "conformance_add":
                outs = [o + np.float32(0.01) for o in outs]
            kept = SHARED.setdefault(plan.graph.name, [np.empty_like(o) for o in outs])
            for k, o in zip(kept, outs):
                k[...] = o
            return kept
        program._runner = wrong
        return program


@hookimpl
def sol_register_devices(registry):
    registry.register(Broken(fusible=None, unsupported={"softmax": "no reductions on this chip yet"}))
'''
CONFTEST = '''
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))
os.environ["SOL_PLUGIN_AUTOLOAD"] = "0"  # only the broken device (and core)

import broken_device
import sol.plugins

sol.plugins.register(broken_device, "broken")
'''


def _run_kit(tmp_path: Path, *args: str) -> tuple[str, dict[str, str]]:
    """Run the kit in a subprocess from ``tmp_path`` (its conftest registers the broken device);
    the output and each test's outcome (``-rA`` lines)."""
    (tmp_path / "broken_device.py").write_text(BROKEN_DEVICE)
    (tmp_path / "conftest.py").write_text(CONFTEST)
    cmd = [sys.executable, "-m", "pytest", "-p", "sol.testing.plugin", "--pyargs", "sol.testing", "-q", "-rA",
           "-p", "no:cacheprovider", "--rootdir", str(tmp_path), *args]
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    text = out.stdout + out.stderr
    outcomes = {}
    for m in re.finditer(r"^(PASSED|FAILED|SKIPPED \[\d+\]|ERROR) (\S+)", text, re.M):
        outcomes[m.group(2).split("::")[-1]] = m.group(1).split(" ")[0]
    return text, outcomes


def test_kit_fails_a_wrong_device_and_skips_what_it_declares_unsupported(tmp_path: Path) -> None:
    text, outcomes = _run_kit(tmp_path, "--sol-device", "broken", "--sol-quick",
                              "-k", "add or softmax or threads or training")
    assert outcomes.get("test_op[broken-add]") == "FAILED", text
    assert outcomes.get("test_special_values[broken-add]") == "FAILED", text
    assert outcomes.get("test_threads[broken]") == "FAILED", text  # outputs shared between calls
    assert outcomes.get("test_training[broken]") == "PASSED", text  # no add, no softmax: right
    assert "broken declares 'softmax' unsupported: no reductions on this chip yet" in text, text
    for skipped in ("test_op[broken-softmax]", "test_special_values[broken-softmax]"):
        assert skipped not in outcomes or outcomes[skipped] == "SKIPPED", text
    assert "[broken-softmax]" not in " ".join(k for k, v in outcomes.items() if v != "SKIPPED"), text
    assert re.search(r"\d+ skipped", text) and "3 failed" in text, text


def test_kit_runs_the_reference_device_by_default(tmp_path: Path) -> None:
    """No --sol-device: every installed device (here only the broken one) plus ``interp``,
    registered by the kit for its tests, which passes."""
    text, outcomes = _run_kit(tmp_path, "--sol-quick", "-k", "interp and (add or threads)")
    assert outcomes.get("test_op[interp-add]") == "PASSED", text
    assert outcomes.get("test_threads[interp]") == "PASSED", text
    assert "failed" not in text, text


def test_a_device_that_is_not_installed_is_a_skip_that_says_so(tmp_path: Path) -> None:
    text, _ = _run_kit(tmp_path, "--sol-device", "acme", "-k", "threads")
    assert "acme is not installed (installed devices: broken)" in text, text


class _Plugin:
    SOL_PLUGIN_API = ">=1.0,<2"

    def __init__(self, device: InterpreterDevice) -> None:
        self.device = device

    @hookimpl
    def sol_register_devices(self, registry: DeviceRegistry) -> None:
        registry.register(self.device)


def test_optimize_refuses_an_op_the_device_declares_unsupported(fresh_plugins) -> None:  # type: ignore[no-untyped-def]
    device = InterpreterDevice(fusible=None, unsupported={"softmax": "no reductions on this chip yet"})
    fresh_plugins.register(_Plugin(device), "chip")
    g = Graph("net")
    x = g.add_input("x", TensorType((2, 5)))
    h = g.add_node("relu", [x]).output
    g.outputs = [g.add_node("softmax", [h], {"axis": 1}, source="model.py:12").output]
    with pytest.raises(UnsupportedOpError, match=r"op 'softmax' at model\.py:12 is not supported by device "
                                                 r"'interp': no reductions on this chip yet") as info:
        sol.optimize(g, np.zeros((2, 5), np.float32), device="interp")
    assert info.value.op == "softmax" and info.value.source == "model.py:12"
    assert device.loads == 0  # refused before planning: nothing rendered, compiled or loaded
