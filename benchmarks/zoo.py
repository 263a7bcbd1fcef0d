"""The model zoo lives in the sol-benchmarks package (``sol_benchmarks.zoo``), so that it ships
in the wheel. This file keeps the repository's ``import zoo`` (the tests) and
``cd benchmarks && sol inspect zoo:resnet18 ...`` working: importing it gives that module itself,
so classes, factories and private helpers are the same objects under either name."""

from __future__ import annotations

import os
import sys

try:
    from sol_benchmarks import zoo as _zoo
except ImportError:  # a checkout where sol-benchmarks is not installed: take its source tree
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))
    from sol_benchmarks import zoo as _zoo

sys.modules[__name__] = _zoo
