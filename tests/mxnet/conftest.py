"""MXNet frontend tests. MXNet 1.9.1 needs numpy<1.24, so they run in their own environment
(``scripts/env_mxnet.sh`` creates ``.venv-mxnet``): ``.venv-mxnet/bin/python -m pytest tests/mxnet``.
Every test module skips, saying why, where ``mxnet`` is not importable (the main environment)."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # mx_helpers
