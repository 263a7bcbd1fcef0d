"""Per-group profiling on x86: the device measures times (Program.group_seconds), core adds the
work and the roofline (sol.profiling), and `sol inspect --profile` prints it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sol import roofline
from sol.api import compile_graph
from sol.planner.plan import GroupKind
from sol.profiling import profile_program
from sol.workload import node_flops

from graphs import branchy

ROOT = Path(__file__).resolve().parents[2]


def test_group_seconds_only_with_profile() -> None:
    assert compile_graph(branchy(), "x86").group_seconds() is None
    program = compile_graph(branchy(), "x86", options={"profile": True})
    before = program.group_seconds()
    assert before is not None and len(before) == len(program.info["plan"].groups)
    report = profile_program(program, runs=3)
    after = program.group_seconds()
    assert after is not None and all(a >= b for a, b in zip(after, before))
    assert all(r.seconds > 0 for r in report.groups)
    assert report.group_seconds <= report.wall_seconds * 1.05


def test_profile_rows_carry_core_work_and_roofline_fractions() -> None:
    program = compile_graph(branchy(), "x86", options={"profile": True})
    plan = program.info["plan"]
    c = roofline.Ceilings(50e9, 5e9, 2, "test ceilings")
    report = profile_program(program, runs=2, ceilings=c)
    assert [r.group.id for r in report.groups] == [g.id for g in plan.groups if g.kind is not GroupKind.ALIAS]
    assert sum(r.work.flops for r in report.groups) == sum(node_flops(n) for g in plan.groups for n in g.nodes
                                                           if g.kind is not GroupKind.ALIAS)
    for r in report.groups:
        assert report.fraction(r) == pytest.approx(c.fraction(r.work.flops, r.work.bytes, r.seconds))
    text = str(report)
    assert "ceilings: 50.0 GFLOP/s (SGEMM), 5.0 GB/s (memory)" in text
    assert "by layer class:" in text and "of roof (time-weighted)" in text


def test_inspect_profile_cli(tmp_path: Path) -> None:
    # SOL_X86_LAYOUT=nchw: the seed's NCHW plan, whose convolution group is the convolution alone
    # (channels-last, bias and ReLU would ride along as post-ops).
    env = {**os.environ, "PYTHONPATH": str(ROOT / "benchmarks"), "SOL_CACHE_DIR": str(tmp_path),
           "SOL_X86_LAYOUT": "nchw"}
    # Ceilings cached beforehand, so the command reads them instead of measuring (and the
    # fractions can be checked against them).
    code = ("from sol import roofline; roofline.save('x86', roofline.Ceilings(100e9, 10e9, 2, 'given'))")
    subprocess.run([sys.executable, "-c", code], check=True, env=env)
    out = subprocess.run([sys.executable, "-m", "sol.cli", "inspect", "zoo:SeedNet", "--input", "2,512,13,13",
                          "--device", "x86", "--profile", "--runs", "3"], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "sol profile of SeedNet on x86" in text and "mean of 3 runs" in text
    assert "ceilings: 100.0 GFLOP/s (SGEMM), 10.0 GB/s (memory), ridge 10.0 FLOP/B" in text
    # The 1x1 convolution: 2 * (2*1000*13*13 outputs) * 512 = 346.11 MFLOP, read from core's count.
    conv = next(line for line in text.splitlines() if re.match(r"G\d+\s+onednn\s+conv2d", line))
    cols = conv.split()
    assert float(cols[5]) == pytest.approx(346.112, abs=0.01)
    ms, mflop, gflops = float(cols[3]), float(cols[5]), float(cols[7])
    assert gflops == pytest.approx(mflop / ms, rel=0.05, abs=0.01)  # MFLOP per ms = GFLOP/s
    # Intensity 346 MFLOP / 4.09 MB is right of the ridge: the roof is 100 GFLOP/s, so the
    # percentage of the roof equals the GFLOP/s figure.
    assert cols[9] == "compute" and cols[10].endswith("%")
    assert float(cols[10].rstrip("%")) == pytest.approx(gflops, abs=1.0)
    pool = next(line for line in text.splitlines() if "avg_pool2d" in line and line.startswith("G"))
    assert "memory" in pool.split()


def test_a_profiled_network_times_every_call() -> None:
    """The thread governor may move calls to a second instance on half the threads; its groups
    are not the profiled instance's, so a profile would lose those calls and overstate every
    group's rate (ResNet-50's convolutions showed at up to 148% of the roof). A profiled
    network keeps every call on the full count."""
    program = compile_graph(branchy(), "x86", options={"profile": True})
    governor = program.info["threads"]
    assert governor.fixed
    governor.reduced = True  # what a governor on a busy machine decides
    x = np.random.default_rng(0).standard_normal(program.input_types[0].shape).astype(np.float32)
    before = program.group_seconds()
    program(x)
    after = program.group_seconds()
    assert before is not None and after is not None
    assert sum(after) > sum(before)  # the call ran on the profiled instance
    assert compile_graph(branchy(), "x86").info["threads"].fixed is False
