"""sol's benchmark harness (``sol bench``).

Installed as a sol plugin: it adds the ``bench`` command to the ``sol`` CLI and records the
machine's ceilings (measured by the x86 device) with each run. Importing this package imports
no framework; the engines run in subprocesses (:mod:`sol_benchmarks.worker`).
"""

from __future__ import annotations

__all__ = ["ENGINES"]

ENGINES = ("eager", "torch.compile", "onnxruntime", "sol")
"""The engines a benchmark compares, in table order."""
