"""Device conformance in this repository: sol-core's shipped kit (``sol.testing``), run here on
every installed device and on the reference device ``interp`` (``--sol-device NAME`` picks).
A vendor runs the same tests with ``pytest --pyargs sol.testing --sol-device NAME``; the kit's
pytest plugin (options, device parametrization) is loaded by the root conftest."""

from __future__ import annotations

from sol.testing.graphs import assert_special_equal, op_graph
from sol.testing.test_conformance import (  # noqa: F401  (collected here)
    test_every_registered_op_has_cases,
    test_op,
    test_pattern,
    test_special_values,
    test_threads,
    test_training,
)

_graph = op_graph  # the name tests/sxaurora/test_ncc_conformance.py imports

__all__ = ["_graph", "assert_special_equal"]
