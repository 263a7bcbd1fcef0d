"""benchmarks/keras_speed.py works (a tiny run: the numbers are not a measurement)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "keras_speed.py"


def test_keras_speed_quick_writes_a_table_with_every_engine(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("keras_speed", SCRIPT)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("keras_speed", bench)  # its dataclasses look their module up by name
    spec.loader.exec_module(bench)
    out = tmp_path / "table.md"
    text = bench.main(["--quick", "--models", "transformer_encoder", "--device", "x86", "--out", str(out)])
    assert out.read_text().strip() == text.strip()
    rows = [line for line in text.splitlines() if line.startswith("| transformer_encoder")]
    assert len(rows) == 1
    cells = [c.strip() for c in rows[0].strip("|").split("|")]
    # model, batch, 4 engine times, 3 ratios, max relative difference, optimize seconds
    assert len(cells) == 11 and cells[1] == "1"
    assert all(float(c) > 0 for c in cells[2:6]), cells  # every engine ran (no "failed: ...")
    assert all(c.endswith("x") and float(c[:-1]) > 0 for c in cells[6:9]), cells
    assert float(cells[9]) < 1e-3  # sol computed what eager Keras computed
