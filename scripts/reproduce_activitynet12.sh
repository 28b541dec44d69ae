#!/usr/bin/env bash
# Reproduce the paper's ActivityNet1.2 numbers (I3D features, W-TALC bundle) with five seeds.
#   bash scripts/reproduce_activitynet12.sh DATA_ROOT [OUTPUT_DIR] [extra run.py options]
# DATA_ROOT holds ActivityNet1.2-I3D-JOINTFeatures.npy and ActivityNet1.2-Annotations/.
set -euo pipefail
if [ $# -lt 1 ]; then echo "usage: $0 DATA_ROOT [OUTPUT_DIR] [run.py options]" >&2; exit 2; fi
here="$(cd "$(dirname "$0")/.." && pwd)"
data="$1"; shift
out="${1:-runs/reproduce_activitynet12}"; [ $# -gt 0 ] && shift
python "$here/run.py" --dataset activitynet12 --data-root "$data" --output-dir "$out" \
    --seeds 1 2 3 4 5 --quiet "$@"
python "$here/scripts/compare_paper.py" "$out/summary.json" --paper activitynet12
