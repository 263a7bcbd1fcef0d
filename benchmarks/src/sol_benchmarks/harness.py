"""The benchmark run: every (model, batch, engine) in worker processes, collected into rows.

For each model and batch size, in one run:

- ``eager``: one process: first result, warm-up, timed calls, peak memory;
- ``torch.compile`` and ``sol``: a ``cold`` process with empty caches (compile time = compile
  and first result), then a ``run`` process on the caches it left (warm time-to-first-result,
  timed calls, peak memory);
- ``onnxruntime``: a ``cold`` process exports with ``torch.onnx.export``; the ``run`` process
  loads the file (first result, timed calls, peak memory).

Rows are inference (``infer``) or training steps (``train``: forward, loss, backward and an
optimizer step, for the engines in :data:`engines.TRAINING`), as ``--mode`` asks.

Every process gets the same thread count (``OMP_NUM_THREADS``, ``torch.set_num_threads``,
ONNX Runtime's intra-op threads; physical cores by default), so no engine oversubscribes the
machine or gets more of it than another. A process that fails, crashes or runs past the timeout
becomes that engine's cell ("failed: reason"); the run goes on. This process imports no framework.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from sol.plugin_api import physical_cores  # every engine's default thread count, as sol's CPU device's pool
from sol.roofline import cpu_model
from sol_benchmarks import engines
from sol_benchmarks.ceilings import thread_env


@dataclass
class Options:
    models: list[str]
    batches: list[int]
    engines: list[str]
    repeats: int
    warmup: int
    threads: int
    timeout: float
    out: Path
    size: int | None = None
    quick: bool = False
    keep_work: bool = False
    command: str = "sol bench"
    modes: list[str] = field(default_factory=lambda: ["infer"])
    busy: int = 0  # CPU-bound neighbour processes kept running during the run (a shared machine)
    rounds: int = 1  # timed processes per engine, in alternating engine order (see Harness.run_row)


@dataclass
class Cell:
    """One engine on one (model, batch). Times in seconds, memory in MiB."""

    engine: str
    ok: bool = False
    error: str = ""
    median_s: float | None = None
    times_s: list[float] = field(default_factory=list)
    first_result_s: float | None = None  # run process: warm (cache hit) for compiled engines
    cold_s: float | None = None  # cold process: compile + first result, empty caches
    peak_rss_mib: float | None = None  # run process
    resident_mib: float | None = None  # run process, after its timed runs
    cold_peak_rss_mib: float | None = None
    max_rel_diff: float | None = None  # max |y - y_eager| / max |y_eager|
    notes: list[str] = field(default_factory=list)
    round_medians_s: list[float] = field(default_factory=list)  # one per timed process (--rounds)


@dataclass
class Row:
    model: str
    batch: int
    size: int
    input_shape: tuple[int, ...]
    cells: dict[str, Cell] = field(default_factory=dict)
    mode: str = "infer"

    @property
    def tag(self) -> str:
        return f"{self.model}-b{self.batch}" + ("-train" if self.mode == "train" else "")

    def engines_for(self, chosen: list[str]) -> list[str]:
        """The chosen engines that run this row's mode."""
        return [e for e in chosen if self.mode != "train" or e in engines.TRAINING]


@dataclass
class BenchResult:
    rows: list[Row]
    options: dict[str, Any]
    machine: dict[str, Any]
    ceilings: dict[str, Any] | None
    started: str
    seconds: float = 0.0


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_info(threads: int) -> dict[str, Any]:
    model = cpu_model()
    try:
        load = os.getloadavg()[0]  # before any engine runs: what else keeps the machine busy
    except OSError:
        load = None
    return {"cpu": model, "logical_cpus": os.cpu_count(), "physical_cores": physical_cores(), "threads": threads,
            "load_average_at_start": load,
            "python": platform.python_version(), "torch": _version("torch"),
            "onnxruntime": _version("onnxruntime"), "sol-core": _version("sol-core"),
            "sol-device-x86": _version("sol-device-x86")}


class Harness:
    def __init__(self, options: Options, log: Any = None) -> None:
        self.o = options
        self.log = log or sys.stderr
        self.work = Path(tempfile.mkdtemp(prefix=".work-", dir=self._out()))
        from sol_benchmarks.models import zoo_path

        # Workers inherit this environment, so they find the zoo as this process does (the
        # package's own, or $SOL_BENCH_ZOO made absolute here in case a worker's cwd differs).
        self.zoo_env = {"SOL_BENCH_ZOO": str(zoo_path())} if os.environ.get("SOL_BENCH_ZOO") else {}

    def _out(self) -> Path:
        self.o.out.mkdir(parents=True, exist_ok=True)
        return self.o.out

    # --- one worker process -------------------------------------------------------------------
    def _spawn(self, row: Row, engine: str, phase: str, workdir: Path) -> tuple[dict[str, Any] | None, str]:
        tag = f"{row.tag}-{engine}-{phase}"
        result_path = workdir / f"{phase}.json"
        result_path.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "sol_benchmarks.worker", "--engine", engine, "--model", row.model,
               "--batch", str(row.batch), "--size", str(row.size), "--phase", phase, "--mode", row.mode,
               "--warmup", str(self.o.warmup), "--repeats", str(self.o.repeats), "--threads", str(self.o.threads),
               "--workdir", str(workdir), "--result", str(result_path), "--output", str(workdir / "output.npy")]
        env = {**os.environ, **thread_env(self.o.threads), "SOL_CACHE_DIR": str(workdir / "sol-cache"),
               "TORCHINDUCTOR_CACHE_DIR": str(workdir / "inductor-cache"), **self.zoo_env,
               "PYTHONUNBUFFERED": "1"}
        log_path = self.o.out / "logs" / f"{tag}.log"
        log_path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with open(log_path, "w") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
            try:
                rc: int | None = proc.wait(timeout=self.o.timeout)
            except subprocess.TimeoutExpired:
                rc = None
            finally:
                # The worker's own children (e.g. inductor's compile pool) go with it.
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
        print(f"  {tag}: {time.perf_counter() - t0:.1f} s", file=self.log, flush=True)
        if rc is None:
            return None, f"timed out after {self.o.timeout:g} s"
        try:
            result = json.loads(result_path.read_text())
        except (OSError, ValueError):
            lines = [ln for ln in log_path.read_text(errors="replace").splitlines() if ln.strip()]
            why = f"exit code {rc}" + (f" (killed by {_signal_name(-rc)})" if rc < 0 else "")
            return None, f"{why}: {lines[-1].strip() if lines else 'no output'} (log: {log_path.name})"
        if not result.get("ok"):
            return None, str(result.get("error", "unknown error"))
        return result, ""

    # --- one (model, batch) -------------------------------------------------------------------
    def run_row(self, row: Row) -> None:
        """The cold processes first, then ``rounds`` rounds of timed processes, one per engine,
        the engine order reversed every other round: a machine whose speed drifts over minutes
        (as virtual machines' do) then slows every engine alike instead of whichever ran last.
        An engine's time is the median of its rounds' medians."""
        chosen = row.engines_for(self.o.engines)
        workdirs = {}
        for engine in chosen:
            cell = Cell(engine)
            row.cells[engine] = cell
            workdir = self.work / row.tag / engine.replace(".", "_")
            workdir.mkdir(parents=True, exist_ok=True)
            workdirs[engine] = workdir
            if engine in engines.NEEDS_COLD:
                cold, error = self._spawn(row, engine, "cold", workdir)
                if cold is None:
                    cell.error = ("export: " if engine == "onnxruntime" else "compile: ") + error
                    continue
                cell.cold_s = cold["first_result_s"]
                cell.cold_peak_rss_mib = cold.get("peak_rss_mib")
                cell.notes += cold.get("notes", [])
        for r in range(max(1, self.o.rounds)):
            for engine in (chosen if r % 2 == 0 else chosen[::-1]):
                cell = row.cells[engine]
                if cell.error:
                    continue
                result, error = self._spawn(row, engine, "run", workdirs[engine])
                if result is None:
                    cell.error, cell.ok = error, False
                    continue
                self._add_round(cell, result)
        self._compare(row)

    @staticmethod
    def _add_round(cell: Cell, result: dict[str, Any]) -> None:
        cell.ok = True
        cell.round_medians_s.append(result["median_s"])
        cell.median_s = statistics.median(cell.round_medians_s)
        cell.times_s += result["times_s"]
        if cell.first_result_s is None:
            cell.first_result_s = result["first_result_s"]
        cell.peak_rss_mib = max(cell.peak_rss_mib or 0.0, result["peak_rss_mib"])
        if result.get("resident_mib") is not None:
            cell.resident_mib = max(cell.resident_mib or 0.0, result["resident_mib"])
        cell.notes += [n for n in result.get("notes", []) if n not in cell.notes]

    def _compare(self, row: Row) -> None:
        """Each engine's output (training: the losses of every step) against eager's (same
        weights, same input)."""
        import numpy as np

        base = self.work / row.tag
        ref_path = base / "eager" / "output.npy"
        if not ref_path.exists():
            return
        ref = np.load(ref_path).astype(np.float64)
        scale = float(np.abs(ref).max()) or 1.0
        for engine, cell in row.cells.items():
            path = base / engine.replace(".", "_") / "output.npy"
            if not cell.ok or not path.exists():
                continue
            got = np.load(path).astype(np.float64)
            if got.shape != ref.shape:
                cell.notes.append(f"output shape {got.shape} differs from eager's {ref.shape}")
                continue
            cell.max_rel_diff = float(np.abs(got - ref).max()) / scale

    # --- the whole run ------------------------------------------------------------------------
    def run(self, ceilings: dict[str, Any] | None) -> BenchResult:
        from sol_benchmarks import models

        t0 = time.perf_counter()
        started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        rows = []
        for mode in self.o.modes:
            for name in self.o.models:
                spec = models.resolve(name)
                size = self.o.size or (spec.quick_size if self.o.quick else spec.default_size)
                for batch in self.o.batches:
                    rows.append(Row(name, batch, size, spec.input_shape(batch, size), mode=mode))
        result = BenchResult(rows, _jsonable(asdict(self.o)), machine_info(self.o.threads), ceilings, started)
        neighbours = [_neighbour() for _ in range(self.o.busy)]
        try:
            for i, row in enumerate(rows):
                what = "training step" if row.mode == "train" else "inference"
                print(f"[{i + 1}/{len(rows)}] {row.model}, batch {row.batch}, input {row.input_shape}, {what}",
                      file=self.log, flush=True)
                self.run_row(row)
                result.seconds = time.perf_counter() - t0
                save_json(result, self.o.out / "results.json")  # a later crash keeps what is done
        finally:
            for proc in neighbours:
                proc.kill()
                proc.wait()
            if not self.o.keep_work:
                shutil.rmtree(self.work, ignore_errors=True)
        return result


NEIGHBOUR = ("import ctypes, signal\n"
             "ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: never outlive the run\n"
             "while True:\n    pass\n")


def _neighbour() -> subprocess.Popen[bytes]:
    """A process that keeps one core busy (a shared machine's other job), at the same priority."""
    return subprocess.Popen([sys.executable, "-c", NEIGHBOUR], stdin=subprocess.DEVNULL)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: str(v) if isinstance(v, Path) else v for k, v in d.items()}


def save_json(result: BenchResult, path: Path) -> None:
    path.write_text(json.dumps(asdict(result), indent=1))
