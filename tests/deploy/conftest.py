"""tests/deploy: ``sol.deploy`` and ``sol deploy``; deploy_helpers builds and runs what they write."""

from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.dirname(__file__))  # deploy_helpers
