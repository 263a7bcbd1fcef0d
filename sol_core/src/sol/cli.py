"""The ``sol`` command: plugins, inspect, cache, and the subcommands installed plugins add
(``sol_register_commands``). Imports no framework itself: ``sol inspect`` imports the user's
model module, which brings its own."""

from __future__ import annotations

import argparse
import importlib
import inspect
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sol.roles import Availability


def _plugins(args: argparse.Namespace) -> int:
    """The table of installed plugins. Exit status 1 when an installed plugin is not in use (it
    failed or was refused: its row says why), so that a broken install does not look healthy."""
    from sol.plugins import CORE, PLUGIN_API, failed, records, roles

    r = roles()
    print(f"sol-core plugin API {'.'.join(map(str, PLUGIN_API))}")
    registries = {"frontend": r.frontends, "device": r.devices, "backend": r.backends}
    rows = [("plugin", "distribution", "version", "provides", "status")]
    for rec in records():
        status = [_status(name, registries[kind].get(name).availability())
                  for kind, name in (role.split(":", 1) for role in rec.roles) if kind in registries]
        rows.append((rec.name, rec.distribution, rec.version, _provides(rec.roles), "; ".join(status) or "ok"))
    not_used = failed()
    for rec in not_used:  # installed, but sol is not using it: the row says why
        rows.append((rec.name, rec.distribution, rec.version, "-", rec.error))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)) + "  " + row[4])
    if not [name for name in r.frontends.names() if r.frontends.owner(name) != CORE]:
        print("no frontend installed for a framework (e.g. pip install sol-frontend-pytorch); "
              "networks built in sol's IR need none (frontend 'ir')")
    if not r.devices.names():
        print("no device installed (e.g. pip install sol-device-x86)" if not not_used
              else "no device in use: see the plugins above that are not in use")
    if not_used:
        plural = "s" if len(not_used) > 1 else ""
        print(f"{len(not_used)} installed plugin{plural} not in use: {', '.join(rec.name for rec in not_used)}",
              file=sys.stderr)
        return 1
    return 0


def _provides(roles: list[str]) -> str:
    """'device:x86, backend:onednn'; passes and ops counted rather than listed (core has dozens)."""
    shown = [role for role in roles if role.split(":", 1)[0] not in ("passes", "op")]
    for kind, word in (("op", "ops"), ("passes", "passes")):
        count = sum(role.startswith(f"{kind}:") for role in roles)
        shown += [f"{count} {word}"] if count else []
    return ", ".join(shown) or "-"


def _status(name: str, found: Availability) -> str:
    """'x86: available (detail)' or 'pytorch: unavailable: torch is not installed (...)'."""
    if found.available:
        return f"{name}: available" + (f" ({found.detail})" if found.detail else "")
    return f"{name}: unavailable" + (f": {found.detail}" if found.detail else "")


def _load_model(spec: str) -> Any:
    """'package.module:factory' -> factory() (or the attribute itself if not callable)."""
    if ":" not in spec:
        raise SystemExit(f"sol: model must be given as module:attribute, got {spec!r}")
    mod, attr = spec.split(":", 1)
    sys.path.insert(0, "")
    obj = importlib.import_module(mod)
    for part in attr.split("."):
        obj = getattr(obj, part)
    model = obj() if inspect.isclass(obj) or inspect.isfunction(obj) else obj
    if hasattr(model, "eval"):
        model.eval()
    return model


def _input_spec(text: str) -> tuple[tuple[int, ...], str | None]:
    """'8,3,224,224' -> ((8, 3, 224, 224), None); '1,128:int64' -> ((1, 128), 'int64')."""
    from sol.ir import DTYPES

    shape_text, _, dtype = text.partition(":")
    try:
        shape = tuple(int(d) for d in shape_text.split(",") if d.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"a shape is comma-separated integers, got {shape_text!r}") from None
    if any(d < 0 for d in shape):
        raise argparse.ArgumentTypeError(f"dimensions cannot be negative, got {shape_text!r}")
    dtype = dtype.strip()
    if dtype and dtype not in DTYPES:
        raise argparse.ArgumentTypeError(f"unknown dtype {dtype!r}; sol knows {', '.join(DTYPES)}")
    return shape, dtype or None


def _inspect(args: argparse.Namespace) -> int:
    from sol.api import explain, frontend_for
    from sol.explanation import Explanation

    model = _load_model(args.model)
    specs: list[tuple[tuple[int, ...], str | None]] = args.input
    examples: list[Any] = list(shape for shape, _ in specs)  # a bare shape: float32, as optimize() takes it
    if any(dtype for _, dtype in specs):  # typed inputs (token ids, masks): tensors of the model's framework
        frontend = frontend_for(model)
        examples = [frontend.example_input(shape, dtype) if dtype else shape for shape, dtype in specs]
    if args.profile:
        from sol.profiling import profile

        result = profile(model, *examples, device=args.device, runs=args.runs)
        print(result)
        report = Explanation(result.plan)
    else:
        report = explain(model, *examples, device=args.device)
        print(report)
    if args.dot:
        report.write_dot(args.dot)
        print(f"wrote {args.dot}")
    if args.svg:
        report.write_svg(args.svg)
        print(f"wrote {args.svg}")
    return 0


def _cache(args: argparse.Namespace) -> int:
    from sol import cache

    if args.action == "clear":
        done = cache.clear()
        running = f"; {done.in_progress} builds in progress left alone" if done.in_progress else ""
        print(f"removed {done.entries} entries and {done.temporaries} temporaries left by interrupted builds "
              f"from {cache.cache_dir()}{running}")
    else:
        i = cache.info()
        temporaries = ""
        if i["temporaries"]:
            stale, live = int(str(i["stale"])), int(str(i["temporaries"])) - int(str(i["stale"]))
            parts = [f"{live} of builds in progress"] if live else []
            parts += [f"{stale} left by interrupted builds: 'sol cache clear' removes them"] if stale else []
            temporaries = f", {i['temporaries']} temporaries ({'; '.join(parts)})"
        print(f"{i['path']}: {i['entries']} entries{temporaries}, {float(str(i['bytes'])) / 2**20:.1f} MiB")
    return 0


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _core_commands() -> list[Any]:
    """Core's commands written as :class:`sol.commands.Command` s (their names are in
    ``CORE_COMMANDS``: no plugin can take them over)."""
    from sol.deployment import DeployCommand

    return [DeployCommand()]


def _plugin_commands() -> list[Any]:
    """Commands registered by plugins; a plugin whose registration fails costs its own commands,
    not the CLI (``sol plugins`` must still run to show what is installed)."""
    from sol.plugins import commands

    try:
        return list(commands())
    except Exception as exc:  # a broken plugin must not take the whole CLI down
        print(f"sol: warning: plugin commands unavailable: {exc}", file=sys.stderr)
        return []


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sol", description="sol: transparent neural-network acceleration")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("plugins", help="list installed plugins, what each provides, whether it can work here or why not "
                                   "(exit status 1 when an installed plugin is not in use)")
    p = sub.add_parser("inspect", help="print the plan for a model: groups, classes, libraries")
    p.add_argument("model", help="module:factory returning the model, e.g. mymodels:resnet18")
    p.add_argument("--input", action="append", required=True, type=_input_spec,
                   help="input shape, e.g. 8,3,224,224 (float32), or shape:dtype, e.g. 1,128:int64 for token ids "
                        "(repeat per input)")
    p.add_argument("--device", default=None)
    p.add_argument("--dot", default=None, help="write the fused graph as Graphviz DOT here")
    p.add_argument("--svg", default=None,
                   help="draw the fused graph as an SVG picture here: groups coloured by layer class, their ops "
                        "and libraries, tensor types on the edges")
    p.add_argument("--profile", action="store_true",
                   help="compile with per-group timers, run on random inputs and print each group's time, "
                        "FLOPs, bytes, GFLOP/s, GB/s and fraction of this machine's roofline")
    p.add_argument("--runs", type=_positive, default=10, help="--profile: timed runs (default 10)")
    c = sub.add_parser("cache", help="show or clear the compile cache")
    c.add_argument("action", choices=["info", "clear"], nargs="?", default="info")
    commands = {"plugins": _plugins, "inspect": _inspect, "cache": _cache}
    for cmd in [*_core_commands(), *_plugin_commands()]:
        sp = sub.add_parser(cmd.name, help=cmd.help, description=cmd.help)
        cmd.configure(sp)
        commands[cmd.name] = cmd.run
    args = parser.parse_args(argv)
    try:
        return commands[args.command](args)
    except Exception as exc:  # the CLI reports; a traceback helps nobody here
        from sol.errors import SolError

        if isinstance(exc, SolError):
            print(f"sol: error: {exc}", file=sys.stderr)
            return 2
        raise


if __name__ == "__main__":
    sys.exit(main())
