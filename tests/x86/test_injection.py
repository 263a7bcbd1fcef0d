"""Model text never becomes code (issue #14, item 1): hostile class names, submodule names,
ModuleDict keys and source file names, through ``sol.pytorch.optimize`` on x86.

Each model puts many attacks into one compiled network (g++ runs once per model): the network
must compile, compute what eager PyTorch computes, keep its sources inside ``SOL_DEBUG_DIR``,
and its generated C++ must hold the attack text only inside comments and string literals.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from sol.pytorch import optimize  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent.parent))
from generated_source import assert_inert, files_under, sources  # noqa: E402

PUTS = 'p\n__builtin_puts("SOLPWN_PUTS");\n//'  # a statement in the network, run every forward
DICT_KEY = "k\n#error SOLPWN_DICT\n"  # an nn.ModuleDict key
BACKSLASH = "w\\"  # a backslash ending a // comment joins the next line into it: wrong results
TRIGRAPH = "t??/"  # ??/ is a backslash in strict ISO C
BLOCK = "c*/ SOLPWN_BLOCK /*"  # ends a /* */ comment
ODD = "n\0ul\x01\x7fé\u2028"  # NUL, controls, non-ASCII, a Unicode line separator
# A class name at file scope: #error, #include of a file that is no header, a trigraph, a
# trailing backslash; "../../" to leave SOL_DEBUG_DIR.
CLASS = "../../Net\n#error SOLPWN_CLASS\n\n#include </etc/passwd>\n??/\n*/ \\"
FILE_NAME = "bad\n#error SOLPWN_FILE\nname.py"  # a source file name with line breaks
MARKERS = ["SOLPWN", "#error", "/etc/passwd", "__builtin_puts"]

_INNER = '''
import torch
from torch import nn


class Inner(nn.Module):
    def forward(self, x):
        return torch.sigmoid(x) * 2
'''


def _module_from(folder: Path, name: str) -> ModuleType:
    """A module whose source file is ``folder/name`` (so the user frame names that file)."""
    path = folder / name
    path.write_text(_INNER)
    spec = importlib.util.spec_from_file_location("sol_test_hostile_file", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _forward(self: nn.Module, x: torch.Tensor, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    y = torch.tanh(getattr(self, PUTS)(x))
    y = self.d[DICT_KEY](y) * 3
    y = getattr(self, BACKSLASH)(y) + 0.5  # the line after its comment must still run
    y = getattr(self, TRIGRAPH)(y) - 0.25
    y = getattr(self, BLOCK)(y)
    y = getattr(self, ODD)(y) + 1
    return self.inner(y) - 1, self.emb(idx).sum(dim=1)


def _hostile_model(folder: Path) -> nn.Module:
    cls = type(CLASS, (nn.Module,), {"forward": _forward})
    model = cls()
    model.add_module(PUTS, nn.ReLU())
    model.d = nn.ModuleDict({DICT_KEY: nn.Hardtanh()})
    model.add_module(BACKSLASH, nn.SiLU())
    model.add_module(TRIGRAPH, nn.LeakyReLU(0.1))
    model.add_module(BLOCK, nn.Sigmoid())
    model.add_module(ODD, nn.Softsign())
    model.inner = _module_from(folder, FILE_NAME).Inner()
    model.emb = nn.Embedding(10, 4)
    return model.eval()


def test_hostile_pytorch_names_stay_comments(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                             capfd: pytest.CaptureFixture[str]) -> None:
    code_dir = tmp_path / "code"
    code_dir.mkdir()
    debug = tmp_path / "a" / "b" / "debug"
    monkeypatch.setenv("SOL_DEBUG_DIR", str(debug))
    model = _hostile_model(code_dir)
    x = torch.randn(3, 4)
    idx = torch.tensor([[1, 2, 3], [9, 0, 4], [5, 5, 5]])
    fast = optimize(model, x, idx, device="x86")
    with torch.no_grad():
        got, want = fast(x, idx), model(x, idx)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g.numpy(), w.numpy(), rtol=1e-4, atol=1e-5)
    assert "SOLPWN" not in capfd.readouterr().out  # the injected puts never ran

    # the sources stay inside SOL_DEBUG_DIR, in one folder named after (not by) the class
    outside = [p for p in files_under(tmp_path) if debug not in p.parents and code_dir not in p.parents]
    assert outside == []
    (folder,) = [p for p in debug.iterdir()]
    assert "/" not in folder.name and "\n" not in folder.name and folder.name.startswith("_.._Net_error")
    found = sources(debug)
    assert found and any(p.name == "network.cpp" for p in found)
    for text in found.values():
        assert_inert(text, MARKERS)
    text = (folder / "network.cpp").read_text()
    # the attacks are still recognisable in the comments, escaped: a reader can find the module
    assert '__builtin_puts("SOLPWN_PUTS"); //' in text and "model.w/" in text


def test_index_error_names_the_hostile_module_in_a_string_literal(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """The gather's source location is a C string literal (the index error's message): its
    quotes, backslashes, trigraphs and line breaks are escaped, and the message comes back
    unchanged."""
    name = 'e"); puts("SOLPWN_STR"); ("??/\\\n'

    class Lookup(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.add_module(name, nn.Embedding(6, 3))

        def forward(self, idx: torch.Tensor) -> torch.Tensor:
            return getattr(self, name)(idx) * 2

    monkeypatch.setenv("SOL_DEBUG_DIR", str(tmp_path))
    model = Lookup().eval()
    idx = torch.tensor([0, 5, 2])
    fast = optimize(model, idx, device="x86")
    with torch.no_grad():
        np.testing.assert_allclose(fast(idx).numpy(), model(idx).numpy(), rtol=1e-6)
        with pytest.raises(IndexError) as err:
            fast(torch.tensor([0, 6, 2]))
    for text in sources(tmp_path).values():
        assert_inert(text, ["SOLPWN"])
    assert f"gather <- model.{name} (" in str(err.value)  # the exact name, escapes undone by the compiler


def test_debug_dir_keeps_distinct_names_apart(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Names that differ only in characters a folder name cannot hold get distinct folders."""
    from sol.api import _keep_sources

    monkeypatch.setenv("SOL_DEBUG_DIR", str(tmp_path))
    for name in ("a/b", "a\\b", "a b", "a_b", "..", "../..", "", "\0"):
        _keep_sources(name, {"network.cpp": name})
    folders = sorted(os.listdir(tmp_path))
    assert len(folders) == 8 and "a_b" in folders
    assert all(p.parent.parent == tmp_path for p in files_under(tmp_path))
