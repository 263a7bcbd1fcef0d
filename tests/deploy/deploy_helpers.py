"""Running a deployed library the way a user does: its example program on input files, a C++
program of the test's own against its header, with the system's compilers."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from sol.deployment import Deployment

needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None or shutil.which("g++") is None, reason="needs gcc and g++")


def clean_env() -> dict[str, str]:
    """The environment without LD_LIBRARY_PATH and without the virtual environment on PATH:
    what a program sees on a machine without Python's packages."""
    env = {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "LD_PRELOAD", "VIRTUAL_ENV")}
    env["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    env["LD_LIBRARY_PATH"] = ""
    return env


def run_example(folder: Path, weights: str, inputs: Sequence[np.ndarray], out_dtypes: Sequence[np.dtype],
                work: Path) -> list[np.ndarray]:
    """``./example WEIGHTS in0.bin ... out0.bin ...`` in ``folder``; the outputs as flat arrays."""
    work.mkdir(parents=True, exist_ok=True)
    names = []
    for i, x in enumerate(inputs):
        path = work / f"in{i}.bin"
        np.ascontiguousarray(x).tofile(path)
        names.append(str(path))
    outs = [work / f"out{j}.bin" for j in range(len(out_dtypes))]
    for o in outs:
        o.unlink(missing_ok=True)
    done = subprocess.run(["./example", weights, *names, *map(str, outs)], cwd=folder, env=clean_env(),
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, f"example failed ({done.returncode}): {done.stderr}{done.stdout}"
    return [np.fromfile(o, dtype=d) for o, d in zip(outs, out_dtypes)]


def compare(got: np.ndarray, want: np.ndarray, rtol: float = 1e-4, atol: float = 1e-5) -> None:
    """NaN exactly where the framework has NaN, infinities equal, the rest within rtol."""
    got = got.reshape(want.shape)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg="NaN pattern differs")
    np.testing.assert_array_equal(np.isinf(got), np.isinf(want), err_msg="infinities differ")
    np.testing.assert_array_equal(got[np.isinf(got)], want[np.isinf(want)])
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], rtol=rtol, atol=atol)


def build_cpp(dep: Deployment, source: str, work: Path, name: str = "prog") -> Path:
    """Compile a C++ program against the deployment's header and shared library."""
    work.mkdir(parents=True, exist_ok=True)
    src = work / f"{name}.cpp"
    src.write_text(source)
    exe = work / name
    done = subprocess.run(["g++", "-std=c++17", "-O1", "-Wall", "-Werror", "-o", str(exe), str(src),
                           f"-I{dep.path}", f"-L{dep.path}", f"-l{dep.name}", f"-Wl,-rpath,{dep.path}"],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    return exe
