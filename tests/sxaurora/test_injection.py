"""Model text never becomes code (issue #14, item 1) on device "ve": the VE source is C (clang's
VE target or ncc; trigraphs exist in strict ISO C), rendered and compiled here in emulation.

One PyTorch model carries the attacks (class name, submodule names, a ModuleDict key, a source
file name with line breaks) through both variants: "vel" (VE intrinsics) and "ncc" (plain C).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import sol  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent.parent))
from generated_source import assert_inert, files_under, sources  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:sol device 've' runs emulated")

PUTS = 'p\n__builtin_puts("SOLPWN_PUTS");\n//'
DICT_KEY = "k\n#error SOLPWN_DICT\n"
BACKSLASH = "w\\"
TRIGRAPH = "t??/"
BLOCK = "c*/ SOLPWN_BLOCK /*"
ODD = "n\0ul\x01é\u2028"
CLASS = "../../Net\n#error SOLPWN_CLASS\n*/ SOLPWN_CLASS2 /*\n#include </etc/passwd>\n??/\n\\"
FILE_NAME = "bad\n#error SOLPWN_FILE\nname*/.py"
MARKERS = ["SOLPWN", "#error", "/etc/passwd", "__builtin_puts"]

_INNER = '''
import torch
from torch import nn


class Inner(nn.Module):
    def forward(self, x):
        return torch.sigmoid(x) * 2
'''


def _forward(self: nn.Module, x: torch.Tensor) -> torch.Tensor:
    y = torch.tanh(getattr(self, PUTS)(self.fc(x)))  # a generated kernel with a fused epilogue
    y = self.d[DICT_KEY](y) * 3
    y = getattr(self, BACKSLASH)(y) + 0.5
    y = getattr(self, TRIGRAPH)(y) - 0.25
    y = getattr(self, BLOCK)(y)
    y = getattr(self, ODD)(y) + 1
    return self.inner(y) - 1


def _hostile_model(folder: Path) -> nn.Module:
    import importlib.util

    path = folder / FILE_NAME.replace("/", "_")
    path.write_text(_INNER)
    spec = importlib.util.spec_from_file_location("sol_test_hostile_ve", path)
    assert spec is not None and spec.loader is not None
    inner = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(inner)
    model = type(CLASS, (nn.Module,), {"forward": _forward})()
    model.fc = nn.Linear(8, 5)
    model.add_module(PUTS, nn.ReLU())
    model.d = nn.ModuleDict({DICT_KEY: nn.Hardtanh()})
    model.add_module(BACKSLASH, nn.SiLU())
    model.add_module(TRIGRAPH, nn.LeakyReLU(0.1))
    model.add_module(BLOCK, nn.Sigmoid())
    model.add_module(ODD, nn.Softsign())
    model.inner = inner.Inner()
    return model.eval()


@pytest.mark.parametrize("variant", ["vel", "ncc"])
def test_hostile_names_stay_comments_on_ve(variant: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    debug = tmp_path / "a" / "b" / "debug"
    monkeypatch.setenv("SOL_DEBUG_DIR", str(debug))
    model = _hostile_model(code_dir)
    x = torch.randn(3, 8)
    fast = sol.optimize(model, x, device="ve", ve_variant=variant)
    with torch.no_grad():
        np.testing.assert_allclose(fast(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)
    outside = [p for p in files_under(tmp_path) if debug not in p.parents and code_dir not in p.parents]
    assert outside == []
    found = sources(debug)
    assert any(p.name == "network.c" for p in found)
    for text in found.values():
        assert_inert(text, MARKERS)
