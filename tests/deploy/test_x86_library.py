"""``sol.deploy`` on x86: the library, its header and example, built and run the way a user does
(the system's gcc and g++, no Python in the process), compared with PyTorch.

One small CNN deployed once for two batch sizes serves every test here (compiles dominate)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import sol
from sol.deployment import Deployment

from deploy_helpers import build_cpp, clean_env, compare, needs_gcc, run_example

pytestmark = needs_gcc

BATCHES = (2, 5)


def _cnn() -> nn.Module:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                      nn.Conv2d(8, 8, 3, padding=1), nn.Sigmoid(), nn.Flatten(), nn.Linear(8 * 8 * 8, 10)).eval()
    with torch.no_grad():
        m[1].running_mean.uniform_(-0.5, 0.5)
        m[1].running_var.uniform_(0.5, 2.0)
    return m


@pytest.fixture(scope="module")
def cnn(tmp_path_factory: pytest.TempPathFactory) -> tuple[nn.Module, Deployment]:
    model = _cnn()
    path = tmp_path_factory.mktemp("deploy") / "cnn"
    dep = sol.deploy(model, torch.randn(2, 3, 16, 16), path=path, name="cnn", batch_sizes=list(BATCHES))
    return model, dep


def test_directory_holds_what_the_issue_lists(cnn: tuple[nn.Module, Deployment]) -> None:
    _, dep = cnn
    for f in ("libcnn.so", "libcnn.a", "cnn.h", "cnn.weights", "example.c", "Makefile", "CMakeLists.txt", "README.md"):
        assert (dep.path / f).is_file(), f
    readme = (dep.path / "README.md").read_text()
    assert "gcc -O2 -o example example.c -I. -L. -lcnn -Wl,-rpath,'$ORIGIN'" in readme
    header = (dep.path / "cnn.h").read_text()
    for documented in ("Threads:", "CNN_VERSION_STAMP", "cnn_error_message", "cnn_create_embedded", "cnn_input_shape",
                       "cnn_workspace_bytes", "CNN_ERR_WEIGHTS"):
        assert documented in header
    assert sorted(dep.batch_sizes) == sorted(BATCHES)


@pytest.mark.parametrize("batch", BATCHES)
def test_example_matches_pytorch(cnn: tuple[nn.Module, Deployment], batch: int, tmp_path: Path) -> None:
    """Both batch sizes of one library: the input file's size picks the network."""
    model, dep = cnn
    x = torch.randn(batch, 3, 16, 16)
    [got] = run_example(dep.path, "cnn.weights", [x.numpy()], [np.dtype(np.float32)], tmp_path)
    with torch.no_grad():
        compare(got, model(x).numpy())


CPP = r"""
#include "cnn.h"

#include <cstdio>
#include <fstream>
#include <iterator>
#include <thread>
#include <vector>

static void report(const char* what, int rc) {
  std::printf("%s %d %s %s\n", what, rc, cnn_status_name(rc), rc ? cnn_error_message() : "-");
}

int main(int argc, char** argv) {
  if (argc != 6) return 2;
  cnn_net* net = nullptr;
  report("truncated", cnn_create(argv[2], &net));
  report("mismatched", cnn_create(argv[3], &net));
  report("damaged", cnn_create(argv[4], &net));
  report("missing", cnn_create(argv[5], &net));
  report("null_path", cnn_create(nullptr, &net));
  report("null_out", cnn_create(argv[1], nullptr));
  report("embedded", cnn_create_embedded(&net));
  if (net != nullptr) return 3;
  std::ifstream file(argv[1], std::ios::binary);
  std::vector<char> bytes((std::istreambuf_iterator<char>(file)), std::istreambuf_iterator<char>());
  report("memory_short", cnn_create_from_memory(bytes.data(), bytes.size() - 8, &net));
  report("create", cnn_create_from_memory(bytes.data(), bytes.size(), &net));
  if (net == nullptr) return 4;
  std::printf("counts %d %d %d %d\n", cnn_num_inputs(), cnn_num_outputs(), cnn_num_batch_sizes(),
              cnn_has_embedded_weights());
  for (int k = 0; k < cnn_num_batch_sizes(); ++k) {
    int64_t in[CNN_MAX_RANK], out[CNN_MAX_RANK];
    cnn_input_shape(0, k, in);
    cnn_output_shape(0, k, out);
    std::printf("batch %lld %zu %zu %lld %lld %lld %lld %lld %lld %d\n", (long long)cnn_batch_size(k),
                cnn_input_bytes(0, k), cnn_output_bytes(0, k), (long long)in[0], (long long)in[1],
                (long long)in[2], (long long)in[3], (long long)out[0], (long long)out[1], cnn_workspace_bytes(k) > 0);
  }
  std::printf("input %s %d %d\n", cnn_input_name(0), cnn_input_dtype(0), cnn_input_rank(0));
  int64_t dims[CNN_MAX_RANK];
  std::printf("out_of_range %d %d %d %lld %zu\n", cnn_input_name(7) == nullptr, cnn_input_rank(-1),
              cnn_input_shape(0, 9, dims), (long long)cnn_batch_size(9), cnn_output_bytes(0, 9));
  std::printf("stamp %d\n", cnn_version_stamp() == CNN_VERSION_STAMP);
  std::vector<float> x(cnn_input_bytes(0, 0) / sizeof(float), 0.5f), y(cnn_output_bytes(0, 0) / sizeof(float));
  const void* in[1] = {x.data()};
  size_t in_bytes[1] = {x.size() * sizeof(float)};
  void* out[1] = {y.data()};
  size_t out_bytes[1] = {y.size() * sizeof(float)};
  report("run", cnn_run(net, in, in_bytes, out, out_bytes));
  std::printf("values");
  for (float v : y) std::printf(" %.9g", v);
  std::printf("\n");
  size_t short_in[1] = {in_bytes[0] - 4}, long_out[1] = {out_bytes[0] + 4};
  report("wrong_input_size", cnn_run(net, in, short_in, out, out_bytes));
  report("wrong_output_size", cnn_run(net, in, in_bytes, out, long_out));
  const void* null_in[1] = {nullptr};
  void* null_out[1] = {nullptr};
  void* aliased[1] = {x.data()};
  report("null_net", cnn_run(nullptr, in, in_bytes, out, out_bytes));
  report("null_input", cnn_run(net, null_in, in_bytes, out, out_bytes));
  report("null_output", cnn_run(net, in, in_bytes, null_out, out_bytes));
  report("null_arrays", cnn_run(net, nullptr, nullptr, out, out_bytes));
  report("overlap", cnn_run(net, in, in_bytes, aliased, out_bytes));
  // One handle shared by threads: their runs are serialized and each gets the same answer.
  int mismatches = 0;
  std::vector<std::thread> threads;
  std::vector<std::vector<float>> results(4, std::vector<float>(y.size()));
  std::vector<int> codes(4, -1);
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int r = 0; r < 10; ++r) {
        void* o[1] = {results[t].data()};
        codes[t] = cnn_run(net, in, in_bytes, o, out_bytes) | (codes[t] > 0 ? codes[t] : 0);
      }
    });
  for (auto& th : threads) th.join();
  for (int t = 0; t < 4; ++t) mismatches += codes[t] != 0 || results[t] != y;
  std::printf("threads %d\n", mismatches);
  cnn_destroy(net);
  cnn_destroy(nullptr);
  std::printf("done\n");
  return 0;
}
"""


def test_cpp_program_queries_runs_and_reports_every_error(cnn: tuple[nn.Module, Deployment], tmp_path: Path) -> None:
    """A C++ program against cnn.h: a truncated, a mismatched (another deployment's stamp), a
    damaged (one flipped byte) and a missing weights file, a wrong input and output size, null
    pointers and overlapping buffers each give their error code and a message, never a crash."""
    model, dep = cnn
    good = (dep.path / "cnn.weights").read_bytes()
    truncated = tmp_path / "truncated.weights"
    truncated.write_bytes(good[:-100])
    mismatched = tmp_path / "mismatched.weights"
    mismatched.write_bytes(good[:16] + bytes(b ^ 0x5A for b in good[16:24]) + good[24:])
    damaged = tmp_path / "damaged.weights"
    damaged.write_bytes(good[:200] + bytes([good[200] ^ 1]) + good[201:])
    exe = build_cpp(dep, CPP, tmp_path)
    done = subprocess.run([str(exe), str(dep.path / "cnn.weights"), str(truncated), str(mismatched), str(damaged),
                           str(tmp_path / "nonexistent.weights")], capture_output=True, text=True, env=clean_env(),
                          check=False, timeout=120)
    assert done.returncode == 0, done.stderr + done.stdout
    lines = {line.partition(" ")[0]: line.partition(" ")[2] for line in done.stdout.splitlines()}
    assert "done" in lines

    def code(what: str) -> tuple[int, str]:
        rc, _, rest = lines[what].partition(" ")
        return int(rc), rest

    expected = {"truncated": ("CNN_ERR_WEIGHTS", "truncated"), "mismatched": ("CNN_ERR_WEIGHTS", "another deployment"),
                "damaged": ("CNN_ERR_WEIGHTS", "checksum"), "missing": ("CNN_ERR_IO", "cannot open"),
                "null_path": ("CNN_ERR_INVALID_ARGUMENT", "null"), "null_out": ("CNN_ERR_INVALID_ARGUMENT", "null"),
                "embedded": ("CNN_ERR_WEIGHTS", "without embedded weights"),
                "memory_short": ("CNN_ERR_WEIGHTS", "truncated"),
                "wrong_input_size": ("CNN_ERR_SIZE", "fit no compiled batch size"),
                "wrong_output_size": ("CNN_ERR_SIZE", "output 0"), "null_net": ("CNN_ERR_INVALID_ARGUMENT", "null"),
                "null_input": ("CNN_ERR_INVALID_ARGUMENT", "input 0"),
                "null_output": ("CNN_ERR_INVALID_ARGUMENT", "output 0"),
                "null_arrays": ("CNN_ERR_INVALID_ARGUMENT", "null"),
                "overlap": ("CNN_ERR_INVALID_ARGUMENT", "overlaps")}
    for what, (name, words) in expected.items():
        rc, rest = code(what)
        assert rc != 0 and rest.startswith(name + " ") and words in rest, (what, lines[what])
    assert code("create")[0] == 0 and code("run")[0] == 0
    assert lines["counts"] == "1 1 2 0"
    batch_lines = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("batch ")]
    assert [b[0] for b in batch_lines] == ["2", "5"]
    assert batch_lines[1][3:] == ["5", "3", "16", "16", "5", "10", "1"]
    assert int(batch_lines[1][1]) == 5 * 3 * 16 * 16 * 4 and int(batch_lines[1][2]) == 5 * 10 * 4
    assert lines["input"] == "input 0 4"  # name, CNN_FLOAT32, rank
    assert lines["out_of_range"] == "1 -1 1 -1 0"
    assert lines["stamp"] == "1" and lines["threads"] == "0"
    got = np.array([float(v) for v in lines["values"].split()], np.float32)
    with torch.no_grad():
        compare(got, model(torch.full((2, 3, 16, 16), 0.5)).numpy())


def test_self_contained_and_movable(cnn: tuple[nn.Module, Deployment], tmp_path: Path) -> None:
    """ldd shows no libpython and no sol; every library here finds the others through $ORIGIN
    only; the example still runs after the directory moved, with an empty LD_LIBRARY_PATH."""
    model, dep = cnn
    ldd = subprocess.run(["ldd", str(dep.path / "libcnn.so")], capture_output=True, text=True, env=clean_env(),
                         check=True).stdout
    assert "not found" not in ldd and "python" not in ldd.lower() and "sol" not in ldd.replace("libcnn", "")
    needed = subprocess.run(["readelf", "-d", str(dep.path / "libcnn.so")], capture_output=True, text=True,
                            check=True).stdout
    libs = {line.split("[")[1].split("]")[0] for line in needed.splitlines() if "(NEEDED)" in line}
    # (libmvec: glibc's vector half of libm, which libm's linker script links where exp, tanh, ...
    # run in vector loops)
    allowed = {"libdnnl.so.3", "libstdc++.so.6", "libgomp.so.1", "libgcc_s.so.1", "libc.so.6", "libm.so.6",
               "libmvec.so.1", "ld-linux-x86-64.so.2"}
    assert libs <= allowed, libs - allowed
    assert "Library runpath: [$ORIGIN]" in needed
    moved = tmp_path / "elsewhere" / "cnn"
    shutil.copytree(dep.path, moved, symlinks=True)
    x = torch.randn(2, 3, 16, 16)
    [got] = run_example(moved, "cnn.weights", [x.numpy()], [np.dtype(np.float32)], tmp_path / "io")
    with torch.no_grad():
        compare(got, model(x).numpy())
    ldd_example = subprocess.run(["ldd", str(moved / "example")], capture_output=True, text=True, env=clean_env(),
                                 check=True).stdout
    assert str(moved / "libcnn.so") in ldd_example and str(moved / "libdnnl.so.3") in ldd_example


def test_static_library_and_build_files(cnn: tuple[nn.Module, Deployment], tmp_path: Path) -> None:
    """``make static`` links libcnn.a (only the C API's symbols are global in it); CMake builds
    the example too. Both give the framework's answer."""
    model, dep = cnn
    folder = tmp_path / "cnn"
    shutil.copytree(dep.path, folder, symlinks=True)
    (folder / "example").unlink()
    env = clean_env()
    subprocess.run(["make", "example", "static"], cwd=folder, env=env, check=True, capture_output=True)
    symbols = subprocess.run(["nm", "-g", "--defined-only", str(folder / "libcnn.a")], capture_output=True, text=True,
                             check=True).stdout
    globals_ = [line.split()[-1] for line in symbols.splitlines() if len(line.split()) == 3]
    assert globals_ and all(s.startswith("cnn_") for s in globals_), [s for s in globals_ if not s.startswith("cnn_")]
    x = torch.randn(5, 3, 16, 16)
    with torch.no_grad():
        want = model(x).numpy()
    shutil.copy(folder / "example_static", folder / "example")
    [got] = run_example(folder, "cnn.weights", [x.numpy()], [np.dtype(np.float32)], tmp_path / "io")
    compare(got, want)
    if shutil.which("cmake") is None:
        return
    build = tmp_path / "build"
    subprocess.run(["cmake", "-S", str(folder), "-B", str(build)], env=env, check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build)], env=env, check=True, capture_output=True)
    shutil.copy(build / "cnn_example", folder / "example")
    [got] = run_example(folder, "cnn.weights", [x.numpy()], [np.dtype(np.float32)], tmp_path / "io")
    compare(got, want)

