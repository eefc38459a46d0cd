#!/usr/bin/env bash
# Run the experiments' `gpu` presets on one CUDA GPU, then write the report.
#
#   validation/gpu.sh [OUT [LANE ...]]
#
# OUT defaults to validation/results. A LANE is a comma-separated list of experiments run one
# after another; lanes run side by side (the GPU and the CPU cores are shared). With no lane,
# every experiment runs in one lane. GPU_BUDGET (seconds, default unlimited) is a deadline
# for the whole script: each experiment gets what is left of it, and one stopped at the
# deadline writes nothing (results are written atomically); the others keep theirs. Each
# experiment's log is OUT/logs/NAME.log.
#
#   GPU_BUDGET=480 validation/gpu.sh /tmp/vr score_fidelity,symmetry_networks late_init
#
# GPU_BENCH=1 first runs the ensemble-training benchmark (`python -m benchmarks.bench_training
# --ensemble`, its CUDA rows written to benchmarks/results/training_ensemble_cuda.md; log
# OUT/logs/bench_training.log) and the empirical score on the GPU (`python -m
# benchmarks.bench_empirical_torch --device cuda`, written to
# benchmarks/results/empirical_torch_cuda.md; log OUT/logs/bench_empirical_torch.log), counted
# in the budget, so that one lease brings back all of them.
# GPU_PRESET and GPU_DEVICE (defaults gpu, cuda) exist to try the script on a CPU machine with
# the smoke preset. Stops at once, writing nothing, when the device is cuda and no CUDA device
# is present. Rerunning reuses finished
# trainings (checkpoints under OUT/<experiment>/gpu/train/).
set -euo pipefail
cd "$(dirname "$0")/.."
py="${PYTHON:-python3}"
preset="${GPU_PRESET:-gpu}"
device="${GPU_DEVICE:-cuda}"
out="${1:-validation/results}"
shift || true
if [ "$#" -eq 0 ]; then
    set -- "$("$py" -c 'from validation.experiments import EXPERIMENTS; print(",".join(EXPERIMENTS))')"
fi
if [ "$device" != cpu ]; then
    "$py" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else "no CUDA device")'
fi
start=$SECONDS
deadline=$((start + ${GPU_BUDGET:-100000000}))
mkdir -p "$out/logs"
if [ "${GPU_BENCH:-0}" = 1 ]; then
    rc=0
    bench_args=(--ensemble)
    [ "$device" = cpu ] && bench_args+=(--quick)  # the CPU try-out: a short run, no file
    timeout $((deadline - SECONDS)) "$py" -m benchmarks.bench_training "${bench_args[@]}" \
        >"$out/logs/bench_training.log" 2>&1 || rc=$?
    echo "bench_training --ensemble: exit $rc after $((SECONDS - start)) s"
    rc=0
    emp_args=(--device "$device")
    # the CPU try-out: a short run written beside the logs, not over the committed results
    [ "$device" = cpu ] && emp_args+=(--quick --out "$out/logs/empirical_torch_cpu.md")
    timeout $((deadline - SECONDS)) "$py" -m benchmarks.bench_empirical_torch "${emp_args[@]}" \
        >"$out/logs/bench_empirical_torch.log" 2>&1 || rc=$?
    echo "bench_empirical_torch: exit $rc after $((SECONDS - start)) s"
fi

lane() {  # run the experiments of one lane in order, each within what is left of the budget
    local name left rc
    for name in ${1//,/ }; do
        left=$((deadline - SECONDS))
        if [ "$left" -lt 20 ]; then
            echo "$name: skipped (budget spent)"
            continue
        fi
        rc=0
        timeout "$left" "$py" -m validation run "$name" --preset "$preset" \
            --device "$device" --out "$out" >"$out/logs/$name.log" 2>&1 || rc=$?
        echo "$name: exit $rc after $((SECONDS - start)) s"
    done
}

for spec in "$@"; do
    lane "$spec" &
done
wait
"$py" -m validation report --out "$out"
echo "$preset preset: $((SECONDS - start)) s -> $out"
