#!/usr/bin/env bash
# The CUDA device on a real GPU (issue #18 item 6), as one script for a machine that has one: the
# device tool's machine (PyTorch with CUDA, NVRTC, pytest and jinja2 preinstalled, no network).
# Installs sol from this checkout without dependencies (offline), then runs, on "cuda" with the
# emulation off: the CUDA tests (tests/cuda, including the end-to-end launch through the driver)
# and the conformance kit (every op and pattern through the driver runtime, host arrays in and
# out). Each step's output goes to $OUT (or ./gpu-check), a summary line per step to stdout.
# Not yet: the PyTorch device tests, which pass CPU tensors (a CUDA module refuses them, as
# PyTorch does) and CPU models (the importer reads weights as host arrays).
#
#   bash scripts/gpu_check.sh            # tests/cuda and the whole conformance kit
#   bash scripts/gpu_check.sh quick      # tests/cuda and the quick conformance kit
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
out="${OUT:-$PWD/gpu-check}"
mkdir -p "$out"
py="${PYTHON:-python3}"
unset SOL_CUDA_EMULATE SOL_CUDA_NVRTC_CHECK
export SOL_CACHE_DIR="$out/cache" SOL_CUDA_NVRTC_CHECK=""
nvidia-smi > "$out/nvidia-smi.txt" 2>&1 || true
"$py" -m pip install -q --no-deps --no-build-isolation -e sol_core -e plugins/device_cuda \
  -e plugins/frontend_pytorch -e plugins/device_x86 > "$out/pip.txt" 2>&1 || { echo "pip failed: $out/pip.txt"; exit 1; }
"$py" -m sol plugins > "$out/plugins.txt" 2>&1 || sol plugins > "$out/plugins.txt" 2>&1
grep -E "^(cuda|x86)" "$out/plugins.txt" || cat "$out/plugins.txt"
status=0
step() {  # step NAME pytest-args...
  local name=$1; shift
  local t0=$SECONDS
  "$py" -m pytest -q -p no:cacheprovider -rs "$@" > "$out/$name.txt" 2>&1 || status=1
  echo "$name: $(tail -n 1 "$out/$name.txt") ($((SECONDS - t0)) s)"
}
step cuda-tests tests/cuda
if [ "${1:-}" = quick ]; then
  step conformance-quick --pyargs sol.testing --sol-device cuda --sol-quick
else
  step conformance tests/conformance --sol-device cuda
fi
exit $status
