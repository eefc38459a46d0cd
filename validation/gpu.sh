#!/usr/bin/env bash
# Run every experiment's `gpu` preset on one CUDA GPU and write the report.
#
#   validation/gpu.sh [OUT]        (OUT defaults to validation/results)
#
# Budget: under 8 minutes on one H100 (trainings run as parallel processes on the one GPU;
# see docs/validation.md). Stops at once, writing nothing, when no CUDA device is present.
# Rerunning reuses finished trainings (checkpoints under OUT/<experiment>/gpu/train/).
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-validation/results}"
start=$SECONDS
python -m validation run-all --preset gpu --device cuda --out "$out"
echo "gpu preset: all experiments and the report in $((SECONDS - start)) s -> $out"
