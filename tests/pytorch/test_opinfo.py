"""PyTorch's OpInfo database against sol (issue #22 item 3): every op with float32 samples but
those ``opinfo_exclusions.txt`` lists (sol refuses them, with the reason) compiles whole
(``fallback=False``) and matches eager, on the reference device ``interp`` (core's plan run with
the ops' NumPy references: the frontend's conversion, core's passes and planner, no C compile).
The suite tries each op's first sample (``opinfo_scan.py`` tries three per op and rewrites the
exclusions); a refusal here means an op that used to compile no longer does.
"""

from __future__ import annotations

from collections.abc import Iterator

import opinfo_scan
import pytest

OPS = {opinfo_scan.op_name(op): op for op in opinfo_scan.op_db()}
EXCLUDED = opinfo_scan.excluded()


@pytest.fixture(autouse=True, scope="module")
def _reference_device() -> Iterator[str]:
    from sol.testing import reference_device

    with reference_device() as name:
        yield name


@pytest.mark.parametrize("name", [n for n in OPS if n not in EXCLUDED])
def test_op_compiles_and_matches_eager(name: str) -> None:
    result = opinfo_scan.check_op(OPS[name], "interp", limit=1)
    assert result.status in ("ok", "nosample"), f"{result.status}: {result.why}"


def test_every_exclusion_names_an_op_and_gives_a_reason() -> None:
    assert not [n for n in EXCLUDED if n not in OPS], "exclusions naming no OpInfo op"
    assert all(EXCLUDED.values()), "every exclusion says why"
