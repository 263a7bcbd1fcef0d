"""sol.ops.spatial.resize_table picks the source pixels PyTorch's CPU kernels pick.

The op tests (test_ops.py, family "upsample") compare whole results on every device; this checks
the index rule alone over many sizes, scale factors and modes, where a float64 rule or an
FMA-contracted one would pick a neighbour off by one: each input pixel holds its own index, so
PyTorch's output says exactly which pixel it read.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sol.ops.spatial import resize_table

SIZES = [1, 2, 3, 5, 7, 13, 17, 32, 41]
SCALES = [0.3, 0.5, 0.6667, 0.77, 1.3333, 1.5, 1.7, 2.0, 2.2, 2.5, 3.0, 3.3, 4.0]


def _source_columns(w: int, mode: str, **kw: object) -> np.ndarray:
    """Which input column each output column of ``F.interpolate`` reads (nearest modes)."""
    x = torch.arange(w, dtype=torch.float32).repeat(2, 3, 4, 1)  # (N, C, H, W): C > 1, plain NCHW
    return F.interpolate(x, mode=mode, **kw)[0, 0, 0].numpy().astype(np.int64)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["nearest", "nearest-exact"])
def test_nearest_source_indices(mode: str) -> None:
    for w in SIZES:
        for s in [s for s in SCALES if int(w * s) >= 1]:  # PyTorch's floor(w * s) output width
            want = _source_columns(w, mode, scale_factor=(1, s))
            got = resize_table(w, len(want), mode.replace("-", "_"), False, s).i0
            np.testing.assert_array_equal(got, want, err_msg=f"{mode} width {w} scale_factor {s}")
        for out in (1, 3, w, 2 * w, 3 * w + 1, 29):
            want = _source_columns(w, mode, size=(4, out))
            got = resize_table(w, out, mode.replace("-", "_"), False, None).i0
            np.testing.assert_array_equal(got, want, err_msg=f"{mode} width {w} to {out}")


@pytest.mark.parametrize("align_corners", [False, True])
def test_bilinear_weights(align_corners: bool) -> None:
    """Random rows: the table's blend of each row equals PyTorch's to float32 rounding (a wrong
    neighbour or weight would be off by far more)."""
    rng = np.random.default_rng(0)
    for w in SIZES:
        x = rng.standard_normal((1, 2, 1, w)).astype(np.float32)
        configs = [{"scale_factor": (1, s)} for s in SCALES if int(w * s) >= 1]
        for kw in configs + [{"size": (1, o)} for o in (1, 2, w, 2 * w + 1, 30)]:
            want = F.interpolate(torch.from_numpy(x), mode="bilinear", align_corners=align_corners, **kw)
            want_row = want[0, 0, 0].numpy()
            scale = kw["scale_factor"][1] if "scale_factor" in kw else None  # type: ignore[index]
            t = resize_table(w, len(want_row), "bilinear", align_corners, scale)
            got = x[0, 0, 0, t.i0] * t.l0 + x[0, 0, 0, t.i1] * t.l1
            np.testing.assert_allclose(got, want_row, rtol=1e-5, atol=2e-5, err_msg=f"width {w} {kw}")
