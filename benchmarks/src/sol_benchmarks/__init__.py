"""sol's benchmark harness (``sol bench``) and this machine's roofline ceilings.

Installed as a sol plugin: it adds the ``bench`` command to the ``sol`` CLI and measures the
ceilings that ``sol inspect --profile`` sets each group against. Importing this package imports
no framework; the engines run in subprocesses (:mod:`sol_benchmarks.worker`).
"""

from __future__ import annotations

__all__ = ["ENGINES"]

ENGINES = ("eager", "torch.compile", "onnxruntime", "sol")
"""The engines a benchmark compares, in table order."""
