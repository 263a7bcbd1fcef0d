"""`sol bench` (the sol-benchmarks plugin): a quick run end to end, failures as cells, the table
format and where the zoo comes from. Timings are never asserted: only that each requested engine
gave a number or a stated failure, and that the outputs match eager."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

if importlib.util.find_spec("sol_benchmarks") is None:
    pytest.fail("sol-benchmarks is not installed (pip install -e benchmarks; scripts/env.sh does it)",
                pytrace=False)

from sol_benchmarks.harness import BenchResult, Cell, Row  # noqa: E402
from sol_benchmarks.report import markdown  # noqa: E402


def _bench(tmp_path: Path, *args: str, ceilings: bool = True) -> subprocess.CompletedProcess[str]:
    """``sol bench --quick`` in a private cache; ``ceilings=False`` puts made-up ceilings there
    first, so the run skips measuring them."""
    env = {**os.environ, "SOL_CACHE_DIR": str(tmp_path / "cache")}
    if not ceilings:
        code = ("from sol import roofline; from sol_benchmarks.harness import physical_cores; "
                "roofline.save('x86', roofline.Ceilings(1e11, 1e10, physical_cores(), 'made up'))")
        subprocess.run([sys.executable, "-c", code], env=env, check=True)
    return subprocess.run([sys.executable, "-m", "sol.cli", "bench", "--quick", "--out", str(tmp_path / "out"), *args],
                          capture_output=True, text=True, env=env, timeout=600)


def _row(md: str, model: str, batch: int) -> list[str]:
    line = next(ln for ln in md.splitlines() if ln.startswith(f"| {model} | {batch} |"))
    return [c.strip() for c in line.strip("|").split("|")]


@pytest.mark.slow
def test_quick_bench_gives_every_engine_a_number(tmp_path: Path) -> None:
    out = _bench(tmp_path, "--models", "mlp", "--batch", "1", "--engines", "eager,onnxruntime,sol")
    assert out.returncode == 0, out.stdout + out.stderr
    folder = tmp_path / "out"
    md = (folder / "results.md").read_text()
    header = next(ln for ln in md.splitlines() if ln.startswith("| model |"))
    assert "PyTorch eager ms | ONNX Runtime ms | sol ms | sol vs PyTorch eager | sol vs ONNX Runtime" in header
    cells = _row(md, "mlp", 1)
    for timing in cells[2:5]:  # eager, ONNX Runtime, sol: each a time in ms
        assert float(timing) > 0, cells
    assert cells[5].endswith("x") and cells[6].endswith("x")
    assert "Command: `sol bench --models mlp --batch 1 --engines eager,onnxruntime,sol" in md
    assert (folder / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    result = json.loads((folder / "results.json").read_text())
    assert result["ceilings"]["flops_per_s"] > 0 and result["ceilings"]["bytes_per_s"] > 0
    got = result["rows"][0]["cells"]
    assert set(got) == {"eager", "onnxruntime", "sol"}
    for engine, cell in got.items():
        assert cell["ok"], (engine, cell["error"])
        assert len(cell["times_s"]) == 3 and cell["peak_rss_mib"] > 0
        assert 0 < cell["resident_mib"] <= cell["peak_rss_mib"] + 1  # now, after the runs: at most the peak
    for engine in ("onnxruntime", "sol"):
        assert got[engine]["max_rel_diff"] < 1e-4
        assert got[engine]["cold_s"] > 0
    assert got["sol"]["first_result_s"] > 0
    assert not any("compile cache" in n for n in got["sol"]["notes"]), got["sol"]["notes"]


@pytest.mark.slow
def test_quick_bench_torch_compile_cold_and_warm(tmp_path: Path) -> None:
    """torch.compile on its own (its cold compile is the slowest part of a quick run): a cold
    time with empty caches, a warm first result from the caches it left, outputs as eager's."""
    out = _bench(tmp_path, "--models", "mlp", "--batch", "2", "--engines", "eager,torch.compile", ceilings=False)
    assert out.returncode == 0, out.stdout + out.stderr
    md = (tmp_path / "out" / "results.md").read_text()
    cells = _row(md, "mlp", 2)
    assert float(cells[2]) > 0 and float(cells[3]) > 0 and cells[4].endswith("x")
    cell = json.loads((tmp_path / "out" / "results.json").read_text())["rows"][0]["cells"]["torch.compile"]
    assert cell["ok"], cell["error"]
    assert cell["cold_s"] > 0 and cell["first_result_s"] > 0 and cell["max_rel_diff"] < 1e-4


@pytest.mark.slow
def test_quick_bench_training_rows(tmp_path: Path) -> None:
    """--mode train: training-step rows in a table of their own, for the engines that train
    (ONNX Runtime is left out of them), with the losses of every step equal to eager's. Batch 4:
    at batch 2 the last BatchNorms normalize over two values per channel, and the rounding
    differences of any two implementations grow by 10x per SGD step (eager against sol: 7e-7 at
    the first loss, 8e-2 at the fifth); at batch 4 the fifth loss agrees to 1e-4."""
    out = _bench(tmp_path, "--models", "small_resnet", "--batch", "4", "--engines", "eager,onnxruntime,sol",
                 "--mode", "infer,train", ceilings=False)
    assert out.returncode == 0, out.stdout + out.stderr
    md = (tmp_path / "out" / "results.md").read_text()
    assert "### Inference" in md and "### Training step (forward + backward + optimizer step)" in md
    training = md[md.index("### Training step"):]
    header = next(ln for ln in training.splitlines() if ln.startswith("| model |"))
    assert "PyTorch eager ms | sol ms | sol vs PyTorch eager |" in header and "ONNX Runtime" not in header
    cells = _row(training, "small_resnet", 4)
    assert float(cells[2]) > 0 and float(cells[3]) > 0 and cells[4].endswith("x")
    assert "--mode infer,train" in md
    rows = json.loads((tmp_path / "out" / "results.json").read_text())["rows"]
    assert [r["mode"] for r in rows] == ["infer", "train"]
    train = rows[1]["cells"]
    assert set(train) == {"eager", "sol"}
    assert train["sol"]["ok"], train["sol"]["error"]
    assert train["sol"]["max_rel_diff"] < 1e-3 and train["sol"]["cold_s"] > 0
    assert not any("fall" in n or "compile cache" in n for n in train["sol"]["notes"]), train["sol"]["notes"]


def test_failed_engine_is_a_cell_not_a_crash(tmp_path: Path) -> None:
    out = _bench(tmp_path, "--models", "mlp", "--batch", "1", "--engines", "compile,sol", "--timeout", "1",
                 ceilings=False)
    assert out.returncode == 0, out.stdout + out.stderr
    md = (tmp_path / "out" / "results.md").read_text()
    cells = _row(md, "mlp", 1)
    assert cells[2].startswith("failed: compile: timed out after 1 s") and cells[3].startswith("failed:")
    assert "1. mlp batch 1, torch.compile: failed: compile: timed out after 1 s" in md
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    assert not any(c["ok"] for c in result["rows"][0]["cells"].values())


def test_busy_machine_runs_neighbours_says_so_and_leaves_none(tmp_path: Path) -> None:
    """--busy N: N CPU-bound processes share the machine while the engines are timed; the table
    says so and repeats the option; the neighbours are gone when the run ends."""
    out = _bench(tmp_path, "--models", "mlp", "--batch", "1", "--engines", "eager", "--busy", "1",
                 ceilings=False)
    assert out.returncode == 0, out.stdout + out.stderr
    md = (tmp_path / "out" / "results.md").read_text()
    assert "Shared machine: 1 CPU-bound neighbour process(es) ran through the whole run" in md
    assert "--busy 1" in md and float(_row(md, "mlp", 1)[2]) > 0
    left = subprocess.run(["pgrep", "-f", "PR_SET_PDEATHSIG"], capture_output=True, text=True).stdout.split()
    assert not left, f"neighbour processes left running: {left}"


def test_unknown_model_or_engine_is_refused(tmp_path: Path) -> None:
    out = _bench(tmp_path, "--models", "no_such_net", ceilings=False)
    assert out.returncode == 2 and "unknown benchmark model 'no_such_net'" in out.stderr
    out = _bench(tmp_path, "--models", "mlp", "--engines", "tvm", ceilings=False)
    assert out.returncode == 2 and "unknown engine 'tvm'" in out.stderr
    out = _bench(tmp_path, "--models", "mlp", "--mode", "finetune", ceilings=False)
    assert out.returncode == 2 and "unknown mode 'finetune'" in out.stderr
    out = _bench(tmp_path, "--models", "mlp", "--mode", "train", "--engines", "onnxruntime", ceilings=False)
    assert out.returncode == 2 and "none of onnxruntime runs a training step" in out.stderr


def _cell(engine: str, median: float | None, error: str = "") -> Cell:
    return Cell(engine, ok=median is not None, error=error, median_s=median, cold_s=2.0 if engine == "sol" else None,
                first_result_s=0.5, peak_rss_mib=100.0, resident_mib=80.0 if engine == "sol" else None)


def test_markdown_table_speedups_geomean_and_failures() -> None:
    engines = ["eager", "onnxruntime", "sol"]
    rows = [Row("a", 1, 8, (1, 3, 8, 8), {"eager": _cell("eager", 0.010), "onnxruntime": _cell("onnxruntime", 0.004),
                                          "sol": _cell("sol", 0.005)}),
            Row("a", 8, 8, (8, 3, 8, 8), {"eager": _cell("eager", 0.080), "onnxruntime": _cell(
                "onnxruntime", None, "export: RuntimeError: op | not supported"), "sol": _cell("sol", 0.010)})]
    result = BenchResult(rows, {"engines": engines, "repeats": 5, "warmup": 1, "command": "sol bench --models a"},
                         {"cpu": "test cpu", "threads": 2, "physical_cores": 2, "torch": "t", "onnxruntime": "o",
                          "sol-core": "s"}, None, "today")
    md = markdown(result)
    assert _row(md, "a", 1)[2:7] == ["10.0", "4.00", "5.00", "2.00x", "0.80x"]
    second = _row(md, "a", 8)
    assert second[3].startswith("failed: export: RuntimeError: op / not supported [1]")  # '|' kept out of the table
    assert second[5:7] == ["8.00x", "-"]
    mean = next(ln for ln in md.splitlines() if ln.startswith("| geometric mean"))
    assert "**4.00x**" in mean and "**0.80x**" in mean  # sqrt(2 * 8); the failed row left out
    assert "1. a batch 8, ONNX Runtime: failed: export: RuntimeError: op | not supported" in md
    assert "| sol max" not in md and "cold compile s (sol)" in md
    assert "resident after the runs MiB (PyTorch eager / ONNX Runtime / sol)" in md
    assert _row(md, "a", 1)[-2:-1] == ["- / - / 80"]  # a measure a worker could not take: "-"


def test_markdown_training_table_of_its_own() -> None:
    engines = ["eager", "onnxruntime", "sol"]
    rows = [Row("a", 8, 8, (8, 3, 8, 8), {"eager": _cell("eager", 0.010), "onnxruntime": _cell("onnxruntime", 0.004),
                                          "sol": _cell("sol", 0.005)}),
            Row("a", 8, 8, (8, 3, 8, 8), {"eager": _cell("eager", 0.030), "sol": _cell("sol", 0.020)}, mode="train"),
            Row("b", 8, 8, (8, 3, 8, 8), {"eager": _cell("eager", 0.030), "sol": _cell("sol", None, "boom")},
                mode="train")]
    result = BenchResult(rows, {"engines": engines, "repeats": 5, "warmup": 1, "command": "sol bench"},
                         {"cpu": "test cpu", "threads": 2, "physical_cores": 2, "torch": "t", "onnxruntime": "o",
                          "sol-core": "s"}, None, "today")
    md = markdown(result)
    infer, train = md.split("### Training step")
    assert _row(infer, "a", 8)[2:7] == ["10.0", "4.00", "5.00", "2.00x", "0.80x"]
    assert _row(train, "a", 8)[2:5] == ["30.0", "20.0", "1.50x"]
    assert _row(train, "b", 8)[3].startswith("failed: boom [1]")
    assert "1. b batch 8 training, sol: failed: boom" in md
    assert "ONNX Runtime" not in train.split("Notes:")[0]
    mean = next(ln for ln in train.splitlines() if ln.startswith("| geometric mean"))
    assert "**1.50x**" in mean  # the failed row left out
    assert "SGD" in md


def test_zoo_location_can_be_overridden(tmp_path: Path) -> None:
    zoo = tmp_path / "zoo.py"
    zoo.write_text("import torch\n\ndef tiny(num_classes=1000):\n    return torch.nn.Linear(3, 2)\n")
    code = ("from sol_benchmarks import models; z = models.load_zoo(); print(z.__file__); "
            "print(models.resolve('tiny').note)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env={**os.environ, "SOL_BENCH_ZOO": str(zoo)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [str(zoo), "zoo factory, image input assumed"]
    default = subprocess.run([sys.executable, "-c", "from sol_benchmarks import models; "
                              "print(models.zoo_path()); print(models.load_zoo().__name__)"],
                             capture_output=True, text=True,
                             env={k: v for k, v in os.environ.items() if k != "SOL_BENCH_ZOO"})
    # The package's own zoo (it ships in the wheel), found without the repository's benchmarks/.
    assert default.stdout.splitlines() == [str(ROOT / "benchmarks" / "src" / "sol_benchmarks" / "zoo.py"),
                                           "sol_benchmarks.zoo"], default.stderr


def test_repository_zoo_and_demo_scripts_are_the_packaged_ones(tmp_path: Path) -> None:
    """benchmarks/zoo.py and benchmarks/demo.py stay for the README's commands (`cd benchmarks &&
    sol inspect zoo:resnet18 ...`, scripts/demo.sh) and the tests' `import zoo`: the same module
    objects as the package's, also where sol-benchmarks is not installed."""
    code = ("import sys; sys.path.insert(0, {bench!r}); import zoo, sol_benchmarks.zoo as z; "
            "assert zoo is z and zoo.resnet18 is z.resnet18 and zoo._make_divisible is z._make_divisible; "
            "print(zoo.__name__)")
    out = subprocess.run([sys.executable, "-c", code.format(bench=str(ROOT / "benchmarks"))],
                         capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "sol_benchmarks.zoo", out.stderr
    # Without sol-benchmarks installed (-S: no site-packages, so no editable install; torch is
    # then missing too, so only the package's source tree being found is checked).
    out = subprocess.run([sys.executable, "-S", "-c", code.format(bench=str(ROOT / "benchmarks"))],
                         capture_output=True, text=True)
    assert "No module named 'torch'" in out.stderr and "sol_benchmarks/zoo.py" in out.stderr, out.stderr
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "demo.py"), "--help"], capture_output=True,
                         text=True)
    assert out.returncode == 0 and "--repeats" in out.stdout, out.stderr


@pytest.mark.slow
def test_sol_demo_command_runs_the_packaged_demo(tmp_path: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "sol.cli", "demo", "--batch", "1", "--size", "32", "--repeats", "3"],
                         capture_output=True, text=True, cwd=tmp_path, env={**os.environ, "PYTHONPATH": ""})
    assert out.returncode == 0, out.stdout + out.stderr
    assert "correctness:           OK (within 1e-3)" in out.stdout


def test_every_engine_gets_one_thread_per_physical_core_as_sols_cpu_device() -> None:
    """The harness counts cores with core's sol.host (it used to import the x86 plugin's copy and
    count logical CPUs when that plugin was missing)."""
    import sol.host
    from sol_benchmarks import harness

    assert harness.physical_cores is sol.host.physical_cores
    assert harness.machine_info(1)["physical_cores"] == sol.host.physical_cores()


def test_transformers_families_take_token_ids() -> None:
    """The Hugging Face families (hf_*) are built from configs and fed token ids in their
    vocabulary (int64), the same in every engine's process; ViT takes images."""
    pytest.importorskip("transformers", reason="transformers is a test dependency (scripts/env.sh)")
    import torch

    from sol_benchmarks import models

    assert {"hf_bert_base", "hf_gpt2", "hf_llama", "hf_vit_base"} <= set(models.MODELS)
    model, ids = models.build("hf_bert_base", 2, 16)
    again = models.build("hf_bert_base", 2, 16)[1]
    assert ids.dtype == torch.int64 and ids.shape == (2, 16) and torch.equal(ids, again)
    assert 0 <= int(ids.min()) and int(ids.max()) < 30522 and not model.training
    with torch.no_grad():
        assert model(ids).shape == (2, 16, 768)


@pytest.mark.slow
def test_rounds_alternate_the_engines_and_take_the_median_of_medians(tmp_path: Path) -> None:
    """--rounds 3: three timed processes per engine, the engine order reversed every other round
    (eager, sol, sol, eager, eager, sol), each engine's time the median of its three medians."""
    out = _bench(tmp_path, "--models", "mlp", "--batch", "1", "--engines", "eager,sol", "--rounds", "3",
                 ceilings=False)
    assert out.returncode == 0, out.stdout + out.stderr
    order = [ln.split(":")[0].strip() for ln in out.stderr.splitlines() + out.stdout.splitlines()
             if ln.strip().startswith("mlp-b1-") and ln.strip().split(":")[0].endswith("-run")]
    assert order == ["mlp-b1-eager-run", "mlp-b1-sol-run", "mlp-b1-sol-run", "mlp-b1-eager-run",
                     "mlp-b1-eager-run", "mlp-b1-sol-run"], order
    result = json.loads((tmp_path / "out" / "results.json").read_text())
    for engine, cell in result["rows"][0]["cells"].items():
        assert cell["ok"], (engine, cell["error"])
        assert len(cell["round_medians_s"]) == 3 and len(cell["times_s"]) == 9
        assert cell["median_s"] == sorted(cell["round_medians_s"])[1]
    md = (tmp_path / "out" / "results.md").read_text()
    assert "--rounds 3" in md and "Rounds: 3 timed processes per engine" in md
