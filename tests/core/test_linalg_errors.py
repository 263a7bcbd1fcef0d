"""Two run-time errors of a compiled network that must not be confused: a checked factorization
that fails on the data (a singular matrix for ``linalg.inv``, one not positive definite for
``linalg.cholesky``) is a :class:`sol.errors.LinAlgError` (a ValueError, as NumPy's), an index
out of range (an embedding's bad token id) an :class:`sol.errors.IndexOutOfRangeError` (an
IndexError). Through ``sol.optimize`` on a graph of sol's IR, on the interpreter device (the
NumPy references), every installed device (x86, the emulated VE) and the example C device
(examples/device_c: core's shipped op templates with ``Dialect.linalg_errors``)."""

from __future__ import annotations

import os
import sys
import types

import numpy as np
import pytest

import sol
from sol.errors import IndexOutOfRangeError, LinAlgError
from sol.ir import Graph, TensorType

pytestmark = pytest.mark.filterwarnings("ignore:sol device 've' runs emulated")

EXAMPLE_C = os.path.join(os.path.dirname(__file__), "..", "..", "examples", "device_c", "src")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "device" in metafunc.fixturenames:
        from devices import device_params

        names = [pytest.param("interp", id="interp"), pytest.param("c", id="c"), *device_params(metafunc.config)]
        metafunc.parametrize("device", names, indirect=True)


@pytest.fixture
def device(request: pytest.FixtureRequest) -> str:
    """The device to compile for: the interpreter and the example C device registered by the test
    (neither is installed), the others as installed."""
    name: str = request.param
    if name in ("interp", "c"):
        plugins: types.ModuleType = request.getfixturevalue("fresh_plugins")
        if name == "interp":
            import interpreter_device

            plugins.register(interpreter_device)
        else:
            if EXAMPLE_C not in sys.path:
                sys.path.insert(0, EXAMPLE_C)
            import sol_device_c.plugin

            plugins.register(sol_device_c.plugin, "c")
            available = plugins.roles().devices.get("c").availability()
            if not available.available:
                pytest.skip(available.detail)
    return name


def _factor_net(op: str, check: str) -> Graph:
    """``op`` (lu_factor or cholesky) of two 3x3 matrices with ``check``, the factor plus one
    (a group of its own, followed by an element-wise op, as inv's solves follow it)."""
    g = Graph(op)
    a = g.add_input("a", TensorType((2, 3, 3)))
    factor = g.add_node(op, [a], {"check": check}).output
    g.outputs = [g.add_node("add", [factor, g.add_const(np.float32(1.0))]).output]
    return g


SPD = np.array([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]], np.float32)
# Rank 2: LU with partial pivoting swaps rows, then finds U's third diagonal element zero.
SINGULAR = np.array([[1.0, 2.0, 3.0], [2.0, 4.0, 6.0], [1.0, 0.0, 1.0]], np.float32)
NOT_PD = np.array([[4.0, 2.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]], np.float32)  # its 2x2 minor is 0


def test_a_singular_matrix_is_a_linalg_error_naming_the_op_and_the_pivot(device: str) -> None:
    net = sol.optimize(_factor_net("lu_factor", "linalg.inv"), (2, 3, 3), device=device)
    good = np.stack([SPD, SPD + np.eye(3, dtype=np.float32)])
    assert np.isfinite(net(good)[0]).all()
    with pytest.raises(
        LinAlgError, match="linalg.inv: the input matrix is singular: the diagonal element 3 of U is zero"
    ) as err:
        net(np.stack([SPD, SINGULAR]))
    assert isinstance(err.value, ValueError) and not isinstance(err.value, IndexError)
    assert np.isfinite(net(good)[0]).all()  # the next call starts clean


def test_a_matrix_not_positive_definite_is_a_linalg_error_naming_the_minor(device: str) -> None:
    net = sol.optimize(_factor_net("cholesky", "linalg.cholesky"), (2, 3, 3), device=device)
    with pytest.raises(
        LinAlgError,
        match="linalg.cholesky: the input is not positive-definite: the leading minor "
        "of order 2 is not positive-definite",
    ) as err:
        net(np.stack([NOT_PD, SPD]))
    assert not isinstance(err.value, IndexError)
    np.testing.assert_allclose(
        net(np.stack([SPD, SPD]))[0][..., :3] - 1, np.stack([np.linalg.cholesky(SPD)] * 2), rtol=1e-5, atol=1e-6
    )


def test_an_index_out_of_range_is_still_an_index_error(device: str) -> None:
    g = Graph("embed")
    table = g.add_param("table", np.arange(24, dtype=np.float32).reshape(6, 4))
    ids = g.add_input("ids", TensorType((3,), "int64"))
    g.outputs = [g.add_node("gather", [table, ids], {"axis": 0, "wrap": False}).output]
    net = sol.optimize(g, (3,), device=device)
    np.testing.assert_array_equal(net(np.array([5, 0, 2]))[0], np.arange(24.0).reshape(6, 4)[[5, 0, 2]])
    with pytest.raises(IndexOutOfRangeError, match="index 6 is out of range for axis 0 of size 6") as err:
        net(np.array([0, 6, 2]))
    assert not isinstance(err.value, LinAlgError)
