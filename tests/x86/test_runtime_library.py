"""The x86 oneDNN runtime library (libsol_x86_onednn.so): built once into the compile cache,
shared by every network, started early by the device's prepare(), failures reported."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from sol.api import compile_graph
from sol.debug import run_reference
from sol.errors import CompileError
from sol.plugins import roles
from sol_x86 import compiler as cc
from sol_x86.libraries import find_onednn

from graphs import conv_block, randn, seed_net

pytestmark = pytest.mark.skipif(find_onednn() is None or shutil.which("g++") is None,
                                reason="needs g++ and oneDNN")


def _wrapper(tmp_path: Path, body: str = 'exec g++ "$@"') -> tuple[Path, Path]:
    """A $SOL_CXX that logs each command line, then runs ``body``."""
    log = tmp_path / "cxx.log"
    script = tmp_path / "cxx.sh"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{log}"\n{body}\n')
    script.chmod(0o755)
    return script, log


def _runtime_builds(log: Path) -> int:
    return sum(cc.RUNTIME_SOURCE in line for line in log.read_text().splitlines()) if log.exists() else 0


@pytest.fixture
def private(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh compile cache and a logging compiler: nothing built yet."""
    monkeypatch.setenv("SOL_CACHE_DIR", str(tmp_path / "cache"))
    script, log = _wrapper(tmp_path)
    monkeypatch.setenv("SOL_CXX", str(script))
    return log


def _check(program: object, g: object) -> None:
    xs = [randn(*v.shape) for v in g.inputs]  # type: ignore[attr-defined]
    for got, want in zip(program(*xs), run_reference(g, xs)):  # type: ignore[operator]
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * float(np.abs(want).max()))


def test_built_once_and_shared_by_two_networks(private: Path, tmp_path: Path) -> None:
    g1, g2 = seed_net(1), conv_block(True)
    p1, p2 = compile_graph(g1, "x86"), compile_graph(g2, "x86")
    _check(p1, g1)
    _check(p2, g2)
    assert _runtime_builds(private) == 1
    libs = list((tmp_path / "cache").rglob(f"lib{cc.RUNTIME_NAME}.so"))
    assert len(libs) == 1 and libs[0] == cc.RUNTIME.path()
    # Both networks record the same library as a dependency.
    for p in (p1, p2):
        dynamic = subprocess.run(["readelf", "-d", p.info["artifact"]], capture_output=True, text=True).stdout
        assert f"lib{cc.RUNTIME_NAME}.so" in dynamic and libs[0].parent.name in dynamic


def test_compile_after_prepare_waits_for_the_background_build(private: Path) -> None:
    roles().devices.get("x86").prepare()
    roles().devices.get("x86").prepare()  # a second call starts nothing new
    g = seed_net(1)
    program = compile_graph(g, "x86")
    _check(program, g)
    assert _runtime_builds(private) == 1


def test_network_loads_without_python_help(private: Path) -> None:
    """The C ABI stays usable from any program: the network finds the runtime library itself
    (DT_NEEDED + rpath), nothing has to preload it."""
    artifact = compile_graph(seed_net(1), "x86").info["artifact"]
    code = f"import ctypes; print(ctypes.CDLL({artifact!r}).sol_abi_version())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "1", out.stderr


def test_a_failing_background_build_is_reported_not_hung(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOL_CACHE_DIR", str(tmp_path / "cache"))
    # The compiler works on networks but fails on the runtime library's source.
    script, _ = _wrapper(tmp_path, f'case "$*" in *{cc.RUNTIME_SOURCE}*) echo "sol-test: runtime library '
                                   f'broken" >&2; exit 3;; esac\nexec g++ "$@"')
    monkeypatch.setenv("SOL_CXX", str(script))
    roles().devices.get("x86").prepare()
    t0 = time.perf_counter()
    with pytest.raises(CompileError, match=r"exit 3\) on the x86 runtime library(.|\n)*runtime library broken"
                                           r"(.|\n)*command: "):
        compile_graph(seed_net(1), "x86")
    assert time.perf_counter() - t0 < 120
    # Tried again at the next compile, not remembered forever: still failing, still reported.
    with pytest.raises(CompileError, match="runtime library broken"):
        compile_graph(seed_net(2), "x86")


def test_a_broken_compiler_names_the_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOL_CACHE_DIR", str(tmp_path / "cache"))
    script, _ = _wrapper(tmp_path, 'echo "sol-test: compiler is broken" >&2; exit 1')
    monkeypatch.setenv("SOL_CXX", str(script))
    roles().devices.get("x86").prepare()
    with pytest.raises(CompileError, match="compiler is broken"):
        compile_graph(seed_net(1), "x86")


def test_a_changed_runtime_library_changes_network_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    dev = roles().devices.get("x86")
    before = dev.compiler.identity()
    real = cc._template
    monkeypatch.setattr(cc, "_template", lambda name: real(name) + ("\n// changed" if name.endswith(".cpp") else ""))
    assert dev.compiler.identity() != before


def test_a_forked_child_does_not_wait_for_the_parents_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A build in flight at fork() has no thread in the child: the child builds on its own."""
    monkeypatch.setenv("SOL_CACHE_DIR", str(tmp_path / "cache"))
    script, _ = _wrapper(tmp_path, 'sleep 1\nexec g++ "$@"')
    monkeypatch.setenv("SOL_CXX", str(script))
    cc.RUNTIME.start()
    pid = os.fork()
    if pid == 0:  # the child: exit 0 once it has the library
        code = 1
        try:
            code = 0 if cc.RUNTIME.path().exists() else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            break
        time.sleep(0.1)
    else:
        os.kill(pid, 9)
        pytest.fail("the forked child hung waiting for its parent's build")
    assert cc.RUNTIME.path().exists()
