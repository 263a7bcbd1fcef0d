"""``sol.deploy(..., device="ve")``: the VE objects are real VE machine code, and the host-side
loader (the C API over AVEO) runs the networks correctly. No Vector Engine here: the loader is
built against a stand-in for AVEO that runs the same VE C sources compiled for the host (the VE
device's own emulation, velintrin_emu.h), so the loader's protocol, the weights and both batch
sizes are checked end to end; on the VE itself it has not run."""

from __future__ import annotations

import shutil
import subprocess
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

import sol
from sol.errors import SolError

from deploy_helpers import clean_env, compare, needs_gcc

pytestmark = [needs_gcc, pytest.mark.filterwarnings("ignore:sol device 've' runs emulated")]

STUB_HEADER = r"""
#include <stddef.h>
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
#define VEO_REQUEST_ID_INVALID (~0UL)
enum { VEO_COMMAND_OK = 0 };
struct veo_proc_handle;
struct veo_thr_ctxt;
struct veo_args;
struct veo_proc_handle* veo_proc_create(int venode);
int veo_proc_destroy(struct veo_proc_handle* h);
uint64_t veo_load_library(struct veo_proc_handle* h, const char* libname);
uint64_t veo_get_sym(struct veo_proc_handle* h, uint64_t libhdl, const char* symname);
int veo_alloc_mem(struct veo_proc_handle* h, uint64_t* addr, const size_t size);
int veo_free_mem(struct veo_proc_handle* h, uint64_t addr);
int veo_read_mem(struct veo_proc_handle* h, void* dst, uint64_t src, size_t size);
int veo_write_mem(struct veo_proc_handle* h, uint64_t dst, const void* src, size_t size);
struct veo_thr_ctxt* veo_context_open(struct veo_proc_handle* h);
int veo_context_close(struct veo_thr_ctxt* ctx);
struct veo_args* veo_args_alloc(void);
int veo_args_set_u64(struct veo_args* ca, int argnum, uint64_t val);
void veo_args_free(struct veo_args* ca);
uint64_t veo_call_async(struct veo_thr_ctxt* ctx, uint64_t addr, struct veo_args* args);
int veo_call_wait_result(struct veo_thr_ctxt* ctx, uint64_t reqid, uint64_t* retp);
#ifdef __cplusplus
}
#endif
"""

# AVEO's calls on the host: "VE memory" is host memory, a "VE library" a host shared object.
STUB_SOURCE = r"""
#include <dlfcn.h>
#include <stdlib.h>
#include <string.h>
#include "ve_offload.h"
struct veo_proc_handle { int calls; };
struct veo_thr_ctxt { uint64_t result; };
struct veo_args { uint64_t a[8]; };
typedef int64_t (*fn5)(uint64_t, uint64_t, uint64_t, uint64_t, uint64_t);
typedef struct veo_proc_handle Proc;
Proc* veo_proc_create(int venode) { (void)venode; return calloc(1, sizeof(Proc)); }
int veo_proc_destroy(Proc* h) { free(h); return 0; }
uint64_t veo_load_library(Proc* h, const char* name) { (void)h; return (uint64_t)dlopen(name, RTLD_NOW); }
uint64_t veo_get_sym(Proc* h, uint64_t lib, const char* name) { (void)h; return (uint64_t)dlsym((void*)lib, name); }
int veo_alloc_mem(Proc* h, uint64_t* addr, const size_t size) {
  (void)h;
  *addr = (uint64_t)calloc(1, size);
  return *addr ? 0 : -1;
}
int veo_free_mem(Proc* h, uint64_t addr) { (void)h; free((void*)addr); return 0; }
int veo_read_mem(Proc* h, void* dst, uint64_t src, size_t n) { (void)h; memcpy(dst, (void*)src, n); return 0; }
int veo_write_mem(Proc* h, uint64_t dst, const void* src, size_t n) { (void)h; memcpy((void*)dst, src, n); return 0; }
struct veo_thr_ctxt* veo_context_open(Proc* h) { (void)h; return calloc(1, sizeof(struct veo_thr_ctxt)); }
int veo_context_close(struct veo_thr_ctxt* c) { free(c); return 0; }
struct veo_args* veo_args_alloc(void) { return calloc(1, sizeof(struct veo_args)); }
int veo_args_set_u64(struct veo_args* ca, int i, uint64_t v) { ca->a[i] = v; return 0; }
void veo_args_free(struct veo_args* ca) { free(ca); }
uint64_t veo_call_async(struct veo_thr_ctxt* c, uint64_t fn, struct veo_args* a) {
  c->result = (uint64_t)((fn5)fn)(a->a[0], a->a[1], a->a[2], a->a[3], a->a[4]);
  return 1;
}
int veo_call_wait_result(struct veo_thr_ctxt* c, uint64_t id, uint64_t* ret) { (void)id; *ret = c->result; return 0; }
"""


def _run(cmd: list[str], cwd: Path | None = None) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=clean_env(), check=False)
    assert done.returncode == 0, f"{cmd[0]}: {done.stderr}{done.stdout}"
    return done.stdout


@pytest.mark.skipif(shutil.which("clang-19") is None and not Path("/opt/nec/ve/bin/ncc").exists(),
                    reason="needs a VE compiler (clang-19 or ncc)")
def test_ve_deployment_objects_and_host_loader(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 5)).eval()
    dep = sol.deploy(model, (2, 3, 8, 8), path=tmp_path / "vnet", device="ve", name="vnet", batch_sizes=[1, 2])
    objects = sorted(f for f in dep.files if f.endswith(".ve.o"))
    assert objects == ["vnet_v0.ve.o", "vnet_v1.ve.o"]
    for obj in objects:
        assert "NEC Vector Engine" in _run(["readelf", "-h", str(dep.path / obj)])  # the ELF header's machine
        assert "sol_vnet_v" in _run(["readelf", "-s", str(dep.path / obj)])  # the renamed C ABI
    for f in ("vnet.h", "vnet_host.cpp", "vnet.weights", "example.c", "Makefile", "README.md"):
        assert (dep.path / f).is_file(), f
    assert "cannot" not in dep.files and "NEC's VE binutils" in (dep.path / "README.md").read_text()
    # The loader and the example, against the AVEO stand-in; the networks compiled for the host.
    work = tmp_path / "host"
    shutil.copytree(dep.path, work)
    (work / "ve_offload.h").write_text(STUB_HEADER)
    (work / "fakeveo.c").write_text(STUB_SOURCE)
    emulation = resources.files("sol_sxaurora").joinpath("templates", "velintrin_emu.h").read_text()
    (work / "velintrin_emu.h").write_text(emulation)
    _run(["gcc", "-O1", "-fPIC", "-shared", "-o", "libfakeveo.so", "fakeveo.c", "-ldl"], work)
    _run(["gcc", "-std=gnu11", "-O1", "-fPIC", "-shared", "-include", "velintrin_emu.h", "-o", "libvnet_ve.so",
          "src/vnet_v0.c", "src/vnet_v1.c", "-lm"], work)
    _run(["g++", "-std=c++17", "-O1", "-Wall", "-Werror", "-fPIC", "-shared", "-o", "libvnet.so", "vnet_host.cpp",
          "-I.", "-L.", "-lfakeveo", "-ldl", "-Wl,-rpath,$ORIGIN"], work)
    _run(["gcc", "-O1", "-Wall", "-Werror", "-o", "example", "example.c", "-I.", "-L.", "-lvnet",
          "-Wl,-rpath,$ORIGIN"], work)
    for batch in (1, 2):
        x = torch.randn(batch, 3, 8, 8)
        x.numpy().tofile(work / "in.bin")
        _run(["./example", "vnet.weights", "in.bin", "out.bin"], work)
        with torch.no_grad():
            compare(np.fromfile(work / "out.bin", np.float32), model(x).numpy())
    truncated = (work / "vnet.weights").read_bytes()[:-8]
    (work / "short.weights").write_bytes(truncated)
    done = subprocess.run(["./example", "short.weights"], cwd=work, capture_output=True, text=True, env=clean_env(),
                          check=False)
    assert done.returncode == 1 and "VNET_ERR_WEIGHTS" in done.stderr and "truncated" in done.stderr


def test_ve_refuses_embedded_weights(tmp_path: Path) -> None:
    with pytest.raises(SolError, match="cannot be embedded"):
        sol.deploy(nn.Linear(2, 2).eval(), (1, 2), path=tmp_path / "x", device="ve", embed_weights=True)
