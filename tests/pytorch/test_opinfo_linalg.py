"""Dense linear algebra on LU and Cholesky factorizations (issue #22 item 3): det, slogdet, logdet,
inv_ex, solve_ex, lu_factor_ex, lu, lu_unpack, lu_solve, cholesky_ex, cholesky, cholesky_solve,
cholesky_inverse, solve_triangular and triangular_solve, composed by the PyTorch frontend of core's
lu_factor, lu_permutation, triangular_solve and cholesky ops (``sol.ops.factor``).

``test_reference`` runs each case's imported graph with sol's NumPy references, ``test_device``
all cases of a family compiled as one model on each device (x86, and the VE in its emulation),
both against eager. Pivots and permutations must equal eager's exactly (integer values: ties in
the pivot search pick the first row as LAPACK does)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch

import sol
from sol.errors import LinAlgError, UnsupportedOpError

from op_cases import Cases, Fn, case_tests, checked_arrays

torch.manual_seed(0)

A = torch.randn(2, 4, 4)
WIDE = torch.randn(3, 5)
TALL = torch.randn(2, 5, 3)
TIES = torch.randint(-2, 3, (3, 4, 4)).float()  # equal |values| in pivot searches, zero pivots
B = torch.randn(2, 4, 3)
SINGULAR = torch.tensor([[[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 0.0, 1.0]]])
G = torch.randn(2, 4, 4)
SPD = G @ G.mT + 4 * torch.eye(4)
TRI = torch.randn(2, 4, 4) + 5 * torch.eye(4)

CASES = Cases()
case = CASES.add

case("lu", "det-slogdet", lambda a, t: (torch.linalg.det(a), torch.linalg.slogdet(a), torch.logdet(a @ a.mT),
                                        torch.linalg.det(t), torch.linalg.slogdet(t)), A, TIES)
case("lu", "singular", lambda s: (torch.linalg.det(s), torch.linalg.slogdet(s), torch.linalg.lu_factor_ex(s),
                                  torch.linalg.inv_ex(s)[1]), SINGULAR)
case("lu", "factor", lambda a, w, t, ties: (torch.linalg.lu_factor_ex(a), torch.linalg.lu(w), torch.linalg.lu(t),
                                            torch.linalg.lu_factor_ex(ties)), A, WIDE, TALL, TIES)
case("checked", "inv-solve-factor", lambda a, b, s: (
    torch.linalg.inv(a), torch.linalg.solve(a, b), torch.linalg.solve(a, b[..., 0]), torch.linalg.lu_factor(a),
    torch.linalg.cholesky(s), torch.linalg.cholesky(s, upper=True),
    torch.linalg.tensorinv(a[0].reshape(2, 2, 2, 2), ind=2), torch.linalg.tensorinv(a[1].reshape(4, 2, 2), ind=1),
    torch.linalg.tensorsolve(a[0].reshape(2, 2, 4), b[0, :, 0].reshape(2, 2)),
    torch.linalg.tensorsolve(a[1].reshape(2, 2, 2, 2), b[1, :2, :2], dims=(1,))), A, B, SPD)
case("lu", "unpack", lambda a: torch.lu_unpack(*torch.linalg.lu_factor_ex(a)[:2]), A)
case("solve", "inv-solve", lambda a, b: (torch.linalg.inv_ex(a), torch.linalg.solve_ex(a, b),
                                         torch.linalg.solve_ex(a, b[..., 0]),
                                         torch.linalg.solve_ex(a, b.mT, left=False),
                                         torch.linalg.solve_ex(a[0], b)), A, B)
case("solve", "lu_solve", lambda a, b: tuple(
    torch.linalg.lu_solve(*torch.linalg.lu_factor_ex(a)[:2], rhs, left=left, adjoint=adj)
    for rhs, left in ((b, True), (b.mT, False)) for adj in (False, True)), A, B)
case("cholesky", "factor", lambda s, g: (torch.linalg.cholesky_ex(s), torch.linalg.cholesky_ex(s, upper=True),
                                         torch.cholesky(s), torch.cholesky(s, upper=True),
                                         torch.linalg.cholesky_ex(g)[1]), SPD, G)
case("cholesky", "solve-inverse", lambda s, b: (
    torch.cholesky_solve(b, torch.linalg.cholesky_ex(s)[0]),
    torch.cholesky_solve(b, torch.linalg.cholesky_ex(s)[0].mT, upper=True),
    torch.cholesky_inverse(torch.linalg.cholesky_ex(s[0])[0]),
    torch.cholesky_inverse(torch.linalg.cholesky_ex(s)[0].mT, upper=True)),
    SPD, B)
case("triangular", "solves", lambda t, b: tuple(
    [torch.linalg.solve_triangular(t, b, upper=up, unitriangular=unit)
     for up in (False, True) for unit in (False, True)]
    + [torch.linalg.solve_triangular(t, b.mT, upper=True, left=False),
       torch.triangular_solve(b, t, upper=False, transpose=True),
       torch.triangular_solve(b, t[0], unitriangular=True)]), TRI, B)



def _close(got: Any, want: torch.Tensor, what: str) -> None:
    """Integers (pivots, info) exactly; floats to 1e-4 relative (float32 factorizations of
    well-conditioned matrices; eager's LAPACK blocks its sums differently), NaN where eager's."""
    g, w = checked_arrays(got, want, what)
    if w.dtype.kind in "iub":
        np.testing.assert_array_equal(g, w, err_msg=what)
    else:
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5, equal_nan=True, err_msg=what)


test_reference, test_device = case_tests(CASES, _close)


class Checked(torch.nn.Module):
    def forward(self, a: torch.Tensor) -> Any:
        return torch.cholesky(a)


def test_cholesky_of_a_matrix_not_positive_definite_raises_pytorchs_linalg_error(device: str) -> None:
    """torch.cholesky raises torch.linalg.LinAlgError for a matrix that is not positive definite;
    so does the compiled model (never a NaN factor; not an IndexError), naming the op and the
    minor as eager does, and it still factors a positive definite one."""
    m = sol.optimize(Checked().eval(), SPD, fallback=False, device=device)
    torch.testing.assert_close(m(SPD), torch.cholesky(SPD), rtol=1e-4, atol=1e-5)
    bad = SPD.clone()
    bad[1, 2, 2] = -50.0
    with pytest.raises(torch.linalg.LinAlgError, match="leading minor of order 3 is not positive-definite"):
        torch.cholesky(bad)
    with pytest.raises(torch.linalg.LinAlgError, match=r": cholesky <- .*: the input is not positive-definite: "
                                                       "the leading minor of order 3 is not positive-definite") as err:
        m(bad)
    assert isinstance(err.value, LinAlgError) and not isinstance(err.value, IndexError)
    torch.testing.assert_close(m(SPD), torch.cholesky(SPD), rtol=1e-4, atol=1e-5)


class Inverse(torch.nn.Module):
    def forward(self, a: torch.Tensor) -> Any:
        return torch.linalg.inv(a) + torch.linalg.solve(a, a[..., :1])


def test_inverse_of_a_singular_matrix_raises_pytorchs_linalg_error(device: str) -> None:
    """linalg.inv and linalg.solve raise torch.linalg.LinAlgError for a singular matrix (PyTorch
    traces them with a run-time error check); so does the compiled model, never a matrix of
    inf/NaN, and ``except sol.errors.LinAlgError`` catches it too."""
    m = sol.optimize(Inverse().eval(), A, fallback=False, device=device)
    torch.testing.assert_close(m(A), Inverse()(A), rtol=1e-3, atol=1e-4)
    bad = torch.cat([A[:1], SINGULAR.new_zeros(1, 4, 4)])
    with pytest.raises(torch.linalg.LinAlgError):
        Inverse()(bad)
    with pytest.raises(torch.linalg.LinAlgError, match=r"linalg\.(inv|solve) <- .*: the input matrix is singular: "
                                                       "the diagonal element 1 of U is zero") as err:
        m(bad)
    assert isinstance(err.value, LinAlgError) and not isinstance(err.value, IndexError)


def test_torch_compile_raises_pytorchs_linalg_error_for_a_singular_matrix(device: str) -> None:
    """The same through ``torch.compile(backend="sol")``: Dynamo's graph runs compiled and a
    singular matrix raises what eager raises."""
    torch._dynamo.reset()
    try:
        m = torch.compile(Inverse().eval(), backend="sol", options={"device": device})
        with torch.no_grad():
            torch.testing.assert_close(m(A), Inverse()(A), rtol=1e-3, atol=1e-4)
            with pytest.raises(torch.linalg.LinAlgError, match="the input matrix is singular") as err:
                m(torch.cat([A[:1], SINGULAR.new_zeros(1, 4, 4)]))
        assert isinstance(err.value, LinAlgError)
    finally:
        torch._dynamo.reset()


class Det(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.linalg.det(self.w + x)


def test_training_through_a_factorization_is_refused_by_name() -> None:
    """No gradient rule: training through det is refused naming the factorization, never a
    wrong gradient."""
    with pytest.raises(UnsupportedOpError, match="lu_factor has no gradient rule"):
        sol.optimize(Det().train(), torch.randn(3, 3), fallback=False, device="x86")


class DetFactors(torch.nn.Module):
    def forward(self, a: torch.Tensor) -> Any:
        det, lu, pivots = torch.ops.aten._linalg_det(a)
        return det, lu, pivots


def test_det_factors_are_refused_but_det_compiles() -> None:
    """PyTorch's _linalg_det returns the LU of a row-major matrix's transpose (its layout
    shortcut); sol factors the matrix itself, so reading those factors is refused by name, while
    torch.linalg.det (the determinant only) compiles."""
    with pytest.raises(UnsupportedOpError, match="_linalg_det's LU factors"):
        sol.optimize(DetFactors().eval(), A, fallback=False, device="x86")
    fast = sol.optimize(Fn(torch.linalg.det).eval(), A, fallback=False, device="x86")
    torch.testing.assert_close(fast(A), torch.linalg.det(A), rtol=1e-4, atol=1e-5)
