#!/usr/bin/env bash
# Reproduce the paper's THUMOS14 table (I3D features, W-TALC bundle) with five seeds.
#   bash scripts/reproduce_thumos14.sh DATA_ROOT [OUTPUT_DIR] [extra run.py options]
# DATA_ROOT holds Thumos14reduced-I3D-JOINTFeatures.npy and Thumos14reduced-Annotations/.
set -euo pipefail
if [ $# -lt 1 ]; then echo "usage: $0 DATA_ROOT [OUTPUT_DIR] [run.py options]" >&2; exit 2; fi
here="$(cd "$(dirname "$0")/.." && pwd)"
data="$1"; shift
out="${1:-runs/reproduce_thumos14}"; [ $# -gt 0 ] && shift
python "$here/run.py" --dataset thumos14 --data-root "$data" --output-dir "$out" \
    --seeds 1 2 3 4 5 --quiet "$@"
python "$here/scripts/compare_paper.py" "$out/summary.json" --paper thumos14
