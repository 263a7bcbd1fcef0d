"""Suite-wide settings: a private compile cache per test session (so a run never reads a stale
user cache), and plugin state reset around tests that register their own plugins."""

from __future__ import annotations

import os
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # devices: which devices a test runs on

# The conformance kit's plugin: --sol-device / --sol-quick, the kit's device parametrization
# (tests/conformance runs the kit). sol-core's pytest11 entry point loads the same module; this
# line covers a checkout installed before the entry point existed (pytest loads it once).
pytest_plugins = ["sol.testing.plugin"]

_CACHE = tempfile.mkdtemp(prefix="sol-test-cache-")
os.environ.setdefault("SOL_CACHE_DIR", _CACHE)


@pytest.fixture
def fresh_plugins(monkeypatch: pytest.MonkeyPatch):
    """Plugin manager with no entry points loaded: the test registers what it needs."""
    import sol.plugins

    monkeypatch.setenv("SOL_PLUGIN_AUTOLOAD", "0")
    sol.plugins.reset()
    yield sol.plugins
    sol.plugins.reset()
