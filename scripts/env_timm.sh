# Sourced by test.sh (after env.sh): create ./.venv-timm on first use for the timm model tests.
# timm imports torchvision, and PyPI's torchvision does not load beside the CPU build of
# torch 2.13 that ./.venv pins ("operator torchvision::nms does not exist"); torch 2.14.1 with
# torchvision 0.29.1 from PyPI do load together (CUDA builds, 5.5 GB, fine on a CPU; `time pip
# install torch==2.14.1 torchvision==0.29.1 timm==1.0.31` into a fresh venv: 71 s here, 2026-12-06). Moving the whole project to that pair would make every
# environment 5.5 GB and leave torch 2.13 untested; a second environment costs about a minute
# of set-up and tests sol on the newer PyTorch as well. Core, the x86 device and the PyTorch
# frontend are installed; idempotent through a stamp, as env_mxnet.sh.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TIMMVENV="${SOL_TIMM_VENV:-$ROOT/.venv-timm}"
TIMMPY="${PYTHON_TIMM:-$(command -v python3.11 || command -v python3)}"
TIMMSTAMP="$TIMMVENV/.sol-installed"
command -v g++ >/dev/null 2>&1 || {
  echo "sol: installing g++ (apt-get)" >&2
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq g++ >/dev/null
}
if [ ! -x "$TIMMVENV/bin/python" ]; then
  "$TIMMPY" -m venv "$TIMMVENV"
fi
want="$(cat "$ROOT/scripts/env_timm.sh" "$ROOT"/sol_core/pyproject.toml "$ROOT"/plugins/device_x86/pyproject.toml \
  "$ROOT"/plugins/frontend_pytorch/pyproject.toml | sha256sum | cut -c1-16)"
if [ ! -f "$TIMMSTAMP" ] || [ "$(cat "$TIMMSTAMP")" != "$want" ]; then
  echo "sol: setting up $TIMMVENV (first run takes a minute or two)" >&2
  "$TIMMVENV/bin/pip" install -q --disable-pip-version-check --upgrade pip "setuptools>=77"
  "$TIMMVENV/bin/pip" install -q --disable-pip-version-check "torch==2.14.1" "torchvision==0.29.1" "timm==1.0.31" \
    "onednn-cpu-gomp==2023.2.0" "onednn-devel-cpu-gomp==2023.2.0" pytest pytest-timeout
  "$TIMMVENV/bin/pip" install -q --disable-pip-version-check -e "$ROOT/sol_core" -e "$ROOT/plugins/device_x86" \
    -e "$ROOT/plugins/frontend_pytorch"
  echo "$want" > "$TIMMSTAMP"
fi
