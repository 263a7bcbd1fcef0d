"""The plan as an SVG picture (`sol.explain(...).svg()`, `sol inspect --svg`): well-formed XML that
names every group, coloured by layer class, with tensor types on the edges, boxes that do not
overlap, and model names that stay text however hostile they are."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from sol.explanation import Explanation
from sol.ir import Graph, TensorType
from sol.planner.partition import plan_graph
from sol.planner.plan import Plan
from sol.plansvg import COLOURS
from sol.plugins import roles

from graphs import branchy, seed_net
from interpreter_device import InterpreterDevice

SVG = "{http://www.w3.org/2000/svg}"
ROOT = Path(__file__).resolve().parents[2]
HOSTILE = 'x"/><script>alert(1)</script>&amp;\x01\x1b[2J\ud800 ]]> ñ ✓'


def _plan(g: Graph) -> Plan:
    roles().passes.run(g)
    return plan_graph(g, InterpreterDevice(), [])


def _texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def _boxes(root: ET.Element) -> list[tuple[float, float, float, float]]:
    """(left, top, right, bottom) of every group's box (the legend's swatches are 14 px)."""
    return [(float(r.get("x", 0)), float(r.get("y", 0)), float(r.get("x", 0)) + float(r.get("width", 0)),
             float(r.get("y", 0)) + float(r.get("height", 0)))
            for r in root.iter(f"{SVG}rect") if r.get("x") is not None and r.get("width") != "14"]


def _check(svg: str, plan: Plan) -> ET.Element:
    root = ET.fromstring(svg)
    texts = _texts(root)
    for g in plan.groups:  # every group named in its box, coloured by its layer class
        assert any(t.startswith(f"{g.label} ") for t in texts), g.label
    fills = {r.get("fill") for r in root.iter(f"{SVG}rect")}
    assert {COLOURS[g.layer_class] for g in plan.groups} <= fills
    boxes = _boxes(root)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
    return root


def test_svg_of_small_graphs_names_groups_ops_and_tensors() -> None:
    for g in (seed_net(), branchy()):
        plan = _plan(g)
        explanation = Explanation(plan)
        assert explanation._repr_svg_() == explanation.svg()  # a notebook shows the picture
        root = _check(explanation.svg(), plan)
        texts = _texts(root)
        for grp in plan.groups:
            for n in grp.nodes[:3]:
                assert any(t.endswith(n.op) for t in texts), n.op
        for grp in plan.groups:  # each tensor between groups labelled with its type where it leaves
            for v in grp.inputs:
                if v in plan.graph.inputs or any(v in o.outputs for o in plan.graph.nodes):
                    assert str(v.type) in " ".join(texts)


def test_hostile_names_stay_text(tmp_path: Path) -> None:
    """Input, graph and source names come from the model: escaped, characters XML cannot hold
    replaced, so the file parses and the names come back as plain text, never as elements."""
    g = Graph(HOSTILE)
    x = g.add_input(HOSTILE, TensorType((1, 3, 4, 4)))
    y = g.add_node("relu", [x], source=HOSTILE).output
    z = g.add_node("mul", [y, g.add_const(np.float32(2.0))], source=HOSTILE).output
    g.outputs = [g.add_node("tanh", [z]).output]
    plan = _plan(g)
    path = tmp_path / "plan.svg"
    Explanation(plan).write_svg(str(path))
    root = ET.parse(path).getroot()
    _check(path.read_text(encoding="utf-8"), plan)
    assert not [e for e in root.iter() if "script" in e.tag]
    clean = 'x"/><script>alert(1)</script>&amp;??[2J? ]]> ñ ✓'  # \x01, ESC, the lone surrogate: "?"
    assert 'input x"/><script>alert(1)</script>&amp;??[2J...' in _texts(root)  # cut to fit the box
    titles = [t.text or "" for t in root.iter(f"{SVG}title")]
    assert titles[0] == f"sol plan for {clean} on interp"
    assert any(f"#1 relu -> float32[1, 3, 4, 4]  <- {clean}" in t for t in titles)  # the box's tooltip


def test_sol_inspect_svg_on_the_zoo_small_resnet(tmp_path: Path) -> None:
    out_svg = tmp_path / "plan.svg"
    env = {**os.environ, "PYTHONPATH": str(ROOT / "benchmarks")}
    out = subprocess.run([sys.executable, "-m", "sol.cli", "inspect", "zoo:small_resnet", "--input", "1,3,32,32",
                          "--device", "x86", "--svg", str(out_svg)], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    assert f"wrote {out_svg}" in out.stdout
    labels = re.findall(r"^\s+(G\d+)\s", out.stdout, re.M)
    assert len(labels) > 10
    root = ET.parse(out_svg).getroot()
    texts = _texts(root)
    for label in labels:
        assert any(t.startswith(f"{label} ") for t in texts), label
    assert "G0 library onednn" in texts and "conv2d" in texts and "+ add" in texts
    # (the stem's output: NCHW, or channels-last inside sol.planner.layout's regions)
    assert {"float32[1, 8, 16, 16]", "float32[1, 16, 16, 8]"} & set(texts)
    assert "input x" in texts and "output 0" in texts
    assert COLOURS[next(c for c in COLOURS if c.value == "compute bound")] in {r.get("fill") for r in root.iter()}
    boxes = _boxes(root)
    for i, a in enumerate(boxes):
        for b in boxes[i + 1:]:
            assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1], (a, b)
