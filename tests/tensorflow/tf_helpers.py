"""Shared helpers of the TensorFlow frontend tests."""

from __future__ import annotations

from typing import Any

import numpy as np


def assert_close(got: Any, ref: Any, rtol: float, atol: float = 1e-5) -> None:
    got, ref = np.asarray(got), np.asarray(ref)
    assert got.shape == ref.shape and got.dtype == ref.dtype, (got.shape, got.dtype, ref.shape, ref.dtype)
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol)
