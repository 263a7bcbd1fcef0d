"""The host emulation of the VEL intrinsics, intrinsic by intrinsic, against scalar reference
loops (emulation_check.c), and its agreement with LLVM's real <velintrin.h> on names and types."""

from __future__ import annotations

import re
import shutil
import subprocess
from importlib import resources
from pathlib import Path

import pytest

from sol_sxaurora import compiler

HERE = Path(__file__).parent
TEMPLATES = resources.files("sol_sxaurora").joinpath("templates")
HEADER = Path(str(TEMPLATES.joinpath("velintrin_emu.h")))

# Every intrinsic the emulation provides, with a call of the real intrinsic's signature.
SIGNATURES = {
    "_vel_vldu_vssl": "__vr r = _vel_vldu_vssl(4L, p, vl);",
    "_vel_vstu_vssl": "_vel_vstu_vssl(a, 4L, q, vl);",
    "_vel_vbrds_vsl": "__vr r = _vel_vbrds_vsl(s, vl);",
    "_vel_lvss_svs": "float r = _vel_lvss_svs(a, 3);",
    "_vel_vfadds_vvvl": "__vr r = _vel_vfadds_vvvl(a, b, vl);",
    "_vel_vfadds_vvvvl": "__vr r = _vel_vfadds_vvvvl(a, b, c, vl);",
    "_vel_vfadds_vsvl": "__vr r = _vel_vfadds_vsvl(s, b, vl);",
    "_vel_vfsubs_vvvl": "__vr r = _vel_vfsubs_vvvl(a, b, vl);",
    "_vel_vfsubs_vsvl": "__vr r = _vel_vfsubs_vsvl(s, b, vl);",
    "_vel_vfmuls_vvvl": "__vr r = _vel_vfmuls_vvvl(a, b, vl);",
    "_vel_vfmuls_vsvl": "__vr r = _vel_vfmuls_vsvl(s, b, vl);",
    "_vel_vfdivs_vvvl": "__vr r = _vel_vfdivs_vvvl(a, b, vl);",
    "_vel_vfdivs_vsvl": "__vr r = _vel_vfdivs_vsvl(s, b, vl);",
    "_vel_vfmaxs_vvvl": "__vr r = _vel_vfmaxs_vvvl(a, b, vl);",
    "_vel_vfmaxs_vvvvl": "__vr r = _vel_vfmaxs_vvvvl(a, b, c, vl);",
    "_vel_vfmaxs_vsvl": "__vr r = _vel_vfmaxs_vsvl(s, b, vl);",
    "_vel_vfmins_vvvl": "__vr r = _vel_vfmins_vvvl(a, b, vl);",
    "_vel_vfmins_vsvl": "__vr r = _vel_vfmins_vsvl(s, b, vl);",
    "_vel_vfmads_vvvvl": "__vr r = _vel_vfmads_vvvvl(a, b, c, vl);",
    "_vel_vfmads_vvsvl": "__vr r = _vel_vfmads_vvsvl(a, s, b, vl);",
    "_vel_vfsqrts_vvl": "__vr r = _vel_vfsqrts_vvl(a, vl);",
    "_vel_vand_vsvl": "__vr r = _vel_vand_vsvl(0x7fffffff00000000UL, a, vl);",
    "_vel_vfsums_vvl": "__vr r = _vel_vfsums_vvl(a, vl);",
    "_vel_vld_vssl": "__vr r = _vel_vld_vssl(8L, p, vl);",
    "_vel_vaddul_vsvl": "__vr r = _vel_vaddul_vsvl(8UL, a, vl);",
    "_vel_vgtu_vvssl": "__vr r = _vel_vgtu_vvssl(a, 0UL, 0UL, vl);",
}


def _defined_in_header() -> set[str]:
    text = HEADER.read_text()
    return set(re.findall(r"\b(_vel_\w+)\s*\(", text)) | set(re.findall(r"SOL_VEL_\w+\((_vel_\w+),", text))


def _used_by_generated_code() -> set[str]:
    used: set[str] = set()
    sources = [Path(str(TEMPLATES.joinpath(n))) for n in ("ops_vel.j2", "vector.j2", "network.c.j2")]
    sources += [Path(compiler.__file__).with_name(n) for n in ("vectorize.py", "kernels.py", "render.py")]
    for path in sources:
        used |= set(re.findall(r"\b(_vel_\w+)\(", path.read_text()))
    return used


@pytest.fixture(scope="module")
def checker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cc = compiler.host_cc()
    if cc is None:
        pytest.skip("no host C compiler")
    exe = tmp_path_factory.mktemp("emu") / "emulation_check"
    # -ffp-contract=off: the reference loops must round every operation once, as written.
    subprocess.run([cc, "-std=gnu11", "-O1", "-ffp-contract=off", "-include", str(HEADER), "-o", str(exe),
                    str(HERE / "emulation_check.c"), "-lm"], check=True)
    return exe


def test_generated_code_uses_only_emulated_intrinsics() -> None:
    missing = _used_by_generated_code() - _defined_in_header()
    assert not missing, f"templates use intrinsics the emulation lacks: {sorted(missing)}"


def test_every_emulated_intrinsic_is_checked() -> None:
    assert _defined_in_header() == set(SIGNATURES)


@pytest.mark.parametrize("intrinsic", sorted(SIGNATURES) + ["fault"])
def test_intrinsic_against_scalar_reference(checker: Path, intrinsic: str) -> None:
    out = subprocess.run([str(checker), intrinsic], capture_output=True, text=True)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == f"ok {intrinsic}"


def _signature_file() -> str:
    body = "\n".join(f"  {{ {call} sink(&r, sizeof r); }}" if "r =" in call else f"  {{ {call} }}"
                     for call in SIGNATURES.values())
    return ("void sink(const void* p, unsigned long n);\n"
            "void calls(const float* p, float* q, float s, __vr a, __vr b, __vr c, int vl) {\n"
            f"{body}\n}}\n")


def test_emulated_signatures_match_llvm_velintrin(tmp_path: Path) -> None:
    """The same calls compile against the real header (clang's VE target) and the emulation."""
    src = tmp_path / "calls.c"
    src.write_text(_signature_file())
    cc = compiler.host_cc()
    assert cc is not None
    subprocess.run([cc, "-std=gnu11", "-Werror=incompatible-pointer-types", "-Werror=int-conversion",
                    "-include", str(HEADER), "-c", str(src), "-o", str(tmp_path / "host.o")], check=True)
    clang = compiler.ve_clang()
    if clang is None:
        pytest.skip("no clang with the VE target")
    real = tmp_path / "real.c"
    real.write_text("#include <velintrin.h>\n" + _signature_file())
    out = subprocess.run([clang, compiler.VE_TARGET, "-std=gnu11", "-Werror=incompatible-pointer-types",
                          "-Werror=int-conversion", "-c", str(real), "-o", str(tmp_path / "ve.o")],
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    if shutil.which("file"):
        assert "NEC Vector Engine" in subprocess.run(["file", str(tmp_path / "ve.o")], capture_output=True,
                                                     text=True).stdout
