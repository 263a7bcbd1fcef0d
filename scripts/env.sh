# Sourced by demo.sh and test.sh: create ./.venv on first use and install sol (core + in-tree
# plugins) with pinned framework and library versions. Never lets pip pick a torch by itself:
# an unpinned torch resolves to a multi-GB CUDA build.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SOL_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.sol-installed"
# g++ builds x86 networks; Debian's clang-19 cross-compiles SX-Aurora (VE) kernels and
# llvm-objdump-19 inspects them.
need=()
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v clang-19 >/dev/null 2>&1 || need+=(clang-19)
command -v llvm-objdump-19 >/dev/null 2>&1 || need+=(llvm-19)
command -v file >/dev/null 2>&1 || need+=(file)
if [ ${#need[@]} -gt 0 ]; then
  echo "sol: installing ${need[*]} (apt-get)" >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -x "$VENV/bin/python" ]; then
  "$PY" -m venv "$VENV"
fi
want="$(cat "$ROOT/scripts/env.sh" "$ROOT"/sol_core/pyproject.toml "$ROOT"/plugins/*/pyproject.toml "$ROOT"/benchmarks/pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  echo "sol: setting up $VENV (first run takes a few minutes)" >&2
  "$VENV/bin/pip" install -q --disable-pip-version-check --upgrade pip "setuptools>=77"
  "$VENV/bin/pip" install -q --disable-pip-version-check "torch==2.13.0" "numpy>=1.23" \
    "onednn-cpu-gomp==2023.2.0" "onednn-devel-cpu-gomp==2023.2.0" "tensorflow-cpu==2.21.0" \
    pytest pytest-timeout "pytest-xdist==3.8.0" ruff mypy "hypothesis==6.170.27" "rich==15.0.0" \
    "onnxruntime==1.32.0" "onnx==1.23.2" "onnxscript==0.7.2" "matplotlib==3.11.2" "tf2onnx==1.17.0" \
    "transformers==5.25.0" "expecttest==0.3.0" "nvidia-cuda-nvrtc-cu12==12.9.86"
  "$VENV/bin/pip" install -q --disable-pip-version-check -e "$ROOT/sol_core" -e "$ROOT/plugins/device_x86" \
    -e "$ROOT/plugins/frontend_pytorch" -e "$ROOT/plugins/device_sxaurora" -e "$ROOT/plugins/frontend_tensorflow" \
    -e "$ROOT/plugins/frontend_onnx" -e "$ROOT/plugins/device_cuda" -e "$ROOT/benchmarks"
  echo "$want" > "$STAMP"
fi
export PATH="$VENV/bin:$PATH"
