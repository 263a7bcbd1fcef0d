"""ONNX frontend tests, on x86 unless a test says otherwise; ONNX's own backend node tests run on
sol's reference device ``interp`` (every claimed case, no C compile) and a representative few on
x86 (test_backend.py says why).

The whole folder is skipped, saying why, only where ``onnx`` is not importable.
"""

from __future__ import annotations

import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))  # onnx_helpers

try:
    import onnx  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    pytest.skip(f"onnx is not importable ({exc}); pip install onnx to run these tests", allow_module_level=True)
