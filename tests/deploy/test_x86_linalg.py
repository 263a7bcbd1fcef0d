"""A deployed network's failed factorization check (a matrix that is not positive definite given
to ``torch.linalg.cholesky``) is its own return code, ``NAME_ERR_LINALG``, with the message
naming the op and the minor, as ``sol.optimize`` raises ``LinAlgError``: not an index error."""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import torch

import sol

from deploy_helpers import clean_env, compare, needs_gcc, run_example

pytestmark = needs_gcc


class Cholesky(torch.nn.Module):
    def forward(self, a: torch.Tensor) -> torch.Tensor:
        return torch.linalg.cholesky(a)


def test_a_matrix_not_positive_definite_is_err_linalg(tmp_path: Path) -> None:
    torch.manual_seed(0)
    g = torch.randn(2, 4, 4)
    spd = g @ g.mT + 4 * torch.eye(4)
    dep = sol.deploy(Cholesky().eval(), spd, path=tmp_path / "chol", name="chol")
    assert "CHOL_ERR_LINALG 8" in (dep.path / "chol.h").read_text()
    [got] = run_example(dep.path, "chol.weights", [spd.numpy()], [np.dtype(np.float32)], tmp_path / "io")
    compare(got, torch.linalg.cholesky(spd).numpy())
    bad = spd.clone()
    bad[1, 2, 2] = -50.0
    bad.numpy().tofile(tmp_path / "bad.bin")
    done = subprocess.run(
        ["./example", "chol.weights", str(tmp_path / "bad.bin"), str(tmp_path / "out.bin")],
        cwd=dep.path,
        env=clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 1
    assert "chol_run: CHOL_ERR_LINALG: chol_run: linalg.cholesky <- " in done.stderr
    assert "the input is not positive-definite: the leading minor of order 3 is not positive-definite" in done.stderr
