"""The x86 device measures this machine's roofline ceilings with oneDNN's own primitives
(sol_x86.ceilings, the ``sol_measure_ceilings`` hook), so a profile's "fraction of the roof" is
set against the kernels sol runs rather than a weaker reference."""

from __future__ import annotations

from pathlib import Path

import pytest

from sol import roofline
from sol_x86 import ceilings
from sol_x86.threads import openmp


def test_measure_with_onednn() -> None:
    c = ceilings.measure(quick=True)
    assert c.flops_per_s > 1e8 and c.bytes_per_s > 1e8
    assert c.threads == openmp().get_max_threads()
    assert "oneDNN fp32 matmul" in c.basis and "512x512x512" in c.basis
    assert c.measured_at.endswith("UTC")


def test_the_device_answers_the_hook_and_core_caches_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOL_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(ceilings, "SHAPES", ceilings.QUICK_SHAPES)  # the hook measures in full: keep it short
    monkeypatch.setattr(ceilings, "STREAM_ELEMS", ceilings.QUICK_STREAM_ELEMS)
    assert roofline.load("x86") is None
    measured = roofline.obtain("x86")
    assert measured is not None and "oneDNN" in measured.basis
    assert roofline.load("x86") == measured  # cached: later reports reuse it
    assert roofline.obtain("interp", measure=True) is None  # no plugin measures the interpreter
