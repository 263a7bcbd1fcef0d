# Sourced by test.sh (after env.sh): create ./.venv-mxnet on first use for the MXNet frontend's
# tests. MXNet 1.9.1 needs numpy<1.24, which TensorFlow 2.21 (in ./.venv) refuses, so MXNet gets
# a virtual environment of its own: core, the x86 and SX-Aurora devices and the MXNet frontend,
# with pinned versions. Idempotent: a stamp (hash of this file and the pyprojects it installs)
# says whether the environment is current.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
MXVENV="${SOL_MXNET_VENV:-$ROOT/.venv-mxnet}"
MXPY="${PYTHON_MXNET:-$(command -v python3.11 || command -v python3)}"  # MXNet 1.9.1 runs on 3.11 (checked)
MXSTAMP="$MXVENV/.sol-installed"
# g++ builds x86 networks; clang-19 cross-compiles SX-Aurora (VE) kernels (as in env.sh).
need=()
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v clang-19 >/dev/null 2>&1 || need+=(clang-19)
command -v llvm-objdump-19 >/dev/null 2>&1 || need+=(llvm-19)
command -v file >/dev/null 2>&1 || need+=(file)
if [ ${#need[@]} -gt 0 ]; then
  echo "sol: installing ${need[*]} (apt-get)" >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ ! -x "$MXVENV/bin/python" ]; then
  "$MXPY" -m venv "$MXVENV"
fi
want="$(cat "$ROOT/scripts/env_mxnet.sh" "$ROOT"/sol_core/pyproject.toml "$ROOT"/plugins/device_x86/pyproject.toml \
  "$ROOT"/plugins/device_sxaurora/pyproject.toml "$ROOT"/plugins/frontend_mxnet/pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$MXSTAMP" ] || [ "$(cat "$MXSTAMP")" != "$want" ]; then
  echo "sol: setting up $MXVENV (first run takes a few minutes)" >&2
  "$MXVENV/bin/pip" install -q --disable-pip-version-check --upgrade pip "setuptools>=77"
  "$MXVENV/bin/pip" install -q --disable-pip-version-check "mxnet==1.9.1" "numpy==1.23.5" \
    "onednn-cpu-gomp==2023.2.0" "onednn-devel-cpu-gomp==2023.2.0" \
    pytest pytest-timeout "hypothesis==6.170.27"
  "$MXVENV/bin/pip" install -q --disable-pip-version-check -e "$ROOT/sol_core" -e "$ROOT/plugins/device_x86" \
    -e "$ROOT/plugins/device_sxaurora" -e "$ROOT/plugins/frontend_mxnet" "numpy==1.23.5"
  echo "$want" > "$MXSTAMP"
fi
