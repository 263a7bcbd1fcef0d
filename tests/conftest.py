"""Suite-wide settings: a private compile cache per test session (so a run never reads a stale
user cache), and plugin state reset around tests that register their own plugins."""

from __future__ import annotations

import os
import sys
import tempfile

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # devices: which devices a test runs on

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


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--sol-device", action="append", default=[],
                     help="device(s) to run the conformance suite on (default: every available one)")
