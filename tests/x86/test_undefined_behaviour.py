"""Generated x86 code free of undefined behaviour, checked with GCC's UndefinedBehaviorSanitizer.

Undefined behaviour in generated code is a wrong number waiting for a compiler to exploit it:
GCC 12 already deleted a whole group's call over what it took for a store through a null pointer
(test_gcc_null_base.py). Here a few networks whose loops see NaN, infinities and huge values
(recurrent cells with their own exp, grid_sample's clamped float-to-index conversions and
gathers, element-wise transcendental ops and casts) are compiled with ``-fsanitize=undefined``
(``SOL_CXXFLAGS``) in a fresh process and cache, run, and checked against eager; the sanitizer
must report nothing. It found the recurrent cells' exp converting NaN to int and shifting the
negative result (sol_x86/templates/recurrent.j2).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sol_x86 import compiler

SCRIPT = textwrap.dedent("""
    import math
    import torch
    import torch.nn.functional as F
    from torch import nn

    import sol

    nan, inf = math.nan, math.inf


    class Recurrent(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(6, 5, num_layers=2, batch_first=True)
            self.gru = nn.GRU(6, 4, batch_first=True, bidirectional=True)

        def forward(self, x):
            return self.lstm(x)[0], self.gru(x)[0]


    class Sample(nn.Module):
        def forward(self, image, grid):
            return tuple(F.grid_sample(image, grid, mode=mode, padding_mode=pad, align_corners=corners)
                         for mode in ("nearest", "bilinear", "bicubic") for pad in ("zeros", "border", "reflection")
                         for corners in (False, True))


    class Elementwise(nn.Module):
        def forward(self, x):
            return (torch.sigmoid(x), torch.tanh(x), F.silu(x), F.gelu(x), torch.exp(x), torch.log(x.abs()),
                    torch.erf(x), x.to(torch.int64), x.to(torch.int32), x.to(torch.uint8), torch.round(x),
                    torch.softmax(x, -1), x.clamp(-3, 3), torch.where(x > 0, x, x * 0.1))


    torch.manual_seed(0)
    special = torch.tensor([nan, inf, -inf, 1e30, -1e30, 88.7, -104.0, 0.5, -0.5, 2.5])
    seq = torch.randn(2, 7, 6)
    seq[0, 2, :] = torch.tensor([nan, inf, -inf, 1e30, -1e30, 3.0])
    grid = torch.rand(2, 4, 10, 2) * 2.6 - 1.3
    grid[0, 0, :, 0] = special
    grid[1, 1, :, 1] = special
    values = torch.randn(3, 40) * 5
    values[0, :10] = special
    cases = [(Recurrent(), (seq,)), (Sample(), (torch.randn(2, 3, 5, 6), grid)), (Elementwise(), (values,))]
    for model, inputs in cases:
        model.eval()
        fast = sol.optimize(model, *inputs, device="x86", fallback=False)
        with torch.no_grad():
            got, want = fast(*inputs), model(*inputs)
        for a, b in zip(torch.utils._pytree.tree_leaves(got), torch.utils._pytree.tree_leaves(want)):
            if a.dtype.is_floating_point:
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5, equal_nan=True)
            else:
                assert torch.equal(a, b), type(model).__name__
    print("ran", len(cases))
""")


def _sanitizer_links(tmp_path: Path) -> bool:
    cxx = compiler.cxx()
    if cxx is None:
        return False
    src = tmp_path / "probe.cpp"
    src.write_text("int main() { return 0; }\n")
    done = subprocess.run([cxx, "-fsanitize=undefined", "-o", str(tmp_path / "probe"), str(src)], capture_output=True)
    return done.returncode == 0


def test_generated_code_has_no_undefined_behaviour(tmp_path: Path) -> None:
    if not _sanitizer_links(tmp_path):
        pytest.skip("the C++ compiler cannot link -fsanitize=undefined (no UBSan runtime installed)")
    logs = tmp_path / "ubsan"
    logs.mkdir()
    env = dict(os.environ, SOL_CACHE_DIR=str(tmp_path / "cache"), SOL_CXXFLAGS="-fsanitize=undefined",
               UBSAN_OPTIONS=f"log_path={logs / 'report'}:print_stacktrace=1")
    script = tmp_path / "networks.py"
    script.write_text(SCRIPT)
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "ran 3" in done.stdout
    reports = [p.read_text() for p in logs.iterdir()]
    assert not reports, "\n".join(reports)[:4000]
