#!/usr/bin/env bash
# The whole test suite (what CI runs).
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
cd "$ROOT"
exec python -m pytest -q "$@"
