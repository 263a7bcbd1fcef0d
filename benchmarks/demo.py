"""``python benchmarks/demo.py`` (what ``scripts/demo.sh`` runs): the demo of ``sol demo``, which
lives in the sol-benchmarks package (``sol_benchmarks.demo``) so that it ships in the wheel."""

from __future__ import annotations

import os
import sys

try:
    from sol_benchmarks.demo import main
except ImportError:  # a checkout where sol-benchmarks is not installed: take its source tree
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "src"))
    from sol_benchmarks.demo import main

if __name__ == "__main__":
    sys.exit(main())
