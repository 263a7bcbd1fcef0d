"""Dense matrix factorizations and triangular solves of small batched matrices: ``lu_factor``,
``lu_permutation``, ``triangular_solve`` and ``cholesky``.

The frontends compose the rest of the family exactly on these four: a determinant is the product
of U's diagonal times the sign of the row permutation, an inverse or a solve permutes the right
side's rows and runs two triangular solves, cholesky_solve two triangular solves. Each op works
on the last two dims (one matrix is one instance: ``core_dims``), the leading dims are a batch.

``lu_factor`` chooses pivots as LAPACK's unblocked getrf (getf2) does: the first row of largest
absolute value in the column (a NaN is never larger), so packed LU and pivots match PyTorch's.
It factors in the input's dtype (as LAPACK); the solves accumulate in double. lu_factor and
cholesky return one more column than their input (the pivots, LAPACK's info): one op, one
output, both of LAPACK's results without computing the factorization twice.

``check`` (lu_factor, cholesky): an op name; a zero pivot (a singular matrix) or a minor that is
not positive definite then raises a :class:`sol.errors.LinAlgError` at run time naming it and the
position (1-based, as LAPACK's info), where PyTorch's ``linalg.inv``/``linalg.solve``/
``linalg.cholesky`` raise: never a silently infinite result. The generated code reports it apart
from an index out of range (``sol_linalg_error``, its own return code), with the message the
references raise: :data:`SINGULAR` and :data:`NOT_PD` around LAPACK's info.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sol.errors import IndexOutOfRangeError, LinAlgError, SolError
from sol.ir import TensorType
from sol.ops.registry import LayerClass, OpDef

# --- helpers -------------------------------------------------------------------------------------


def _matrices(x: np.ndarray) -> np.ndarray:
    """``x`` as a stack of its trailing matrices: (batch, m, n)."""
    return x.reshape((-1, *x.shape[-2:]))


def _need_float_matrix(op: str, t: TensorType) -> None:
    if t.rank < 2 or not t.dtype.startswith("float"):
        raise SolError(f"{op}: expects a floating-point tensor of rank >= 2 (..., m, n), got {t}")


# What a failed check says, before and after LAPACK's info (1-based): the references' message
# and the generated code's (sol.lowering.factor passes both pieces to sol_linalg_error).
SINGULAR = ("the input matrix is singular: the diagonal element ", " of U is zero")
NOT_PD = ("the input is not positive-definite: the leading minor of order ", " is not positive-definite")


def _failed_check(check: str, reason: tuple[str, str], info: int) -> LinAlgError:
    head, tail = reason
    return LinAlgError(f"{check}: {head}{info}{tail}")


# --- lu_factor -----------------------------------------------------------------------------------


def _check_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    return {"check": str(attrs["check"])}


def _lu_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = types[0]
    _need_float_matrix("lu_factor", x)
    return [TensorType((*x.shape[:-1], x.shape[-1] + 1), x.dtype)]


def getf2(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """LAPACK's unblocked LU with partial pivoting of one (m, n) matrix, in its dtype: the packed
    LU and the 1-based pivots. The pivot is the first row of largest |value| (NaN never larger)."""
    lu = a.copy()
    m, n = lu.shape
    k = min(m, n)
    piv = np.zeros(k, dtype=np.int32)
    with np.errstate(all="ignore"):
        for j in range(k):
            p, best = j, abs(lu[j, j])
            for i in range(j + 1, m):
                if abs(lu[i, j]) > best:
                    p, best = i, abs(lu[i, j])
            piv[j] = p + 1
            if p != j:
                lu[[j, p]] = lu[[p, j]]
            if lu[j, j] != 0:
                lu[j + 1:, j] /= lu[j, j]
            lu[j + 1:, j + 1:] -= np.outer(lu[j + 1:, j], lu[j, j + 1:])
    return lu, piv


def _with_column(mats: list[np.ndarray], cols: list[np.ndarray], shape: tuple[int, ...], dtype: Any) -> np.ndarray:
    """Each matrix with one more column holding ``col`` from its first row on (zeros below)."""
    m, n = shape[-2:]
    out = np.zeros((len(mats), m, n + 1), dtype=dtype)
    for b, (mat, col) in enumerate(zip(mats, cols)):
        out[b, :, :n] = mat
        out[b, :len(col), n] = col
    return out.reshape((*shape[:-1], n + 1))


def _lu_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x = xs[0]
    res = [getf2(mat) for mat in _matrices(x)]
    if a["check"]:
        for lu, _ in res:
            zero = np.flatnonzero(np.diagonal(lu) == 0)
            if zero.size:
                raise _failed_check(a["check"], SINGULAR, int(zero[0]) + 1)
    return [_with_column([r[0] for r in res], [r[1] for r in res], x.shape, x.dtype)]


# --- lu_permutation ------------------------------------------------------------------------------


def _perm_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    m = int(attrs["m"])
    if types[0].rank < 1 or types[0].dtype not in ("int32", "int64") or m < types[0].shape[-1]:
        raise SolError(f"lu_permutation: expects integer pivots (..., k) and m >= k, got {types[0]} and m={m}")
    return {"m": m}


def _perm_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    return [TensorType((*types[0].shape[:-1], a["m"]), "int64")]


def _perm_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    piv, m = xs[0], a["m"]
    rows = piv.reshape(-1, piv.shape[-1])
    out = np.tile(np.arange(m, dtype=np.int64), (rows.shape[0], 1))
    for r, row in enumerate(rows):
        for i, p in enumerate(row):
            if not 1 <= p <= m:
                raise IndexOutOfRangeError(f"lu_permutation: index {int(p)} is out of range for axis -1 of size {m}")
            out[r, [i, p - 1]] = out[r, [p - 1, i]]
    return [out.reshape((*piv.shape[:-1], m))]


# --- triangular_solve ----------------------------------------------------------------------------


def _tri_normalize(attrs: dict[str, Any], types: list[TensorType]) -> dict[str, Any]:
    return {k: bool(attrs[k]) for k in ("upper", "unit", "transpose")}


def _tri_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    m, b = types
    _need_float_matrix("triangular_solve", m)
    _need_float_matrix("triangular_solve", b)
    n = m.shape[-1]
    if m.dtype != b.dtype or m.shape[-2] != n or b.shape[:-2] != m.shape[:-2] or b.shape[-2] != n:
        raise SolError(f"triangular_solve: expects a (..., n, n) matrix and (..., n, k) right sides of one dtype "
                       f"and batch, got {m} and {b}")
    return [b]


def _tri_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    """Substitution in float64, row by row, reading only the triangle (and not the diagonal when
    unit): a zero diagonal gives infinities / NaN, as LAPACK's trsm."""
    mats = _matrices(xs[0]).astype(np.float64)
    rhs = _matrices(xs[1]).astype(np.float64)
    if a["transpose"]:
        mats = np.swapaxes(mats, -1, -2)
    upper = a["upper"] != a["transpose"]
    n = mats.shape[-1]
    out = np.zeros_like(rhs)
    order = range(n - 1, -1, -1) if upper else range(n)
    with np.errstate(all="ignore"):
        for i in order:
            js = list(range(i + 1, n)) if upper else list(range(i))
            s = rhs[:, i, :] - np.einsum("bj,bjk->bk", mats[:, i, js], out[:, js, :])
            row = s if a["unit"] else s / mats[:, i, i][:, None]
            out[:, i, :] = row.astype(xs[1].dtype)  # the C loops read solved rows back in x's dtype
    return [out.astype(xs[1].dtype).reshape(xs[1].shape)]


# --- cholesky ------------------------------------------------------------------------------------


def _chol_infer(types: list[TensorType], a: dict[str, Any]) -> list[TensorType]:
    x = types[0]
    _need_float_matrix("cholesky", x)
    if x.shape[-1] != x.shape[-2]:
        raise SolError(f"cholesky: expects square matrices, got {x}")
    return [TensorType((*x.shape[:-1], x.shape[-1] + 1), x.dtype)]


def potrf(a: np.ndarray) -> tuple[np.ndarray, int]:
    """The lower Cholesky factor of one (n, n) matrix reading its lower triangle (the upper one
    of the result is zero), sums in float64; and LAPACK's info: the order of the first leading
    minor that is not positive definite (0: none). Past it the factor holds NaN."""
    n = a.shape[0]
    src = a.astype(np.float64)
    low = np.zeros((n, n))
    info = 0
    with np.errstate(all="ignore"):
        for j in range(n):
            d = src[j, j] - np.dot(low[j, :j], low[j, :j])
            if not d > 0 and info == 0:
                info = j + 1
            low[j, j] = np.sqrt(d) if d > 0 else np.nan
            low[j + 1:, j] = (src[j + 1:, j] - low[j + 1:, :j] @ low[j, :j]) / low[j, j]
            low[j:, j] = low[j:, j].astype(a.dtype)  # the C loops read the factor back in a's dtype
    return low.astype(a.dtype), info


def _chol_ref(xs: list[np.ndarray], a: dict[str, Any]) -> list[np.ndarray]:
    x = xs[0]
    res = [potrf(mat) for mat in _matrices(x)]
    if a["check"]:
        for _, info in res:
            if info:
                raise _failed_check(a["check"], NOT_PD, info)
    return [_with_column([r[0] for r in res], [np.array([r[1]]) for r in res], x.shape, x.dtype)]


def ops() -> list[OpDef]:
    # No gradient rules yet: training through a factorization or a solve is refused by name
    # (UnsupportedOpError), never differentiated wrongly; the permutation is an integer result.
    from sol.autodiff.rules import no_gradient
    from sol.autodiff.rules.special import refused
    from sol.lowering import factor as lower

    return [
        OpDef("lu_factor", LayerClass.IO_BOUND, _lu_infer, _lu_ref, (1, 1), {"check": ""},
              normalize=_check_normalize, core_dims=lambda node: 2,
              doc="LU with partial pivoting of each (m, n) matrix over the last two dims (LAPACK getrf's pivots: the "
                  "first row of largest |value|) -> (..., m, n + 1): columns 0..n-1 the packed L (unit diagonal, "
                  "below) and U, column n the 1-based row swaps (min(m, n) of them, exact small integers in x's "
                  "dtype, then zeros): one op gives both of getrf's results. check: an op name, a zero pivot is "
                  "then a run-time LinAlgError naming it (PyTorch's singular-matrix error)",
              gradient=refused, c_loops=lower.lower_lu_factor),
        OpDef("lu_permutation", LayerClass.IO_BOUND, _perm_infer, _perm_ref, (1, 1), {"m": 0},
              normalize=_perm_normalize, core_dims=lambda node: 1,
              doc="the row order (int64, (..., m)) that LU's 1-based pivots (..., k) make of 0..m-1, swap after "
                  "swap: A[perm] = L U. A pivot outside [1, m] is an IndexOutOfRangeError at run time",
              gradient=no_gradient, c_loops=lower.lower_lu_permutation),
        OpDef("triangular_solve", LayerClass.IO_BOUND, _tri_infer, _tri_ref, (2, 2),
              {"upper": False, "unit": False, "transpose": False}, normalize=_tri_normalize,
              core_dims=lambda node: 2,
              doc="X with op(A) X = B for triangular A (..., n, n) (only its upper / lower triangle is read; with "
                  "unit not its diagonal either, taken as 1) and B (..., n, k) of the same batch; op(A) = A^T with "
                  "transpose. Substitution with float64 sums; a zero diagonal gives inf / NaN (LAPACK's trsm)",
              gradient=refused, c_loops=lower.lower_triangular_solve),
        OpDef("cholesky", LayerClass.IO_BOUND, _chol_infer, _chol_ref, (1, 1), {"check": ""},
              normalize=_check_normalize, core_dims=lambda node: 2,
              doc="the lower Cholesky factor L (L L^T = A, upper triangle zero) of each (n, n) matrix, reading only "
                  "A's lower triangle, float64 sums -> (..., n, n + 1): column n holds LAPACK potrf's info in row 0 "
                  "(the order of the first minor not positive definite, 0 for none; past it the factor is NaN), "
                  "zeros below. check: an op name, info > 0 "
                  "is then a run-time LinAlgError naming it",
              gradient=refused, c_loops=lower.lower_cholesky),
    ]
