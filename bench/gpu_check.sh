#!/usr/bin/env bash
# The GPU check for a lent machine (15 minutes, its start included), as two commands of at
# most 7 minutes each (see docs/gpu.md):
#   bash bench/gpu_check.sh 1 [OUT_DIR]   # the CUDA tests, the full-scale training bench
#   bash bench/gpu_check.sh 2 [OUT_DIR]   # --amp bench, a --step padded run, five seeds
# Part 1: every CUDA test (every gradient of the one-video step, the padded step, the
# classifier trainer, --amp, --step padded, --deterministic, the test pass, a run trained on
# the GPU detected and resumed on the CPU, a NaN on the GPU); a skipped test is a failure.
# Then bench_train.py --scale full on cuda beside the released loop, the schedule measured.
# Part 2: the bench with --amp, the default run with --step padded, the five-seed default run.
# Each part of a command has its own time limit (they add up to under 7 minutes), so one
# that hangs does not take the others' time; everything is printed and kept in OUT_DIR.
# Exit 0 when every part passed; without CUDA it stops at once, in one line.
set -u
py=${PYTHON:-python3}
which=${1:-}
if ! $py -c "import sys, torch; sys.exit(not torch.cuda.is_available())" 2>/dev/null; then
    echo "error: bench/gpu_check.sh: no CUDA device here (torch.cuda.is_available() is False); run it on a GPU machine" >&2
    exit 2
fi
if [ "$which" != 1 ] && [ "$which" != 2 ]; then
    echo "error: bench/gpu_check.sh: give the part, 1 or 2 (bash bench/gpu_check.sh 1 [OUT_DIR])" >&2
    exit 2
fi
out=${2:-${OUT:-/tmp/gpu_check}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
failed=0
part() {    # part NAME LIMIT_S COMMAND...: run, print, keep; a failure is counted, not fatal
    local name=$1 limit=$2
    shift 2
    echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | grep -v '^USDT' | tee "$out/$name.txt"
    local code=${PIPESTATUS[0]}
    if [ "$code" = 0 ] && [[ $name == tests* ]] && grep -q " skipped" "$out/$name.txt"; then
        code=skipped                    # a CUDA test that did not run is not a pass
    fi
    [ "$code" = 0 ] || failed=1
    echo "=== $name: exit $code, $((SECONDS - t0)) s"
}
{
    date -u +%Y-%m-%d
    git log -1 --format='commit %h %s'
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"
} 2>&1 | tee "$out/gpu_$which.txt"
if [ "$which" = 1 ]; then
    part tests_cuda 180 $py -m pytest -q -rs -p no:cacheprovider tests/test_fast_step.py \
        tests/test_padded_step.py tests/test_cuda.py
    part bench_cuda 200 $py bench/bench_train.py --scale full --device cuda --measure-schedule
else
    part bench_cuda_amp 80 $py bench/bench_train.py --scale full --device cuda --amp \
        --no-reference
    part run_cuda_padded 60 $py run.py --device cuda --step padded --output-dir "$out/padded" \
        --overwrite --no-tensorboard --no-report --quiet
    part run_cuda_seeds 190 $py run.py --device cuda --seeds 1 2 3 4 5 \
        --output-dir "$out/seeds" --overwrite --no-tensorboard --no-report --quiet
    cat "$out/padded/results.txt" "$out/seeds/summary.txt" 2>/dev/null
fi
exit $failed
