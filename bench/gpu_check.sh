#!/usr/bin/env bash
# The GPU check, one prepared script for a lent machine (see docs/gpu.md):
#   bash bench/gpu_check.sh [OUT_DIR]
# About 8 minutes on an H100/H200: the CUDA tests (hand-written step, padded step), then
# bench_train.py --scale full on cuda side by side with the released loop (float32 with the
# whole schedule measured, then --amp), then the five-seed default run on the GPU.
# Everything is printed and kept in OUT_DIR; each part has its own time limit, so one that
# hangs does not take the others' time.
set -u
out=${1:-${OUT:-/tmp/gpu_check}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
part() {    # part NAME LIMIT_S COMMAND...: run, print, keep; a failure is reported, not fatal
    local name=$1 limit=$2
    shift 2
    echo "=== $name ($(date -u +%H:%M:%S), limit ${limit}s): $*"
    local t0=$SECONDS
    timeout "$limit" "$@" 2>&1 | grep -v '^USDT' | tee "$out/$name.txt"
    echo "=== $name: exit ${PIPESTATUS[0]}, $((SECONDS - t0)) s"
}
date -u +%Y-%m-%d | tee "$out/gpu.txt"
git log -1 --format='commit %h %s' | tee -a "$out/gpu.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$out/gpu.txt"
$py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" \
    | tee -a "$out/gpu.txt"
part tests_cuda 150 $py -m pytest -q -p no:cacheprovider tests/test_fast_step.py \
    tests/test_padded_step.py
part bench_cuda 200 $py bench/bench_train.py --scale full --device cuda --measure-schedule
part bench_cuda_amp 90 $py bench/bench_train.py --scale full --device cuda --amp --no-reference
part run_cuda_seeds 200 $py run.py --device cuda --seeds 1 2 3 4 5 --output-dir "$out/seeds" \
    --overwrite --no-tensorboard --no-report --quiet
cat "$out/seeds/summary.txt" 2>/dev/null
