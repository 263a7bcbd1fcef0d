"""The benchmark's Markdown table and PNG plot.

Speedups are ratios of medians taken in the same run (``other engine's time / sol's time``, so
above 1 means sol is faster); the geometric mean is over the rows where both engines produced a
number. A failed engine is a cell saying so, with the full reason listed under the table.
"""

from __future__ import annotations

import math
from pathlib import Path

from sol_benchmarks.engines import COMPILED, LEARNING_RATE, MOMENTUM, TITLES
from sol_benchmarks.harness import BenchResult, Cell, Row, save_json

FAILED_CELL_CHARS = 48
TABLE_TITLES = {"infer": "Inference", "train": "Training step (forward + backward + optimizer step)"}
COLORS = {"torch.compile": "tab:blue", "onnxruntime": "tab:orange", "sol": "tab:green", "eager": "tab:gray"}


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.2f}" if ms < 10 else f"{ms:.1f}" if ms < 1000 else f"{ms:.0f}"


def _ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x" if value >= 0.1 else f"{value:.2g}x"


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.2f}" if seconds < 10 else f"{seconds:.1f}"


def _failed(cell: Cell, notes: list[str], where: str) -> str:
    notes.append(f"{where}, {TITLES.get(cell.engine, cell.engine)}: failed: {cell.error}")
    short = cell.error if len(cell.error) <= FAILED_CELL_CHARS else cell.error[:FAILED_CELL_CHARS - 3] + "..."
    return f"failed: {short.replace('|', '/')} [{len(notes)}]"


def speedup(row: Row, base: str, engine: str) -> float | None:
    """``base``'s median over ``engine``'s: how many times faster ``engine`` ran."""
    a, b = row.cells.get(base), row.cells.get(engine)
    if a is None or b is None or not (a.ok and b.ok) or not a.median_s or not b.median_s:
        return None
    return a.median_s / b.median_s


def geomean(values: list[float]) -> float | None:
    return math.exp(sum(math.log(v) for v in values) / len(values)) if values else None


def speedup_columns(engines: list[str]) -> list[tuple[str, str]]:
    """(base, engine) pairs shown as ratios: sol against every other engine when sol ran,
    else every engine against eager."""
    if "sol" in engines:
        return [(e, "sol") for e in engines if e != "sol"]
    return [("eager", e) for e in engines if e != "eager"] if "eager" in engines else []


def markdown(result: BenchResult) -> str:
    o, m = result.options, result.machine
    notes: list[str] = []
    lines = [f"sol bench, {result.started}: {m['cpu']}, {m['threads']} thread(s) per engine "
             f"({m['physical_cores']} physical cores); fp32, medians of {o['repeats']} timed runs after "
             f"{o['warmup']} warm-up; torch {m['torch']}, onnxruntime {m['onnxruntime']}, sol-core {m['sol-core']}.",
             "", f"Command: `{o['command']}`", ""]
    if o.get("rounds", 1) > 1:
        lines += [f"Rounds: {o['rounds']} timed processes per engine, the engine order reversed every other "
                  "round; each time is the median of the rounds' medians.", ""]
    if o.get("busy"):
        lines += [f"Shared machine: {o['busy']} CPU-bound neighbour process(es) ran through the whole run "
                  "(`--busy`): the timings show how each engine degrades when another job takes cores.", ""]
    load = m.get("load_average_at_start")
    if not o.get("busy") and load is not None and load > 0.5 * m["physical_cores"]:
        lines += [f"Warning: the machine was busy when the run started (load average {load:.1f} on "
                  f"{m['physical_cores']} cores): these timings are noisy; rerun on an idle machine.", ""]
    c = result.ceilings
    if c:
        lines += [f"Ceilings: {c['flops_per_s'] / 1e9:.1f} GFLOP/s SGEMM, {c['bytes_per_s'] / 1e9:.1f} GB/s memory "
                  f"({c['threads']} thread(s); {c['basis']}).", ""]
    modes = list(dict.fromkeys(r.mode for r in result.rows))
    for mode in modes:
        rows = [r for r in result.rows if r.mode == mode]
        if len(modes) > 1 or mode == "train":
            lines += [f"### {TABLE_TITLES[mode]}", ""]
        lines += _table(rows, rows[0].engines_for(list(o["engines"])), notes)
        lines.append("")
    if notes:
        lines += ["Notes:", ""] + [f"{i + 1}. {n}" for i, n in enumerate(notes)] + [""]
    lines += ["Cold compile: a new process with empty caches, from the start of compiling to the first "
              "result. Warm first result: a new process on the caches the cold one left, same span. Peak RSS: "
              "the timed process's maximum resident memory, each engine in its own process."]
    if "train" in modes:
        lines += ["", f"Training step: forward, cross-entropy loss, `backward()` and `torch.optim.SGD` (lr "
                  f"{LEARNING_RATE:g}, momentum {MOMENTUM:g}) on the model in train mode (batch statistics in "
                  "BatchNorm, dropout active); the max rel. diff compares the losses of every step taken."]
    return "\n".join(lines) + "\n"


def _table(rows: list[Row], engines: list[str], notes: list[str]) -> list[str]:
    """The Markdown table of rows of one mode."""
    compiled = [e for e in engines if e in COMPILED]
    pairs = speedup_columns(engines)
    header = ["model", "batch"] + [f"{TITLES[e]} ms" for e in engines]
    header += [f"{TITLES[e2]} vs {TITLES[e1]}" for e1, e2 in pairs]
    if compiled:
        who = " / ".join(TITLES[e] for e in compiled)
        header += [f"cold compile s ({who})", f"warm first result s ({who})"]
    header += [f"peak RSS MiB ({' / '.join(TITLES[e] for e in engines)})"]
    header += [f"resident after the runs MiB ({' / '.join(TITLES[e] for e in engines)})"]
    if "eager" in engines and len(engines) > 1:
        header += ["max rel. diff vs eager"]
    align = ["---"] + ["--:"] * (len(header) - 1)  # numbers right-aligned
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for row in rows:
        where = f"{row.model} batch {row.batch}" + (" training" if row.mode == "train" else "")
        cells = [row.model, str(row.batch)]
        for e in engines:
            cell = row.cells.get(e)
            if cell is None:
                cells.append("-")
            elif cell.ok and cell.median_s is not None:
                cells.append(_ms(cell.median_s))
            else:
                cells.append(_failed(cell, notes, where))
        for e1, e2 in pairs:
            s = speedup(row, e1, e2)
            cells.append(_ratio(s))
        if compiled:
            cold, warm = [], []
            for e in compiled:
                cell = row.cells.get(e)
                cold.append(_s(cell.cold_s) if cell else "-")
                warm.append(_s(cell.first_result_s) if cell and cell.ok else "-")
            cells += [" / ".join(cold), " / ".join(warm)]
        for measure in ("peak_rss_mib", "resident_mib"):
            mib = [getattr(row.cells.get(e), measure, None) for e in engines]
            cells.append(" / ".join("-" if m is None else f"{m:.0f}" for m in mib))
        if "eager" in engines and len(engines) > 1:
            diffs = [f"{TITLES[e]} {row.cells[e].max_rel_diff:.1e}" for e in engines
                     if e != "eager" and e in row.cells and row.cells[e].max_rel_diff is not None]
            cells.append(", ".join(diffs) or "-")
        for e in engines:
            cell = row.cells.get(e)
            for n in cell.notes if cell else []:
                notes.append(f"{where}, {TITLES[e]}: {n}")
        lines.append("| " + " | ".join(cells) + " |")
    if pairs and len(rows) > 1:
        means = []
        for e1, e2 in pairs:
            g = geomean([s for r in rows if (s := speedup(r, e1, e2)) is not None])
            means.append("-" if g is None else f"**{_ratio(g)}**")
        pad = len(header) - 2 - len(engines) - len(pairs)
        lines.append("| geometric mean | | " + " | ".join([""] * len(engines) + means + [""] * pad) + " |")
    return lines


def plot(result: BenchResult, path: Path) -> str | None:
    """Speedup over eager per (model, batch) and engine, and cold compile times; None on
    success, else why no plot was written."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:
        return f"no plot: matplotlib is not installed ({exc})"
    engines: list[str] = list(result.options["engines"])
    others = [e for e in engines if e != "eager"]
    compiled = [e for e in engines if e in COMPILED]
    labels = [f"{r.model}\nb{r.batch}" + (" train" if r.mode == "train" else "") for r in result.rows]
    panels = (1 if "eager" in engines and others else 0) + (1 if compiled else 0)
    if not panels or not result.rows:
        return "no plot: nothing to compare"
    fig, axes = plt.subplots(panels, 1, figsize=(max(6.0, 1.1 * len(labels) + 2), 3.6 * panels), squeeze=False)
    width = 0.8 / max(len(others), len(compiled), 1)
    panel = 0
    if "eager" in engines and others:
        ax = axes[panel][0]
        panel += 1
        for k, e in enumerate(others):
            for i, r in enumerate(result.rows):
                if e not in r.cells:  # an engine that does not run this row's mode
                    continue
                x = i + (k - (len(others) - 1) / 2) * width
                s = speedup(r, "eager", e)
                if s is None:
                    ax.text(x, 0.05, "failed", rotation=90, ha="center", va="bottom", fontsize=7, color="red")
                else:
                    # Bars grow from 1 (as fast as eager): up when faster, down when slower.
                    ax.bar(x, s - 1.0, width, bottom=1.0, color=COLORS.get(e), label=TITLES[e] if i == 0 else None)
                    ax.text(x, s, f"{s:.2f}", ha="center", va="bottom" if s >= 1 else "top", fontsize=7)
        ax.axhline(1.0, color="black", linewidth=0.8)
        ax.set_yscale("log")  # ratios: 2x faster and 2x slower are the same distance from 1
        ax.set_ylabel("speedup over PyTorch eager")
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.legend(fontsize=8)
        ax.set_title(f"{result.machine['cpu']}, {result.machine['threads']} thread(s), fp32", fontsize=9)
    if compiled:
        ax = axes[panel][0]
        for k, e in enumerate(compiled):
            for i, r in enumerate(result.rows):
                cell = r.cells.get(e)
                x = i + (k - (len(compiled) - 1) / 2) * width
                if cell is None or cell.cold_s is None:
                    ax.text(x, 0.05, "failed", rotation=90, ha="center", va="bottom", fontsize=7, color="red")
                else:
                    ax.bar(x, cell.cold_s, width, color=COLORS.get(e), label=TITLES[e] if i == 0 else None)
                    ax.text(x, cell.cold_s, f"{cell.cold_s:.1f}", ha="center", va="bottom", fontsize=7)
        ax.set_ylabel("cold compile + first result (s)")
        ax.set_xticks(range(len(labels)), labels, fontsize=8)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return None


def write(result: BenchResult, out: Path) -> dict[str, Path]:
    """results.json, results.md and results.png in ``out``; returns what was written."""
    out.mkdir(parents=True, exist_ok=True)
    written = {"json": out / "results.json", "markdown": out / "results.md"}
    save_json(result, written["json"])
    text = markdown(result)
    why = plot(result, out / "results.png")
    if why is None:
        written["plot"] = out / "results.png"
    else:
        text += f"\n{why}\n"
    written["markdown"].write_text(text)
    return written
