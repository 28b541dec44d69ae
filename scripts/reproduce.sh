#!/usr/bin/env bash
# Shared body of reproduce_<dataset>.sh: five seeds, then our table beside the paper's.
#   bash scripts/reproduce.sh DATASET DATA_ROOT [OUTPUT_DIR] [extra run.py options]
set -euo pipefail
if [ $# -lt 2 ]; then echo "usage: $0 DATASET DATA_ROOT [OUTPUT_DIR] [run.py options]" >&2; exit 2; fi
here="$(cd "$(dirname "$0")/.." && pwd)"
dataset="$1"; data="$2"; shift 2
out="${1:-runs/reproduce_$dataset}"; [ $# -gt 0 ] && shift
python "$here/run.py" --dataset "$dataset" --data-root "$data" --output-dir "$out" \
    --seeds 1 2 3 4 5 --quiet "$@"
python "$here/scripts/compare_paper.py" "$out/summary.json" --paper "$dataset"
