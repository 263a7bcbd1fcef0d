"""``sol bench`` and ``sol demo``: the commands this plugin adds to the sol CLI.

Importing this module imports argparse and core only; the harness, the report and every
framework are imported when a command runs.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

from sol.plugin_api import Command

DEVICE = "x86"  # the device the harness runs sol on, and whose ceilings it measures


def _csv(text: str) -> list[str]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise argparse.ArgumentTypeError("expected a comma-separated list")
    return items


def _batches(text: str) -> list[int]:
    try:
        values = [int(t) for t in _csv(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"batch sizes must be integers, got {text!r}") from None
    if min(values) < 1:
        raise argparse.ArgumentTypeError(f"batch sizes must be positive, got {text!r}")
    return values


def _modes(text: str) -> list[str]:
    from sol_benchmarks.engines import MODES

    values = list(dict.fromkeys(_csv(text)))
    unknown = [v for v in values if v not in MODES]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown mode {unknown[0]!r}; choose from {', '.join(MODES)}")
    return values


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


class BenchCommand(Command):
    name = "bench"
    help = ("benchmark the model zoo: PyTorch eager, torch.compile, ONNX Runtime and sol at batch 1 and 8 "
            "(medians, speedups, compile times, peak memory), written as a Markdown table and a PNG plot")

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--models", type=_csv, default=None,
                            help="comma-separated zoo models (default: the whole zoo; --quick: small_resnet)")
        parser.add_argument("--batch", type=_batches, default=[1, 8], help="batch sizes (default 1,8)")
        parser.add_argument("--engines", type=_csv, default=None,
                            help="eager,torch.compile,onnxruntime,sol (the default: all)")
        parser.add_argument("--mode", type=_modes, default=["infer"],
                            help="infer (inference rows, the default), train (training-step rows: forward, "
                                 "loss, backward, SGD step; eager, torch.compile and sol), or infer,train")
        parser.add_argument("--repeats", type=_positive, default=None, help="timed runs per engine (default 10)")
        parser.add_argument("--warmup", type=int, default=None, help="untimed runs before them (default 3)")
        parser.add_argument("--rounds", type=_positive, default=1,
                            help="timed processes per engine, the engines in alternating order, each time the "
                                 "median of the rounds' medians (default 1): for machines whose speed drifts")
        parser.add_argument("--size", type=_positive, default=None,
                            help="image size for every model (default: 224; --quick: the smallest the tests use)")
        parser.add_argument("--threads", type=_positive, default=None,
                            help="threads for every engine (default: the physical cores)")
        parser.add_argument("--timeout", type=float, default=None,
                            help="seconds before an engine's process is stopped (default 1800; --quick: 300)")
        parser.add_argument("--busy", type=int, default=0, metavar="N",
                            help="run N CPU-bound neighbour processes during the whole run: how each engine "
                                 "degrades on a shared machine (the default warm-up becomes 24 runs: sol's x86 "
                                 "device picks its thread count from its first calls' times)")
        parser.add_argument("--out", type=Path, default=Path("bench-results"),
                            help="folder for results.md, results.png, results.json and logs/")
        parser.add_argument("--quick", action="store_true",
                            help="tiny settings for tests: 3 runs after 1 warm-up, small inputs, quick ceilings")
        parser.add_argument("--keep-work", action="store_true", help="keep the engines' caches and outputs")
        parser.add_argument("--ceilings", action="store_true",
                            help="only measure this machine's ceilings again (SGEMM, memory bandwidth), cache "
                                 "them for `sol inspect --profile`, print them and exit")

    def run(self, args: argparse.Namespace) -> int:
        from sol import roofline
        from sol_benchmarks import ceilings, engines, harness, models, report

        threads = args.threads or harness.physical_cores()
        if args.ceilings:
            c = ceilings.measure(threads)
            path = roofline.save(DEVICE, c)
            print(f"{c.flops_per_s / 1e9:.1f} GFLOP/s SGEMM, {c.bytes_per_s / 1e9:.1f} GB/s memory, "
                  f"{c.threads} thread(s): {c.basis}\ncached in {path}")
            return 0
        names = args.models or (models.QUICK_DEFAULT if args.quick else models.DEFAULT)
        try:
            for name in names:
                models.resolve(name)
            chosen = [engines.canonical(e) for e in (args.engines or list(engines.TITLES))]
        except ValueError as exc:
            print(f"sol bench: {exc}", file=sys.stderr)
            return 2
        chosen = list(dict.fromkeys(chosen))
        if args.mode == ["train"] and not any(e in engines.TRAINING for e in chosen):
            print(f"sol bench: none of {', '.join(chosen)} runs a training step (those that do: "
                  f"{', '.join(engines.TRAINING)})", file=sys.stderr)
            return 2
        options = harness.Options(
            models=list(names), batches=args.batch, engines=chosen,
            repeats=args.repeats or (3 if args.quick else 10),
            warmup=args.warmup if args.warmup is not None else (1 if args.quick else 24 if args.busy else 3),
            threads=threads, timeout=args.timeout or (300.0 if args.quick else 1800.0), out=args.out,
            size=args.size, quick=args.quick, keep_work=args.keep_work, modes=args.mode, busy=max(args.busy, 0),
            rounds=args.rounds)
        options.command = _command_line(options)
        measured = _ceilings(threads, args.quick)
        result = harness.Harness(options).run(measured)
        written = report.write(result, options.out)
        print(written["markdown"].read_text())
        print("wrote " + ", ".join(str(p) for p in written.values()))
        return 0


def _ceilings(threads: int, quick: bool) -> dict | None:
    """The cached ceilings when they were measured with this thread count, else measured now
    (and cached, unless quick: quick ones are too rough to keep)."""
    from dataclasses import asdict

    from sol import roofline
    from sol_benchmarks import ceilings

    found = roofline.load(DEVICE)
    if found is None or found.threads != threads:
        try:
            found = ceilings.measure(threads, quick=quick)
        except Exception as exc:  # the benchmark itself does not need them
            print(f"sol bench: could not measure the ceilings: {exc}", file=sys.stderr)
            return None
        if not quick:
            roofline.save(DEVICE, found)
    return asdict(found)


def _command_line(o: object) -> str:
    """The options as a command that repeats this run."""
    from sol_benchmarks.harness import Options

    assert isinstance(o, Options)
    parts = ["sol", "bench", "--models", ",".join(o.models), "--batch", ",".join(map(str, o.batches)),
             "--engines", ",".join(o.engines), "--repeats", str(o.repeats), "--warmup", str(o.warmup),
             "--threads", str(o.threads)]
    if o.modes != ["infer"]:
        parts += ["--mode", ",".join(o.modes)]
    if o.size:
        parts += ["--size", str(o.size)]
    if o.busy:
        parts += ["--busy", str(o.busy)]
    if o.rounds > 1:
        parts += ["--rounds", str(o.rounds)]
    if o.quick:
        parts.append("--quick")
    parts += ["--out", str(o.out)]
    return " ".join(shlex.quote(p) for p in parts)


class DemoCommand(Command):
    name = "demo"
    help = "optimize a ResNet-18 (batch 8) on x86 and print eager time, sol time, speedup and largest difference"

    def configure(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--batch", type=_positive, default=8)
        parser.add_argument("--size", type=_positive, default=224)
        parser.add_argument("--repeats", type=_positive, default=20)

    def run(self, args: argparse.Namespace) -> int:
        from sol_benchmarks.demo import main  # imports torch: only when the command runs

        return main(["--batch", str(args.batch), "--size", str(args.size), "--repeats", str(args.repeats)])
