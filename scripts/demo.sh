#!/usr/bin/env bash
# The main job: optimize a ResNet-18 (plain torch.nn, random weights) on x86 and report the
# speedup over PyTorch eager and the largest difference from it.
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
exec python "$ROOT/benchmarks/demo.py" "$@"
