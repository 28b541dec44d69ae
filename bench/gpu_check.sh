#!/usr/bin/env bash
# The GPU check, one short script for a borrowed machine (see README, "Speed"):
#   bash bench/gpu_check.sh [OUT_DIR]
# CUDA tests, bench_train.py --scale full on cuda (float32, then --amp), and the default run.
set -u
out=${1:-${OUT:-/tmp/gpu_check}}
mkdir -p "$out"
export PYTHONUNBUFFERED=1
py=${PYTHON:-python3}
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
$py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)" | tee -a "$out/gpu.txt"
$py -m pytest -q -p no:cacheprovider tests/test_fast_step.py 2>&1 | tail -25 | tee "$out/tests_cuda.txt"
$py bench/bench_train.py --scale full --device cuda 2>&1 | tee "$out/bench_cuda.txt"
$py bench/bench_train.py --scale full --device cuda --amp 2>&1 | tee "$out/bench_cuda_amp.txt"
$py run.py --device cuda --output-dir /tmp/gpu_run --overwrite --no-tensorboard 2>&1 \
    | tail -20 | tee "$out/run_cuda.txt"
