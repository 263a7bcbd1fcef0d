#!/usr/bin/env bash
# The whole test suite (what CI runs): the main environment (PyTorch, TensorFlow, ONNX; numpy 2),
# then the MXNet environment (MXNet 1.9.1 needs numpy<1.24: its own venv), which also runs the
# device conformance kit under numpy 1.23, then the timm environment (torch 2.14 + torchvision:
# scripts/env_timm.sh says why). Arguments go to the main run only; with arguments the other
# environments are skipped (a developer running one file).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
# No GPU (CI): the CUDA device runs its kernels in the host emulation, so every device test runs
# on "cuda" too, and NVRTC compiles each network it builds to PTX for compute_90 (a kernel NVRTC
# refuses fails the test that made it). PTX, not cubins: ptxas is three quarters of NVRTC's time
# on large networks, and tests/cuda builds real sm_80 and sm_90 cubins. With a GPU, "auto" leaves
# the device on the GPU.
export SOL_CUDA_EMULATE="${SOL_CUDA_EMULATE-auto}" SOL_CUDA_NVRTC_CHECK="${SOL_CUDA_NVRTC_CHECK-compute_90}"
if [ $# -gt 0 ]; then
  exec python -m pytest -q "$@"
fi
status=0
# Two pytest workers, each taking whole files (module fixtures compile once per file): most of a
# test's time is one core's (tracing, planning, g++ on one part), so a second worker halves the
# wall time on a 2-core machine (measured: 38.8 min -> 20.6 min). SOL_TEST_WORKERS overrides.
python -m pytest -q -n "${SOL_TEST_WORKERS:-2}" --dist loadfile || status=$?
source "$ROOT/scripts/env_mxnet.sh"
echo "sol: MXNet frontend and the device kit under numpy 1.23 ($MXVENV)" >&2
"$MXVENV/bin/python" -m pytest -q -p no:cacheprovider tests/mxnet || status=$?
"$MXVENV/bin/python" -m pytest -q -p no:cacheprovider --pyargs sol.testing --sol-device x86 --sol-quick || status=$?
source "$ROOT/scripts/env_timm.sh"
echo "sol: timm model families under torch 2.14 ($TIMMVENV)" >&2
"$TIMMVENV/bin/python" -m pytest -q -p no:cacheprovider tests/timm_models || status=$?
exit $status
