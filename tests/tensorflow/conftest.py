"""TensorFlow frontend tests, on x86 by default (``--sol-device NAME`` to pick others); the whole
networks of test_networks.py run on every installed device (issue #4: "on x86 and on every other
installed device"), the op-level tests on x86 to keep the suite short.

The whole folder is skipped, saying why, only where TensorFlow is not importable.
"""

from __future__ import annotations

import os
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, os.path.dirname(__file__))  # tf_helpers

try:
    import tensorflow  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    pytest.skip(f"tensorflow is not importable ({exc}); pip install tensorflow-cpu to run these tests",
                allow_module_level=True)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "device" in metafunc.fixturenames:
        from devices import device_params

        every = metafunc.module.__name__.rsplit(".", 1)[-1] == "test_networks"
        names = metafunc.config.getoption("--sol-device") or (None if every else ["x86"])
        params = [p for p in device_params(metafunc.config) if names is None or p.id in names] or names
        metafunc.parametrize("device", params)
