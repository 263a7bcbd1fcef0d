"""Progress of long steps: drawn on a terminal, nothing elsewhere or with SOL_PROGRESS=0, the same
events on logging.getLogger("sol"); through sol.optimize and, in a real pseudo-terminal, through
the PyTorch frontend and the x86 device."""

from __future__ import annotations

import io
import logging
import os
import pty
import select
import subprocess
import sys
import threading
import types
from pathlib import Path
from typing import Any

import pluggy
import pytest

import sol
from sol import progress
from sol.config import config
from sol.ir import Graph
from sol.program import Program
from sol.roles import Frontend

import interpreter_device
from graphs import seed_net

hookimpl = pluggy.HookimplMarker("sol")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def terminal(monkeypatch: pytest.MonkeyPatch) -> Terminal:
    """stderr as a terminal that keeps what is written to it. Called in the test's body: pytest
    puts its own capture back on sys.stderr between a fixture's setup and the test's call."""
    monkeypatch.delenv("SOL_PROGRESS", raising=False)
    term = Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    return term


def test_terminal_shows_steps_and_erases_them(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = terminal(monkeypatch)
    with progress.step("tracing Net (toy)"), progress.step("g++: 2 parts", total=2) as s:
        s.advance()
        s.advance()
        assert s.done == 2
    text = stderr.getvalue()
    assert "sol: tracing Net (toy)" in text and "sol: g++: 2 parts" in text
    assert progress._DISPLAY._progress is None  # stopped with the last step


def test_no_terminal_or_turned_off_draws_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = terminal(monkeypatch)
    monkeypatch.setenv("SOL_PROGRESS", "0")
    with progress.step("compiling", total=1) as s:
        s.advance()
    assert stderr.getvalue() == ""
    monkeypatch.delenv("SOL_PROGRESS")
    plain = io.StringIO()  # not a terminal
    monkeypatch.setattr(sys, "stderr", plain)
    with progress.step("compiling"):
        pass
    assert plain.getvalue() == ""


def test_background_step_is_logged_not_drawn(monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    stderr = terminal(monkeypatch)
    caplog.set_level(logging.INFO, logger="sol")
    done = threading.Event()

    def build() -> None:
        with progress.step("building a runtime library", background=True):
            pass
        done.set()

    threading.Thread(target=build).start()
    assert done.wait(10)
    assert stderr.getvalue() == ""
    assert [r.getMessage() for r in caplog.records][0] == "sol: building a runtime library ..."


def test_log_has_the_same_events(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="sol")
    with progress.step("compiling Net for x86: 3 groups", total=2) as s:
        s.advance()
        s.advance()
    with pytest.raises(RuntimeError), progress.step("tracing Bad (toy)"):
        raise RuntimeError("boom")
    messages = [r.getMessage() for r in caplog.records]
    assert messages[:3] == ["sol: compiling Net for x86: 3 groups ...", "sol: compiling Net for x86: 3 groups: 1/2",
                            "sol: compiling Net for x86: 3 groups: 2/2"]
    assert messages[3].startswith("sol: compiling Net for x86: 3 groups: done in ")
    assert messages[4] == "sol: tracing Bad (toy) ..."
    assert messages[5].startswith("sol: tracing Bad (toy): stopped (an error or an interrupt) after") or \
        messages[5].startswith("sol: tracing Bad (toy): stopped (an error or an interrupt) in ")
    assert progress._DISPLAY._progress is None


def test_model_names_cannot_drive_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = terminal(monkeypatch)
    with progress.step("tracing \x1b[2J\x1b]0;pwned\x07Net\n(toy)"):
        pass
    text = stderr.getvalue()
    assert "\x1b[2J" not in text and "\x1b]0;" not in text and "?[2J?]0;pwned?Net?(toy)" in text


def test_steps_from_threads_share_one_display(monkeypatch: pytest.MonkeyPatch) -> None:
    stderr = terminal(monkeypatch)
    start = threading.Barrier(3)

    def work(name: str) -> None:
        with progress.step(name):
            start.wait(10)
            start.wait(10)

    threads = [threading.Thread(target=work, args=(f"part {i}",)) for i in range(2)]
    for t in threads:
        t.start()
    start.wait(10)
    assert progress._DISPLAY._tasks == 2
    start.wait(10)
    for t in threads:
        t.join(10)
    assert progress._DISPLAY._progress is None and progress._DISPLAY._tasks == 0
    assert "sol: part 0" in stderr.getvalue() and "sol: part 1" in stderr.getvalue()


# --- through sol.optimize -------------------------------------------------------------------


class ToyModel:
    pass


class ToyFrontend(Frontend):
    name, module = "toy", "toy"
    seen: list[dict[str, Any]] = []  # the options each import got

    def accepts(self, model: Any) -> bool:
        return isinstance(model, ToyModel)

    def import_graph(self, model: Any, example_inputs: tuple[Any, ...], options: dict[str, Any]) -> Graph:
        self.seen.append(dict(options))
        return seed_net()

    def wrap(self, program: Program, model: Any, graph: Graph) -> Any:
        return program


def _toy_plugins(fresh_plugins: Any) -> None:
    toy = types.ModuleType("toy_frontend")
    toy.SOL_PLUGIN_API = ">=1.0,<2"  # type: ignore[attr-defined]
    toy.sol_register_frontends = hookimpl(lambda registry: registry.register(ToyFrontend()))  # type: ignore[attr-defined]
    fresh_plugins.register(interpreter_device)
    fresh_plugins.register(toy, "toy")


def test_optimize_shows_tracing_and_compiling(fresh_plugins: Any, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch,
                                              caplog: pytest.LogCaptureFixture) -> None:
    stderr = terminal(monkeypatch)
    monkeypatch.setenv("SOL_CACHE_DIR", str(tmp_path))  # a cache miss: the compile step runs
    caplog.set_level(logging.INFO, logger="sol")
    _toy_plugins(fresh_plugins)
    sol.optimize(ToyModel(), device="interp")
    text = stderr.getvalue()
    assert "sol: tracing ToyModel (toy)" in text and "sol: compiling seed for interp: 2 groups" in text
    logged = [r.getMessage() for r in caplog.records]
    assert "sol: tracing ToyModel (toy) ..." in logged and "sol: compiling seed for interp: 2 groups ..." in logged

    monkeypatch.setenv("SOL_CACHE_DIR", str(tmp_path / "second"))
    quiet = io.StringIO()
    monkeypatch.setattr(sys, "stderr", quiet)
    sol.optimize(ToyModel(), device="interp")
    assert quiet.getvalue() == ""


def test_the_frontend_is_told_the_device_optimize_compiles_for(fresh_plugins: Any, tmp_path: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A frontend asks the device what it can compile (its fallback): optimize and explain name
    the device they resolved, the default one included, in ``options["device"]``."""
    monkeypatch.setenv("SOL_CACHE_DIR", str(tmp_path))
    _toy_plugins(fresh_plugins)
    ToyFrontend.seen.clear()
    sol.optimize(ToyModel(), device="interp")
    before = config["device"]
    config["device"] = "interp"  # sol.device.set("interp")
    try:
        sol.optimize(ToyModel())
        sol.explain(ToyModel())
    finally:
        config["device"] = before
    assert [o.get("device") for o in ToyFrontend.seen] == ["interp"] * 3


# --- a real terminal, a real model ------------------------------------------------------------

SCRIPT = """
import sys, torch
from sol.pytorch import optimize
width = int(sys.argv[1])  # another width: another network, so each run compiles (the cache is shared)
model = torch.nn.Sequential(torch.nn.Linear(8, width), torch.nn.ReLU()).eval()
optimize(model, (2, 8), device="x86")
"""


def _in_terminal(env: dict[str, str], width: int) -> str:
    """Run SCRIPT with stdout and stderr on a pseudo-terminal; what it drew there."""
    main, child = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT, str(width)], stdin=subprocess.DEVNULL, stdout=child,
                            stderr=child, env=env, close_fds=True)
    os.close(child)
    chunks = []
    while True:
        ready, _, _ = select.select([main], [], [], 120)
        if not ready:
            proc.kill()
            break
        try:
            data = os.read(main, 4096)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(main)
    assert proc.wait(60) == 0, b"".join(chunks).decode(errors="replace")
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_pytorch_model_on_x86_in_a_real_terminal(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("SOL_PROGRESS", "SOL_LOG")}
    env["SOL_CACHE_DIR"] = str(tmp_path / "cache")  # empty: the x86 runtime library is built once, first
    logged = subprocess.run([sys.executable, "-c", SCRIPT, "5"], capture_output=True, text=True,
                            env={**env, "SOL_LOG": "info"})
    assert logged.returncode == 0, logged.stderr
    assert "sol: tracing Sequential (pytorch): done in" in logged.stderr, logged.stderr
    assert "sol: compiling Sequential for x86: " in logged.stderr
    assert "sol: building the x86 runtime library" in logged.stderr  # in the background: logged, not drawn

    drawn = _in_terminal(env, 6)
    assert "sol: tracing Sequential (pytorch)" in drawn and "sol: compiling Sequential for x86" in drawn, drawn
    assert "sol: " not in _in_terminal({**env, "SOL_PROGRESS": "0"}, 7)
    piped = subprocess.run([sys.executable, "-c", SCRIPT, "9"], capture_output=True, text=True, env=env)
    assert piped.returncode == 0 and piped.stderr == "", piped.stderr
