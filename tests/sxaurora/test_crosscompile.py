"""Real VE code: every network of the suite, rendered in the "vel" variant, is compiled by
clang's VE target (Debian clang-19) into a VE object kept in the compile cache. `file` must call
it an NEC Vector Engine ELF object, and llvm-objdump must show vector loads, stores and (for the
generated convolution/GEMM kernels) fused multiply-adds inside each group's function (a
reduction to one value per row may leave through a vector sum and a scalar store instead)."""

from __future__ import annotations

import re
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

from sol.api import compile_graph
from sol.ir import Graph
from sol.planner.plan import GroupKind
from sol_sxaurora import compiler

from ve_networks import HAVE_TORCH, IR_NETWORKS, torch_models

OBJDUMP = shutil.which("llvm-objdump-19") or shutil.which("llvm-objdump")
pytestmark = [
    pytest.mark.skipif(compiler.ve_clang() is None, reason="no clang with the VE target (apt install clang-19)"),
    pytest.mark.skipif(OBJDUMP is None, reason="no llvm-objdump (apt install llvm-19)"),
    pytest.mark.filterwarnings("ignore:sol device 've' runs emulated"),
]

VECTOR_LOAD = re.compile(r"^vld")  # vld, vldu, vldl.*, vld2d ...
VECTOR_STORE = re.compile(r"^vst")  # vst, vstu, vstl.*, ...
VECTOR_SUM = re.compile(r"^v\w*sum")  # vfsum.s: a reduction whose result leaves as a scalar
VECTOR_FMA = re.compile(r"^p?vfmad")  # vfmad.s, pvfmad.up (fp32 in the upper half) ...


def functions(obj: Path) -> dict[str, list[str]]:
    """Mnemonics of each function in a VE object."""
    out = subprocess.run([str(OBJDUMP), "-d", str(obj)], capture_output=True, text=True, check=True).stdout
    found: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        head = re.match(r"^[0-9a-f]+ <(\w+)>:", line)
        if head:
            current = found.setdefault(head.group(1), [])
        elif current is not None and "\t" in line:
            text = line.split("\t")[-1].strip()
            if text:
                current.append(text.split()[0])
    return found


def check_object(g: Graph) -> None:
    program = compile_graph(g, "ve", options={"ve_variant": "vel"})
    obj = Path(program.info["ve_object"])
    assert obj.parent == Path(program.info["artifact"]).parent  # kept in the cache entry
    kind = subprocess.run(["file", str(obj)], capture_output=True, text=True).stdout if shutil.which("file") else ""
    assert not kind or ("ELF 64-bit" in kind and "NEC Vector Engine" in kind), kind
    code = functions(obj)
    plan = program.info["plan"]
    for group in plan.groups:
        if group.kind is GroupKind.ALIAS:
            continue
        ops = code.get(f"run_{group.label}")
        assert ops, f"no function run_{group.label} in {obj}"
        assert any(VECTOR_LOAD.match(o) for o in ops), f"{group.label}: no vector load"
        assert any(VECTOR_STORE.match(o) or VECTOR_SUM.match(o) for o in ops), f"{group.label}: no vector store"
        if group.kind is GroupKind.LIBRARY:
            assert any(VECTOR_FMA.match(o) for o in ops), f"{group.label} ({group.anchor.op}): no vector FMA"


@pytest.mark.parametrize("name", sorted(IR_NETWORKS))
def test_ir_network_compiles_to_vector_code(name: str) -> None:
    check_object(IR_NETWORKS[name]())


@pytest.mark.skipif(not HAVE_TORCH, reason="the PyTorch frontend (sol-frontend-pytorch, torch) is not installed")
@pytest.mark.parametrize("name", ["SeedNet", "mlp", "small_resnet_b1", "small_unet", "small_unet_bilinear"])
def test_pytorch_model_compiles_to_vector_code(name: str) -> None:
    import torch

    from sol_pytorch.importer import import_module

    factory, shape = torch_models()[name]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = import_module(factory(), (torch.rand(*shape),), {})
    check_object(graph)
