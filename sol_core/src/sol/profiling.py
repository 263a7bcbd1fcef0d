"""Where a network's time goes: per-group times measured by the device, set against the work
core counts for each group (:mod:`sol.workload`) and this machine's ceilings (:mod:`sol.roofline`).

The device only measures (``Program.group_seconds()`` of a program built with ``profile=True``);
FLOPs, bytes and the roofline are core's, so every device's report reads the same. This is what
``sol inspect --profile`` prints.

One exception, by the device's word: a group it computes with an algorithm that does fewer
operations than core's count (x86's Winograd convolutions do 4/9 of a 3x3 convolution's
multiplies) would otherwise show a rate above the machine's peak. The device lists what such
groups execute in ``program.info["executed_flops"]`` (group id -> FLOPs); their rows use it and
are marked, so "of roof" compares what ran with what the machine can do.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from sol.errors import SolError
from sol.planner.plan import Group, GroupKind, Plan
from sol.roofline import Ceilings
from sol.workload import Work, group_work

if TYPE_CHECKING:
    from sol.program import Program


@dataclass
class GroupProfile:
    """One group's mean time per call and its work."""

    group: Group
    seconds: float
    work: Work
    executed: bool = False  # work.flops is the device's count of what its algorithm executes

    @property
    def flops_per_s(self) -> float:
        return self.work.flops / self.seconds if self.seconds > 0 else 0.0

    @property
    def bytes_per_s(self) -> float:
        return self.work.bytes / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Profile:
    """A profiled run: per-group rows in execution order, the mean wall time per call."""

    plan: Plan
    groups: list[GroupProfile]
    wall_seconds: float
    runs: int
    warmup: int
    ceilings: Ceilings | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def group_seconds(self) -> float:
        return sum(g.seconds for g in self.groups)

    def fraction(self, row: GroupProfile) -> float | None:
        """The row's achieved rate over its roofline, or None without ceilings."""
        if self.ceilings is None:
            return None
        return self.ceilings.fraction(row.work.flops, row.work.bytes, row.seconds)

    def __str__(self) -> str:
        p = self.plan
        total = self.group_seconds
        lines = [f"sol profile of {p.graph.name} on {p.device}: {self.wall_seconds * 1e3:.3f} ms per call "
                 f"(mean of {self.runs} runs after {self.warmup} warm-up; groups {total * 1e3:.3f} ms, "
                 f"outside groups {max(self.wall_seconds - total, 0.0) * 1e3:.3f} ms)"]
        c = self.ceilings
        if c is not None:
            lines.append(f"ceilings: {c.flops_per_s / 1e9:.1f} GFLOP/s (SGEMM), {c.bytes_per_s / 1e9:.1f} GB/s "
                         f"(memory), ridge {c.ridge:.1f} FLOP/B, {c.threads} thread(s); {c.basis}"
                         + (f"; measured {c.measured_at}" if c.measured_at else ""))
        header = ("group", "runs as", "ops", "ms", "share", "MFLOP", "MB", "GFLOP/s", "GB/s", "bound", "of roof")
        rows = [header]
        for r in self.groups:
            g = r.group
            how = ((g.backend or "library") if g.kind is GroupKind.LIBRARY
                   else "loop/T" if g.kind is GroupKind.RECURRENT else "fused")
            frac = self.fraction(r)
            bound = c.bound(r.work.flops, r.work.bytes) if c is not None else ""
            how += "*" if r.executed else ""
            rows.append((g.label, how, _ops(g), f"{r.seconds * 1e3:.3f}",
                         f"{r.seconds / total:.1%}" if total > 0 else "-",
                         f"{r.work.flops / 1e6:.2f}", f"{r.work.bytes / 1e6:.2f}",
                         f"{r.flops_per_s / 1e9:.2f}", f"{r.bytes_per_s / 1e9:.2f}", bound or "-",
                         f"{frac:.0%}" if frac is not None else "-"))
        right = {3, 4, 5, 6, 7, 8, 10}
        widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
        for row in rows:
            lines.append("  ".join(cell.rjust(w) if i in right else cell.ljust(w)
                                   for i, (cell, w) in enumerate(zip(row, widths))).rstrip())
        lines += self._summary()
        if any(r.executed for r in self.groups):
            lines.append("*: MFLOP as the device's algorithm executes them (e.g. Winograd convolutions), "
                         "not the direct count")
        if c is not None and any((self.fraction(r) or 0.0) > 1.0 for r in self.groups):
            lines.append("above 100%: the group's data came from cache, which is faster than the memory "
                         "bandwidth measured over arrays far larger than any cache")
        lines += self.notes
        return "\n".join(lines)

    __repr__ = __str__

    def _summary(self) -> list[str]:
        """Time share per layer class and, with ceilings, the time-weighted fraction of the roof."""
        total = self.group_seconds
        if total <= 0:
            return []
        out = ["by layer class:"]
        classes: dict[str, list[GroupProfile]] = {}
        for r in self.groups:
            classes.setdefault(r.group.layer_class.value, []).append(r)
        for name, rs in sorted(classes.items(), key=lambda kv: -sum(r.seconds for r in kv[1])):
            t = sum(r.seconds for r in rs)
            line = f"  {name:<28} {len(rs):4d} group(s) {t * 1e3:10.3f} ms {t / total:7.1%}"
            if self.ceilings is not None and t > 0:
                weighted = sum((self.fraction(r) or 0.0) * r.seconds for r in rs) / t
                line += f"   {weighted:4.0%} of roof (time-weighted)"
            out.append(line)
        return out


def _ops(g: Group, limit: int = 40) -> str:
    """'conv2d+add+relu' for a library group, the op names of a fused group, shortened."""
    names = [n.op for n in g.nodes]
    text = "+".join(names)
    if len(text) > limit:
        text = text[: limit - 8].rsplit("+", 1)[0] + f"+..({len(names)})"
    return text


def random_inputs(program: Program, seed: int = 0) -> list[np.ndarray]:
    """Inputs of the program's types: uniform [0, 1) floats; zeros for integers and booleans
    (always valid as indices)."""
    rng = np.random.default_rng(seed)
    out = []
    for t in program.input_types:
        if np.issubdtype(np.dtype(t.dtype), np.floating):
            out.append(rng.random(t.shape).astype(t.dtype))
        else:
            out.append(np.zeros(t.shape, t.dtype))
    return out


def profile_program(program: Program, runs: int = 10, warmup: int = 1, inputs: list[np.ndarray] | None = None,
                    ceilings: Ceilings | None = None) -> Profile:
    """Run ``program`` (built with ``profile=True``) ``warmup`` + ``runs`` times and report the
    mean time per call of each group."""
    plan: Plan | None = program.info.get("plan")
    if plan is None:
        raise SolError(f"{program.name}: the program carries no plan; compile it with sol.api.compile_graph")
    if program.group_seconds() is None:
        raise SolError(f"device {program.device!r} does not report per-group times for {program.name} "
                       "(the program must be built with profile=True on a device that supports it)")
    if runs < 1:
        raise SolError(f"profiling needs at least one run, got {runs}")
    args = inputs if inputs is not None else random_inputs(program)
    for _ in range(warmup):
        program(*args)
    before = program.group_seconds() or []
    t0 = time.perf_counter()
    for _ in range(runs):
        program(*args)
    wall = (time.perf_counter() - t0) / runs
    after = program.group_seconds() or []
    executed: dict[int, float] = dict(program.info.get("executed_flops") or {})
    rows = []
    for g in plan.groups:
        if g.kind is GroupKind.ALIAS:
            continue
        seconds = (after[g.id] - before[g.id]) / runs if g.id < min(len(before), len(after)) else 0.0
        work = group_work(g)
        if g.id in executed:
            work = Work(float(executed[g.id]), work.bytes_read, work.bytes_written)
        rows.append(GroupProfile(g, seconds, work, executed=g.id in executed))
    return Profile(plan, rows, wall, runs, warmup, ceilings)


def profile(model: Any, *example_inputs: Any, device: str | None = None, runs: int = 10, warmup: int = 1,
            measure_ceilings: bool = True, **options: Any) -> Profile:
    """Compile ``model`` with per-group timers, run it on random inputs of the example inputs'
    shapes and report each group's time, work and fraction of this machine's roofline.

    Runs through core only (frontend import, compile, the device's Program), so no framework
    object is created for the inputs. Ceilings come from the cache or, with
    ``measure_ceilings``, from a plugin that can measure them (``sol_measure_ceilings``).
    """
    from sol import roofline
    from sol.api import compile_graph, frontend_for

    frontend = frontend_for(model)
    opts = dict(options, profile=True)
    graph = frontend.import_graph(model, example_inputs, opts)
    program = compile_graph(graph, device, options=opts)
    ceilings = roofline.obtain(program.device, measure=measure_ceilings)
    result = profile_program(program, runs=runs, warmup=warmup, ceilings=ceilings)
    if ceilings is None:
        result.notes.append(f"no ceilings for device {program.device!r} on this machine: fractions of the roofline "
                            "need them (install sol-benchmarks and run `sol bench --ceilings`)")
    return result
