"""The CUDA device (sol-device-cuda) without a GPU: what it generates (the seed's fused kernel
shape), that NVRTC compiles it for sm_80 and sm_90, that the host emulation computes what
PyTorch computes, and that without a GPU (and without the emulation) it says why and refuses.

The emulation (``SOL_CUDA_EMULATE=1``) runs the same kernel source on the CPU, threads of a
block as OpenMP threads; scripts/test.sh turns it on for the whole suite, so every
device-parametrized test runs on "cuda" too, each network also compiled with NVRTC to PTX
(``SOL_CUDA_NVRTC_CHECK=compute_90``); the tests here build real sm_80 and sm_90 cubins. Here
each test sets what it needs itself.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import sol  # noqa: E402

sys.path.insert(0, str(Path(__file__).parent.parent))
from generated_source import assert_inert, sources  # noqa: E402

pytestmark = pytest.mark.filterwarnings("ignore:sol device 'cuda' runs emulated")


def _nvrtc():
    from sol_cuda import nvrtc

    try:
        return nvrtc.load()
    except nvrtc.NvrtcUnavailable as exc:
        pytest.skip(str(exc))


@pytest.fixture
def emulated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The emulation on, NVRTC checks off (tests that want them compile themselves), the
    generated sources kept under the returned folder."""
    monkeypatch.setenv("SOL_CUDA_EMULATE", "1")
    monkeypatch.delenv("SOL_CUDA_NVRTC_CHECK", raising=False)
    debug = tmp_path / "debug"
    monkeypatch.setenv("SOL_DEBUG_DIR", str(debug))
    return debug


class Seed(nn.Module):
    """The seed's example: conv1x1 -> bias -> ReLU -> AvgPool13."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(32, 64, 1)
        self.pool = nn.AvgPool2d(13)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pool(torch.relu(self.conv(x)))


def _kernels(text: str) -> dict[str, str]:
    """Each kernel's code by name (from its signature to its closing brace)."""
    found = re.findall(r'extern "C" __global__ void __launch_bounds__\(\d+\) (sol_\w+)\((.*?)\n}\n', text, flags=re.S)
    return {name: body for name, body in found}


def test_seed_network_is_one_fused_kernel_of_the_seeds_shape(emulated: Path) -> None:
    torch.manual_seed(0)
    model = Seed().eval()
    x = torch.randn(2, 32, 13, 13)
    fast = sol.optimize(model, x, device="cuda")
    with torch.no_grad():
        np.testing.assert_allclose(fast(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)
    (text,) = [t for p, t in sources(emulated, (".cu",)).items() if p.name == "network.cu"]
    kernels = _kernels(text)
    pooled = [body for body in kernels.values() if "avg_pool2d" in body]
    assert len(pooled) == 1, list(kernels)
    body = pooled[0]
    # the outer (batch, channel) loop is the grid: one block per plane
    assert "const long o = blockIdx.x;" in body and "(o / 64) % 2" in body
    # the depth-first intermediate (bias + ReLU of one 13x13 plane) lives in shared memory
    assert re.search(r"__shared__ float L\d+\[169\];", body)
    # its loop runs over the block's threads; the pooling ends in a block reduction
    assert "sol_t += sol_nthreads" in body and "sol_part[sol_tid]" in body and "__syncthreads();" in body
    # comments name the source ops in order
    steps = re.findall(r"// #(\d) (\w+)", body)
    assert [op for _, op in steps] == ["add", "relu", "avg_pool2d"], steps


def test_seed_kernels_compile_with_nvrtc_for_sm80_and_sm90(emulated: Path, tmp_path: Path) -> None:
    nvrtc = _nvrtc()
    sol.optimize(Seed().eval(), torch.randn(1, 32, 13, 13), device="cuda")
    (text,) = [t for p, t in sources(emulated, (".cu",)).items() if p.name == "network.cu"]
    for arch in (80, 90):
        compiled = nvrtc.compile(text, "network.cu", arch, ["-std=c++17", "-default-device"])
        assert compiled.cubin[:4] == b"\x7fELF"
        for name in _kernels(text):
            assert name.encode() in compiled.cubin, (arch, name)


def _emulated_with_check(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, check: str) -> Path:
    """A small network optimized on the emulated device with ``SOL_CUDA_NVRTC_CHECK=check``, its
    numbers checked; returns the compile cache it was built in."""
    _nvrtc()
    monkeypatch.setenv("SOL_CUDA_EMULATE", "1")
    monkeypatch.setenv("SOL_CUDA_NVRTC_CHECK", check)
    monkeypatch.setenv("SOL_CACHE_DIR", str(tmp_path / "cache"))
    model = nn.Sequential(nn.Linear(6, 4), nn.GELU(), nn.LayerNorm(4), nn.Softmax(-1)).eval()
    x = torch.randn(3, 6)
    fast = sol.optimize(model, x, device="cuda")
    with torch.no_grad():
        np.testing.assert_allclose(fast(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)
    return tmp_path / "cache"


def test_emulated_compiles_also_build_cubins_when_asked(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """SOL_CUDA_NVRTC_CHECK=80,90: each network the emulation compiles is compiled by NVRTC into
    cubins for both architectures (front end and ptxas), so a kernel NVRTC refuses fails the
    test that made it."""
    cache = _emulated_with_check(monkeypatch, tmp_path, "80,90")
    cubins = sorted(p.name for p in cache.rglob("*.cubin"))
    assert cubins == ["network.sm_80.cubin", "network.sm_90.cubin"], cubins


def test_the_suites_ptx_check_builds_ptx_only(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """SOL_CUDA_NVRTC_CHECK=compute_90 (what scripts/test.sh sets: NVRTC's front end without
    ptxas, a quarter of the time): each emulated network is also compiled to PTX, which names
    every kernel; a malformed value is refused."""
    from sol.plugin_api import CompileError
    from sol_cuda.compiler import nvrtc_checks

    _emulated_with_check(monkeypatch, tmp_path, "compute_90")
    (ptx,) = (tmp_path / "cache").rglob("*.ptx")
    assert ptx.name == "network.compute_90.ptx" and not list((tmp_path / "cache").rglob("*.cubin"))
    (source,) = (tmp_path / "cache").rglob("network.cu")
    text = ptx.read_text()
    assert ".target sm_90" in text
    kernels = _kernels(source.read_text())
    assert kernels
    for name in kernels:
        assert f".entry {name}(" in text, name
    for bad in ("compute90x", "ptx_90", "sm_"):
        monkeypatch.setenv("SOL_CUDA_NVRTC_CHECK", bad)
        with pytest.raises(CompileError, match="SOL_CUDA_NVRTC_CHECK"):
            nvrtc_checks()


@pytest.mark.parametrize("target", ["sm_90", "compute_90"])
def test_nvrtc_refusal_fails_the_compile(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, target: str) -> None:
    """A kernel NVRTC rejects is a CompileError naming NVRTC's complaint, not a silent pass."""
    _nvrtc()
    from sol.plugin_api import CompileError, Source
    from sol_cuda.compiler import EmulationCompiler

    monkeypatch.setenv("SOL_CUDA_NVRTC_CHECK", target)
    bad = Source({"network.cu": '#if defined(__CUDACC_RTC__)\n#error "only NVRTC refuses this"\n#endif\n'
                                'extern "C" int sol_emu_kernels(void) { return 0; }\n'}, entry="network.cu")
    with pytest.raises(CompileError, match="only NVRTC refuses this"):
        EmulationCompiler().compile(bad, tmp_path)


def test_emulation_matches_pytorch_on_a_small_cnn(emulated: Path) -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Conv2d(8, 8, 3, stride=2, groups=2), nn.Hardswish(), nn.AdaptiveAvgPool2d(1),
                          nn.Flatten(), nn.Linear(8, 5), nn.LogSoftmax(-1)).eval()
    with torch.no_grad():
        model[1].running_mean.uniform_(-1, 1)
        model[1].running_var.uniform_(0.5, 2)
    x = torch.randn(3, 3, 20, 20)
    fast = sol.optimize(model, x, device="cuda")
    with torch.no_grad():
        np.testing.assert_allclose(fast(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)
        # an empty batch: no blocks launched, an empty result, as PyTorch gives
        empty = torch.randn(0, 3, 20, 20)
        assert sol.optimize(model, empty, device="cuda")(empty).shape == (0, 5)


def test_bad_index_raises_naming_the_group(emulated: Path) -> None:
    model = nn.Embedding(10, 4).eval()
    ids = torch.tensor([[1, 2, 3]])
    fast = sol.optimize(model, ids, device="cuda")
    with torch.no_grad():
        np.testing.assert_array_equal(fast(ids).numpy(), model(ids).numpy())
    with pytest.raises(IndexError,
                       match=r"group G\d+ .*: gather <- .*: index 12 is out of range for axis 0 of size 10"):
        fast(torch.tensor([[1, 12, 3]]))
    with torch.no_grad():  # the error is per call: the next good call runs
        np.testing.assert_array_equal(fast(ids).numpy(), model(ids).numpy())


def test_hostile_names_stay_comments_in_cuda_source(emulated: Path) -> None:
    bad = "x\n#error SOLPWN\n*/ SOLPWN2 /*??/\\"
    model = nn.Sequential()
    model.add_module(bad, nn.Linear(4, 3))
    model.add_module("ok", nn.Tanh())
    model = type(bad, (nn.Sequential,), {})(*model.children()).eval()
    x = torch.randn(2, 4)
    fast = sol.optimize(model, x, device="cuda")
    with torch.no_grad():
        np.testing.assert_allclose(fast(x).numpy(), model(x).numpy(), rtol=1e-4, atol=1e-5)
    found = sources(emulated, (".cu",))
    assert found
    for text in found.values():
        assert_inert(text, ["SOLPWN", "#error"])


def _without_emulation() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("SOL_CUDA_EMULATE", "SOL_CUDA_NVRTC_CHECK")}


def test_without_a_gpu_the_device_says_why_and_refuses() -> None:
    from sol_cuda import driver

    gpu, why, _ = driver.probe()
    if gpu:
        pytest.skip(f"a GPU is present ({why}): the no-GPU answer cannot be checked here")
    table = subprocess.run([str(Path(sys.executable).parent / "sol"), "plugins"], capture_output=True, text=True,
                           env=_without_emulation(), check=True).stdout
    assert f"cuda: unavailable: {why}" in table, table
    code = ("import torch, sol\n"
            "from sol.plugins import roles\n"
            "from sol.ir import TensorType\n"
            "for attempt in (lambda: sol.optimize(torch.nn.Linear(2, 2), torch.zeros(1, 2), device='cuda'),\n"
            "                lambda: roles().devices.get('cuda').memory.allocate(TensorType((2,), 'float32'))):\n"
            "    try:\n"
            "        attempt()\n"
            "    except Exception as exc:\n"
            "        print(type(exc).__name__, '|', exc)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_without_emulation(),
                         check=True).stdout.splitlines()
    assert len(out) == 2, out
    assert all(line.startswith("DeviceUnavailableError |") and why in line for line in out), out


def test_dropped_emulated_networks_with_wide_blocks_leave_openmp_working(tmp_path: Path) -> None:
    """Networks dropped (their libraries unloaded) while OpenMP's pool holds 64 threads per block:
    the process's OpenMP runtime stays loaded, so its idle threads do not run unmapped code (the
    first emulated network used to be the one that loaded libgomp, and took it along on dlclose)."""
    code = ("import gc, numpy as np, sol\n"
            "from sol.ir import Graph, TensorType\n"
            "for width in (3, 4, 5, 3):\n"
            "    g = Graph('net')\n"
            "    x = g.add_input('x', TensorType((4, width)))\n"
            "    g.outputs = [g.add_node('softmax', [g.add_node('add', [x, x]).output], {'axis': 1}).output]\n"
            "    fast = sol.optimize(g, device='cuda')\n"
            "    [y] = fast(np.ones((4, width), np.float32))\n"
            "    assert np.allclose(y, 1.0 / width), y\n"
            "    del fast\n"
            "    gc.collect()\n"
            "print('ok')\n")
    env = {**_without_emulation(), "SOL_CUDA_EMULATE": "1", "SOL_CUDA_EMULATION_THREADS": "64",
           "SOL_CACHE_DIR": str(tmp_path / "cache"), "OMP_WAIT_POLICY": "passive"}
    done = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "ok", (done.returncode, done.stderr[-2000:])


def test_emulation_threads_take_powers_of_two_up_to_the_gpus_block(monkeypatch: pytest.MonkeyPatch) -> None:
    """SOL_CUDA_EMULATION_THREADS: unset gives the default, a power of two up to the GPU's block
    size is used as given, anything else is an error naming the variable."""
    from sol.plugin_api import SolError
    from sol_cuda.device import EMULATION_THREADS, THREADS, emulation_threads

    monkeypatch.delenv("SOL_CUDA_EMULATION_THREADS", raising=False)
    assert emulation_threads() == EMULATION_THREADS
    for good in (1, 64, THREADS):
        monkeypatch.setenv("SOL_CUDA_EMULATION_THREADS", str(good))
        assert emulation_threads() == good
    for bad in ("0", "48", str(2 * THREADS), "-4", "many"):
        monkeypatch.setenv("SOL_CUDA_EMULATION_THREADS", bad)
        with pytest.raises(SolError, match="SOL_CUDA_EMULATION_THREADS"):
            emulation_threads()
