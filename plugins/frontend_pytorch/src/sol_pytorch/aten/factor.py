"""Dense linear algebra on LU and Cholesky factorizations: det, slogdet, inv, solve (and their
``_ex`` forms), lu_factor, lu, lu_solve, lu_unpack, cholesky (``_ex``), cholesky_solve,
cholesky_inverse, solve_triangular and triangular_solve.

All compose core's four ops of the family (``sol.ops.factor``): ``lu_factor`` (LAPACK getrf's
pivots, so packed LU and pivots equal eager's), ``lu_permutation``, ``triangular_solve`` and
``cholesky``. A determinant is the product of U's diagonal with each element's sign flipped where
its pivot swapped a row; inverses and solves permute the right side's rows and run two
triangular solves. Where PyTorch raises at run time (a singular matrix for ``linalg.inv`` /
``linalg.solve``, a matrix that is not positive definite for ``linalg.cholesky``), the factor op
carries a ``check`` and the compiled model raises too, never an infinite result: PyTorch's
``torch.linalg.LinAlgError`` (``sol_pytorch.errors.LinAlgError``, also core's
``sol.errors.LinAlgError``) naming the op, where it came from and the position LAPACK's info
gives. No gradients: training through these ops is refused by name (core's ops have no gradient
rule).
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from sol.plugin_api import Value
from sol_pytorch.aten.base import Args, Emitter, Unsupported, _slice, _swap, _tensor, converts, dtype_name

# --- helpers ---------------------------------------------------------------------------------------


def _vals(em: Emitter) -> list[Any]:
    return list(em.val) if isinstance(em.val, (tuple, list)) else [em.val]


def _shape(val: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in val.shape)


def _const_like(em: Emitter, val: Any, fill: float = 0) -> Value:
    """A constant with ``val``'s shape and dtype (results with no elements, or of empty matrices)."""
    return em.graph.add_const(np.full(_shape(val), fill, dtype=dtype_name(val.dtype)), hint="k")


def _no_elements(em: Emitter, *xs: Value) -> bool:
    return any(int(np.prod(x.shape, dtype=np.int64)) == 0 for x in xs)


def _float_matrix(x: Value, name: str) -> None:
    if x.type.rank < 2 or x.dtype not in ("float32", "float64"):
        raise Unsupported(f"{name}: only float32/float64 matrices (rank >= 2), got {x.type}")


def _mT(em: Emitter, x: Value) -> Value:
    return em.transpose(x, _swap(x.type.rank, -1, -2))


def _expand(em: Emitter, x: Value, batch: tuple[int, ...], tail: int) -> Value:
    """x with its leading dims broadcast to ``batch`` (its last ``tail`` dims kept)."""
    shape = batch + x.shape[x.type.rank - tail:]
    if x.shape == shape:
        return x
    if x.type.rank < len(shape):
        x = em.reshape(x, (1,) * (len(shape) - x.type.rank) + x.shape)
    return em.emit("broadcast_to", [x], shape=shape)


def _batch(*shapes: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(d) for d in np.broadcast_shapes(*shapes))


def _lu(em: Emitter, a: Value, check: str = "") -> tuple[Value, Value]:
    """(packed LU, the pivots as x's float dtype) of a (..., m, n)."""
    m, n = a.shape[-2:]
    both = em.emit("lu_factor", [a], check=check)
    rank = a.type.rank
    lu = _slice(em, both, rank - 1, 0, n)
    piv = _slice(em, _slice(em, both, rank - 1, n, n + 1), rank - 2, 0, min(m, n))
    return lu, em.reshape(piv, (*a.shape[:-2], min(m, n)))


def _diag(em: Emitter, x: Value) -> Value:
    """The diagonal (..., k) of x (..., m, n), k = min(m, n): exact copies (gather_elements)."""
    k = min(x.shape[-2:])
    x = _slice(em, _slice(em, x, x.type.rank - 2, 0, k), x.type.rank - 1, 0, k)
    idx = np.broadcast_to(np.arange(k, dtype=np.int64).reshape(k, 1), (*x.shape[:-1], 1))
    picked = em.emit("gather_elements", [x, em.const(np.ascontiguousarray(idx), "int64")], axis=x.type.rank - 1)
    return em.reshape(picked, x.shape[:-1])


def _info(em: Emitter, lu: Value) -> Value:
    """LAPACK getrf's info: the 1-based position of U's first zero diagonal element, 0 for none."""
    d = _diag(em, lu)
    zero = em.emit("eq", [d, em.const(0, d.dtype)])
    k = d.shape[-1]
    pos = em.const(np.arange(k, 0, -1, dtype=np.int32), "int32")  # the first zero scores highest
    score = em.emit("where", [zero, pos, em.const(0, "int32")])
    best = em.emit("max", [score], axes=(d.type.rank - 1,), keepdims=False, ties="split")
    return em.emit("where", [em.emit("gt", [best, em.const(0, "int32")]),
                             em.emit("sub", [em.const(k + 1, "int32"), best]), em.const(0, "int32")])


def _swap_signs(em: Emitter, piv: Value) -> Value:
    """-1 where pivot i (1-based, float) swapped row i with another, else 1."""
    k = piv.shape[-1]
    same = em.emit("eq", [piv, em.const(np.arange(1, k + 1), piv.dtype)])
    return em.emit("where", [same, em.const(1, piv.dtype), em.const(-1, piv.dtype)])


def _last_of_prod(em: Emitter, x: Value) -> Value:
    """The product along the last axis (running product in double, its last element)."""
    r = x.type.rank
    run = em.emit("scan", [x], axis=r - 1, kind="prod")
    return em.reshape(_slice(em, run, r - 1, x.shape[-1] - 1, x.shape[-1]), x.shape[:-1])


def _permutation(em: Emitter, piv: Value, m: int) -> Value:
    return em.emit("lu_permutation", [em.cast(piv, "int32")], m=m)


def _rows(em: Emitter, x: Value, order: Value) -> Value:
    """x (..., n, k) with its rows taken in ``order`` (..., n), exact copies."""
    idx = em.emit("broadcast_to", [em.reshape(order, (*order.shape, 1))], shape=x.shape)
    return em.emit("gather_elements", [x, idx], axis=x.type.rank - 2)


def _lu_solve(em: Emitter, lu: Value, perm: Value, b: Value, adjoint: bool) -> Value:
    """A X = B (A^T X = B with adjoint) for A = P L U given packed LU and the row order, every
    operand already of one batch shape; B (..., n, k)."""
    if not adjoint:
        y = em.emit("triangular_solve", [lu, _rows(em, b, perm)], upper=False, unit=True)
        return em.emit("triangular_solve", [lu, y], upper=True)
    y = em.emit("triangular_solve", [lu, b], upper=True, transpose=True)
    z = em.emit("triangular_solve", [lu, y], upper=False, unit=True, transpose=True)
    inverse = em.emit("argsort", [perm], axis=perm.type.rank - 1)
    return _rows(em, z, inverse)


def _solve_with(em: Emitter, lu: Value, perm: Value, b: Value, left: bool, adjoint: bool) -> Value:
    """lu_solve with PyTorch's broadcasting of the batch dims and ``left=False`` (X A = B is
    A^T X^T = B^T)."""
    if not left:
        b = _mT(em, b)
        adjoint = not adjoint
    batch = _batch(lu.shape[:-2], perm.shape[:-1], b.shape[:-2])
    x = _lu_solve(em, _expand(em, lu, batch, 2), _expand(em, perm, batch, 1), _expand(em, b, batch, 2), adjoint)
    return x if left else _mT(em, x)


def _eye(em: Emitter, n: int, dtype: str, batch: tuple[int, ...]) -> Value:
    return em.const(np.ascontiguousarray(np.broadcast_to(np.eye(n), (*batch, n, n))), dtype)


def _triangle(em: Emitter, x: Value, lower: bool, unit: bool) -> Value:
    """x's strictly lower triangle plus ones on the diagonal (``lower``, ``unit``) or its upper
    triangle with the diagonal: where() keeps exact values, NaN included."""
    m, n = x.shape[-2:]
    mask = np.tril(np.ones((m, n), dtype=bool), -1) if lower else np.triu(np.ones((m, n), dtype=bool))
    fill = np.eye(m, n) if unit else np.zeros((m, n))
    return em.emit("where", [em.const(mask, "bool"), x, em.const(fill, x.dtype)])


# --- determinants ----------------------------------------------------------------------------------


def _only_first_outputs(em: Emitter, name: str, kept: int) -> None:
    """PyTorch's ``_linalg_det``/``_linalg_slogdet`` also return the LU factors they used, of the
    matrix's transpose where it is laid out row-major (a layout shortcut of theirs): sol factors the
    matrix itself, so a model reading those outputs is refused rather than given other factors.
    ``torch.linalg.det``/``slogdet`` read only the first ``kept`` outputs."""
    node = em.node
    used = {u.args[1] for u in node.users if u.target is operator.getitem} if node is not None else set()
    if any(i >= kept for i in used):
        raise Unsupported(f"{name}'s LU factors (PyTorch factors a row-major matrix's transpose)")


@converts("aten._linalg_det.default")
def _det(em: Emitter, a: Args) -> tuple[Value, ...]:
    x = _tensor(a, "A")
    _float_matrix(x, "det")
    _only_first_outputs(em, "_linalg_det", 1)
    vals = _vals(em)
    if x.shape[-1] == 0 or _no_elements(em, x):
        return _const_like(em, vals[0], 1), _const_like(em, vals[1]), _const_like(em, vals[2])
    lu, piv = _lu(em, x)
    det = _last_of_prod(em, em.emit("mul", [_diag(em, lu), _swap_signs(em, piv)]))
    return det, lu, em.cast(piv, "int32")


@converts("aten._linalg_slogdet.default")
def _slogdet(em: Emitter, a: Args) -> tuple[Value, ...]:
    x = _tensor(a, "A")
    _float_matrix(x, "slogdet")
    _only_first_outputs(em, "_linalg_slogdet", 2)
    vals = _vals(em)
    if x.shape[-1] == 0 or _no_elements(em, x):
        return (_const_like(em, vals[0], 1), _const_like(em, vals[1]), _const_like(em, vals[2]),
                _const_like(em, vals[3]))
    lu, piv = _lu(em, x)
    d = _diag(em, lu)
    sign = _last_of_prod(em, em.emit("mul", [em.emit("sign", [d]), _swap_signs(em, piv)]))
    logabs = em.emit("sum", [em.emit("log", [em.emit("abs", [d])])], axes=(d.type.rank - 1,), keepdims=False)
    return sign, logabs, lu, em.cast(piv, "int32")


# --- inverses and solves ---------------------------------------------------------------------------

def _check_name(a: Args, name: str) -> str:
    return name if a.get("check_errors", False) else ""


def _inverse(em: Emitter, x: Value, check: str) -> tuple[Value, Value]:
    """(the inverse, the packed LU) of the matrices x; ``check``: a singular one raises."""
    n = x.shape[-1]
    lu, piv = _lu(em, x, check)
    return _lu_solve(em, lu, _permutation(em, piv, n), _eye(em, n, x.dtype, x.shape[:-2]), False), lu


@converts("aten.linalg_inv_ex.default")
def _inv_ex(em: Emitter, a: Args) -> tuple[Value, Value]:
    x = _tensor(a, "A")
    _float_matrix(x, "linalg.inv")
    vals = _vals(em)
    if _no_elements(em, x):
        return _const_like(em, vals[0]), _const_like(em, vals[1])
    inv, lu = _inverse(em, x, _check_name(a, "linalg.inv"))
    return inv, _info(em, lu)


@converts("aten.linalg_inv.default")
def _inv(em: Emitter, a: Args) -> Value:
    """linalg.inv as traced (PyTorch's decomposition into inv_ex and an error check would be
    traced again): a singular matrix raises at run time, as in PyTorch."""
    x = _tensor(a, "A")
    _float_matrix(x, "linalg.inv")
    return _const_like(em, em.val) if _no_elements(em, x) else _inverse(em, x, "linalg.inv")[0]


@converts("aten.linalg_tensorinv.default")
def _tensorinv(em: Emitter, a: Args) -> Value:
    """The inverse of x as a matrix (its first ``ind`` dims the rows), shaped back as PyTorch's."""
    x = _tensor(a, "self")
    ind = int(a.get("ind", 2))
    rows = int(np.prod(x.shape[:ind], dtype=np.int64))
    if x.dtype not in ("float32", "float64") or rows * rows != int(np.prod(x.shape, dtype=np.int64)):
        raise Unsupported(f"linalg.tensorinv of {x.type} with ind={ind}")
    if rows == 0:
        return _const_like(em, em.val)
    inv, _ = _inverse(em, em.reshape(x, (rows, rows)), "linalg.tensorinv")
    return em.reshape(inv, tuple(_shape(em.val)))


def _solve(em: Emitter, x: Value, b: Value, left: bool, check: str) -> tuple[Value, Value, Value]:
    """(X with A X = B, or X A = B, the packed LU, the pivots) for PyTorch's solve: B a batch of
    vectors where its shape says so."""
    vector = b.type.rank == 1 or (b.type.rank == x.type.rank - 1 and b.shape == x.shape[:-1])
    if vector:
        b = em.reshape(b, (*b.shape, 1))
    lu, piv = _lu(em, x, check)
    out = _solve_with(em, lu, _permutation(em, piv, x.shape[-1]), b, left, False)
    return (em.reshape(out, out.shape[:-1]) if vector else out), lu, piv


@converts("aten._linalg_solve_ex.default")
def _solve_ex(em: Emitter, a: Args) -> tuple[Value, ...]:
    x, b = _tensor(a, "A"), _tensor(a, "B")
    _float_matrix(x, "linalg.solve")
    vals = _vals(em)
    if _no_elements(em, x, b):
        return tuple(_const_like(em, v) for v in vals)
    out, lu, piv = _solve(em, x, b, bool(a.get("left", True)), _check_name(a, "linalg.solve"))
    return out, lu, em.cast(piv, "int32"), _info(em, lu)


@converts("aten.linalg_solve.default")
def _solve_checked(em: Emitter, a: Args) -> Value:
    """linalg.solve as traced: a singular matrix raises at run time, as in PyTorch."""
    x, b = _tensor(a, "A"), _tensor(a, "B")
    _float_matrix(x, "linalg.solve")
    if _no_elements(em, x, b):
        return _const_like(em, em.val)
    return _solve(em, x, b, bool(a.get("left", True)), "linalg.solve")[0]


@converts("aten.linalg_tensorsolve.default")
def _tensorsolve(em: Emitter, a: Args) -> Value:
    """X with tensordot(A, X) = B: A's dims ``dims`` moved last, A as a (numel B) x (numel X) matrix
    (PyTorch asks only that the element counts fit; X takes A's trailing dims)."""
    x, b = _tensor(a, "self"), _tensor(a, "other")
    dims = a.get("dims")
    if dims:
        moved = [d % x.type.rank for d in dims]
        order = [d for d in range(x.type.rank) if d not in moved] + moved
        x = em.transpose(x, tuple(order))
    rows = int(np.prod(b.shape, dtype=np.int64))
    cols = int(np.prod(x.shape, dtype=np.int64)) // max(rows, 1)
    if x.dtype not in ("float32", "float64") or rows != cols or rows * cols != int(np.prod(x.shape, dtype=np.int64)):
        raise Unsupported(f"linalg.tensorsolve of {x.type} and {b.type}")
    if rows == 0:
        return _const_like(em, em.val)
    out = _solve(em, em.reshape(x, (rows, rows)), em.reshape(b, (rows,)), True, "linalg.tensorsolve")[0]
    return em.reshape(out, tuple(_shape(em.val)))


# --- LU --------------------------------------------------------------------------------------------


@converts("aten.linalg_lu_factor_ex.default")
def _lu_factor_ex(em: Emitter, a: Args) -> tuple[Value, Value, Value]:
    x = _tensor(a, "A")
    _float_matrix(x, "linalg.lu_factor")
    if not a.get("pivot", True):
        raise Unsupported("linalg.lu_factor(pivot=False) (PyTorch's CPU has no LU without pivoting either)")
    vals = _vals(em)
    if _no_elements(em, x):
        return _const_like(em, vals[0]), _const_like(em, vals[1]), _const_like(em, vals[2])
    lu, piv = _lu(em, x, _check_name(a, "linalg.lu_factor"))
    return lu, em.cast(piv, "int32"), _info(em, lu)


@converts("aten.linalg_lu_factor.default")
def _lu_factor(em: Emitter, a: Args) -> tuple[Value, Value]:
    """linalg.lu_factor as traced: a singular matrix raises at run time, as in PyTorch."""
    lu, piv, _ = _lu_factor_ex(em, {**a, "check_errors": True})
    return lu, piv


def _unpack(em: Emitter, lu: Value, perm: Value | None) -> tuple[Value | None, Value, Value]:
    """(P, L, U) of packed LU (..., m, n) and the row order (..., m)."""
    m, n = lu.shape[-2:]
    k = min(m, n)
    r = lu.type.rank
    low = _triangle(em, _slice(em, lu, r - 1, 0, k), True, True)
    up = _triangle(em, _slice(em, lu, r - 2, 0, k), False, False)
    if perm is None:
        return None, low, up
    # P[perm[i], i] = 1: row j of P has its one in the column i with perm[i] == j.
    rows = em.const(np.arange(m, dtype=np.int64).reshape(m, 1), "int64")
    p = em.emit("eq", [rows, em.reshape(perm, (*perm.shape[:-1], 1, m))])
    return em.cast(p, lu.dtype), low, up


@converts("aten.linalg_lu.default")
def _linalg_lu(em: Emitter, a: Args) -> tuple[Value, Value, Value]:
    x = _tensor(a, "A")
    _float_matrix(x, "linalg.lu")
    if not a.get("pivot", True):
        raise Unsupported("linalg.lu(pivot=False) (PyTorch's CPU has no LU without pivoting either)")
    vals = _vals(em)
    if _no_elements(em, x):
        return _const_like(em, vals[0]), _const_like(em, vals[1]), _const_like(em, vals[2])
    lu, piv = _lu(em, x)
    p, low, up = _unpack(em, lu, _permutation(em, piv, x.shape[-2]))
    assert p is not None
    return p, low, up


@converts("aten.lu_unpack.default")
def _lu_unpack(em: Emitter, a: Args) -> tuple[Value, Value, Value]:
    lu, piv = _tensor(a, "LU_data"), _tensor(a, "LU_pivots")
    _float_matrix(lu, "lu_unpack")
    vals = _vals(em)
    if _no_elements(em, lu) or any(int(np.prod(_shape(v))) == 0 for v in vals if a.get("unpack_data", True)):
        raise Unsupported("lu_unpack of matrices without elements")
    unpack_p = bool(a.get("unpack_pivots", True))
    p, low, up = _unpack(em, lu, _permutation(em, piv, lu.shape[-2]) if unpack_p else None)
    if not a.get("unpack_data", True):
        low, up = _const_like(em, vals[1]), _const_like(em, vals[2])
    return (p if p is not None else _const_like(em, vals[0])), low, up


@converts("aten.linalg_lu_solve.default")
def _linalg_lu_solve(em: Emitter, a: Args) -> Value:
    lu, piv, b = _tensor(a, "LU"), _tensor(a, "pivots"), _tensor(a, "B")
    _float_matrix(lu, "linalg.lu_solve")
    if _no_elements(em, lu, b):
        return _const_like(em, em.val)
    perm = _permutation(em, piv, lu.shape[-1])
    return _solve_with(em, lu, perm, b, bool(a.get("left", True)), bool(a.get("adjoint", False)))


# --- Cholesky --------------------------------------------------------------------------------------


def _cholesky(em: Emitter, x: Value, upper: bool, check: str) -> tuple[Value, Value]:
    """(the factor, int32 info) of x: lower L from x's lower triangle, or U = (chol of x^T)^T
    from its upper one (LAPACK potrf 'U' reads only that triangle)."""
    n = x.shape[-1]
    r = x.type.rank
    both = em.emit("cholesky", [_mT(em, x) if upper else x], check=check)
    factor = _slice(em, both, r - 1, 0, n)
    info = em.reshape(_slice(em, _slice(em, both, r - 1, n, n + 1), r - 2, 0, 1), x.shape[:-2])
    return (_mT(em, factor) if upper else factor), em.cast(info, "int32")


@converts("aten.linalg_cholesky_ex.default")
def _cholesky_ex(em: Emitter, a: Args) -> tuple[Value, Value]:
    x = _tensor(a, "self")
    _float_matrix(x, "linalg.cholesky")
    vals = _vals(em)
    if _no_elements(em, x):
        return _const_like(em, vals[0]), _const_like(em, vals[1])
    return _cholesky(em, x, bool(a.get("upper", False)), _check_name(a, "linalg.cholesky"))


@converts("aten.linalg_cholesky.default")
def _linalg_cholesky(em: Emitter, a: Args) -> Value:
    """linalg.cholesky as traced: a matrix that is not positive-definite raises at run time."""
    x = _tensor(a, "self")
    _float_matrix(x, "linalg.cholesky")
    if _no_elements(em, x):
        return _const_like(em, em.val)
    return _cholesky(em, x, bool(a.get("upper", False)), "linalg.cholesky")[0]


@converts("aten.cholesky.default")
def _cholesky_old(em: Emitter, a: Args) -> Value:
    x = _tensor(a, "self")
    _float_matrix(x, "cholesky")
    if _no_elements(em, x):
        return _const_like(em, em.val)
    return _cholesky(em, x, bool(a.get("upper", False)), "cholesky")[0]


def _cholesky_solve_with(em: Emitter, b: Value, f: Value, upper: bool) -> Value:
    """A X = B for A = L L^T (U^T U with upper), both batches broadcast."""
    batch = _batch(b.shape[:-2], f.shape[:-2])
    b, f = _expand(em, b, batch, 2), _expand(em, f, batch, 2)
    # lower: L Y = B, L^T X = Y; upper: U^T Y = B, U X = Y.
    y = em.emit("triangular_solve", [f, b], upper=upper, transpose=upper)
    return em.emit("triangular_solve", [f, y], upper=upper, transpose=not upper)


@converts("aten.cholesky_solve.default")
def _cholesky_solve(em: Emitter, a: Args) -> Value:
    b, f = _tensor(a, "self"), _tensor(a, "input2")
    _float_matrix(f, "cholesky_solve")
    if _no_elements(em, b, f):
        return _const_like(em, em.val)
    return _cholesky_solve_with(em, b, f, bool(a.get("upper", False)))


@converts("aten.cholesky_inverse.default")
def _cholesky_inverse(em: Emitter, a: Args) -> Value:
    f = _tensor(a, "self")
    _float_matrix(f, "cholesky_inverse")
    if _no_elements(em, f):
        return _const_like(em, em.val)
    return _cholesky_solve_with(em, _eye(em, f.shape[-1], f.dtype, f.shape[:-2]), f, bool(a.get("upper", False)))


# --- triangular solves -----------------------------------------------------------------------------


def _tri(em: Emitter, m: Value, b: Value, upper: bool, left: bool, unit: bool, transpose: bool) -> Value:
    if not left:  # X op(A) = B is op(A)^T X^T = B^T
        return _mT(em, _tri(em, m, _mT(em, b), upper, True, unit, not transpose))
    batch = _batch(m.shape[:-2], b.shape[:-2])
    return em.emit("triangular_solve", [_expand(em, m, batch, 2), _expand(em, b, batch, 2)], upper=upper,
                   unit=unit, transpose=transpose)


@converts("aten.linalg_solve_triangular.default")
def _solve_triangular(em: Emitter, a: Args) -> Value:
    m, b = _tensor(a, "self"), _tensor(a, "B")
    _float_matrix(m, "linalg.solve_triangular")
    if _no_elements(em, m, b):
        return _const_like(em, em.val)
    return _tri(em, m, b, bool(a["upper"]), bool(a.get("left", True)), bool(a.get("unitriangular", False)), False)


@converts("aten.triangular_solve.default")
def _triangular_solve(em: Emitter, a: Args) -> tuple[Value, Value]:
    b, m = _tensor(a, "self"), _tensor(a, "A")
    _float_matrix(m, "triangular_solve")
    vals = _vals(em)
    if _no_elements(em, m, b):
        return _const_like(em, vals[0]), _const_like(em, vals[1])
    x = _tri(em, m, b, bool(a.get("upper", True)), True, bool(a.get("unitriangular", False)),
             bool(a.get("transpose", False)))
    return x, _expand(em, m, _shape(vals[1])[:-2], 2)

