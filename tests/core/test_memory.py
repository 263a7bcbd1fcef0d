"""Device memory in the plugin contract: the allocator role (``Device.memory``), the buffers
core knows (:class:`sol.memory.Buffer`) and programs running on them (``Program.run``), on
every installed device, through the public API; host memory as the default; the checks that
keep a bad buffer from reaching a device; core serializing a device's calls where it says so."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

import sol
from sol.debug import run_reference
from sol.ir import Graph, TensorType
from sol.memory import HOST, Buffer, HostMemory
from sol.plugin_api import DeviceMemory
from sol.program import Program

from graphs import randn

pytestmark = pytest.mark.filterwarnings("ignore:sol device 've' runs emulated")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "device" in metafunc.fixturenames:
        from devices import device_params

        metafunc.parametrize("device", device_params(metafunc.config), scope="module")


def _net() -> Graph:
    """Two inputs, two outputs of different shapes: dense + tanh, and x * y summed per row."""
    g = Graph("memnet")
    x = g.add_input("x", TensorType((3, 8)))
    y = g.add_input("y", TensorType((3, 8)))
    h = g.add_node("matmul", [x, g.add_param("w", randn(8, 5) * 0.3)]).output
    t = g.add_node("tanh", [h]).output
    s = g.add_node("sum", [g.add_node("mul", [x, y]).output], {"axes": [1], "keepdims": False}).output
    g.outputs = [t, s]
    return g


NET = _net()  # one set of weights: what is compiled and what the references use


@pytest.fixture(scope="module")
def compiled(device: str) -> Any:
    return sol.optimize(NET, randn(3, 8), randn(3, 8), device=device)


def test_a_program_runs_on_buffers_of_its_devices_memory(compiled: Any) -> None:
    program: Program = compiled.program
    memory = program.memory
    assert isinstance(memory, DeviceMemory) and program.runs_in_place
    x, y = randn(3, 8), randn(3, 8)
    want = run_reference(NET, [x, y])
    ins = [memory.from_host(x), memory.from_host(y)]
    outs = program.run(ins)  # outputs allocated in the device's memory
    assert [b.type for b in outs] == program.output_types and all(b.memory is memory for b in outs)
    for got, ref in zip(outs, want):
        np.testing.assert_allclose(memory.to_host(got), ref, rtol=1e-5, atol=1e-5)
    given = [memory.allocate(t) for t in program.output_types]
    assert program.run(ins, given) == given  # written where the caller said
    for got, ref in zip(given, want):
        np.testing.assert_allclose(memory.to_host(got), ref, rtol=1e-5, atol=1e-5)
    for got, ref in zip(compiled(x, y), want):  # the host-array path is unchanged
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    copy = memory.allocate(program.output_types[0])
    memory.copy(copy, given[0])
    np.testing.assert_array_equal(memory.to_host(copy), memory.to_host(given[0]))
    for b in [*ins, *outs, *given, copy]:
        memory.free(b)
    with pytest.raises(ValueError, match="freed"):
        program.run(ins)


def test_where_the_buffers_live(compiled: Any) -> None:
    """Host memory (x86) is used in place; memory of the device's own (the VE) is not the host's."""
    program: Program = compiled.program
    if program.memory.shares_host:
        _host_memory_is_used_in_place(program)
    else:
        _memory_of_its_own_is_not_the_hosts(program)


def _host_memory_is_used_in_place(program: Program) -> None:
    memory = program.memory
    x, y = randn(3, 8), randn(3, 8)
    ins = [memory.from_host(x), memory.from_host(y)]
    assert ins[0].ptr == x.__array_interface__["data"][0]  # the array itself, no copy
    results = [np.full(t.shape, np.nan, np.float32) for t in program.output_types]
    program.run(ins, [memory.from_host(r) for r in results])
    for got, ref in zip(results, run_reference(NET, [x, y])):  # written into the caller's arrays
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)
    out = program.run(ins)[1]
    assert np.from_dlpack(out).__array_interface__["data"][0] == out.ptr  # exported through DLPack, no copy


def _memory_of_its_own_is_not_the_hosts(program: Program) -> None:
    memory = program.memory
    assert memory.dlpack_device is None
    fresh = memory.allocate(TensorType((4, 4)))
    with pytest.raises(BufferError, match="not addressable by the host"):
        fresh.numpy()
    if program.info.get("emulated"):  # the emulation's fresh memory reads NaN: a forgotten copy shows
        assert np.isnan(memory.to_host(fresh)).all()
    other = sol.optimize(NET, randn(3, 8), randn(3, 8), device=program.device).program
    if other.memory is not memory:  # separate address spaces (each emulated process is one)
        with pytest.raises(ValueError, match="copy it there first"):
            other.run([memory.from_host(randn(3, 8)), memory.from_host(randn(3, 8))])


def test_bad_buffers_never_reach_the_device(compiled: Any) -> None:
    program: Program = compiled.program
    memory = program.memory
    x, y = memory.from_host(randn(3, 8)), memory.from_host(randn(3, 8))
    with pytest.raises(ValueError, match="expected shape"):
        program.run([x, memory.from_host(randn(3, 7))])
    with pytest.raises(TypeError, match="expected dtype float32, got float64"):
        program.run([x, memory.from_host(np.zeros((3, 8)))])
    with pytest.raises(TypeError, match="expects 2 input"):
        program.run([x])
    with pytest.raises(TypeError, match="not a sol.memory.Buffer"):
        program.run([x, randn(3, 8)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="copy it there first"):
        program.run([x, HostMemory().from_host(randn(3, 8))] if memory is HOST else [x, HOST.from_host(randn(3, 8))])
    outs = [memory.allocate(t) for t in program.output_types]
    with pytest.raises(ValueError, match="output 0: expected rank 2"):
        program.run([x, y], outs[::-1])
    if memory.shares_host:
        big = randn(3, 8)
        alias = Buffer(memory, big.__array_interface__["data"][0], TensorType((3,)), None, big)
        with pytest.raises(ValueError, match="output 1 overlaps input 0"):
            program.run([memory.from_host(big), y], [outs[0], alias])
        wide = np.asfortranarray(randn(3, 8))
        with pytest.raises(ValueError, match="not C-contiguous"):
            program.run([memory.from_dlpack(wide), y])


def test_host_memory_role() -> None:
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    b = HOST.from_host(a)
    assert b.numpy() is a and b.device == "host" and b.contiguous
    c = HOST.allocate(TensorType((2, 3)))
    HOST.copy(c, b)
    np.testing.assert_array_equal(HOST.to_host(c), a)
    with pytest.raises(ValueError, match="does not fit"):
        HOST.copy_from_host(c, np.zeros((3, 2), np.float32))
    t = HOST.from_dlpack(a.T)  # a strided view, in place
    assert t.strides == (1, 3) and t.ptr == b.ptr and not t.contiguous
    np.testing.assert_array_equal(t.numpy(), a.T)
    HOST.free(c)
    assert c.freed
    with pytest.raises(BufferError, match="freed"):
        c.numpy()


def test_devices_default_to_host_memory() -> None:
    from sol.plugins import roles
    from sol.testing.interpreter import InterpreterDevice

    assert InterpreterDevice().memory is HOST
    assert all(isinstance(roles().devices.get(n).memory, DeviceMemory) for n in roles().devices.names())


def test_a_program_staged_through_host_arrays() -> None:
    """A device that gives no ``run_into`` still runs on buffers: core stages them."""
    t = TensorType((2, 3))
    program = Program("twice", "test", ["x"], [t], [t], lambda arrays: [arrays[0] * 2])
    assert program.memory is HOST and not program.runs_in_place
    x = randn(2, 3)
    out = program.run([HOST.from_host(x)])
    np.testing.assert_array_equal(out[0].numpy(), x * 2)


def _four_calls_at_once(program: Program) -> list[float]:
    """Four threads call ``program`` at once (two on host arrays, two on buffers)."""
    start = threading.Barrier(4)
    results: list[Any] = [None] * 4

    def call(i: int) -> None:
        start.wait()
        x = np.full(1, i, np.float32)
        results[i] = program.run([HOST.from_host(x)])[0].numpy() if i % 2 else program(x)[0]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return [float(r[0]) for r in results]


def test_core_serializes_a_device_that_runs_one_call_at_a_time() -> None:
    t = TensorType((1,))
    busy = {"now": 0, "most": 0}
    lock = threading.Lock()

    def runner(arrays: list[np.ndarray]) -> list[np.ndarray]:
        with lock:
            busy["now"] += 1
            busy["most"] = max(busy["most"], busy["now"])
        time.sleep(0.01)
        with lock:
            busy["now"] -= 1
        return [arrays[0] + 1]

    for concurrent in (False, True):
        busy["most"] = 0
        program = Program("p", "test", ["x"], [t], [t], runner, concurrent_calls=concurrent)
        assert _four_calls_at_once(program) == [1.0, 2.0, 3.0, 4.0]
        if concurrent:
            assert busy["most"] > 1  # the default: calls overlap (the test could see a lock)
        else:
            assert busy["most"] == 1
