#!/usr/bin/env bash
# Reproduce the paper's ActivityNet1.2 numbers (I3D features, W-TALC bundle) with five seeds.
#   bash scripts/reproduce_activitynet12.sh DATA_ROOT [OUTPUT_DIR] [extra run.py options]
# DATA_ROOT holds ActivityNet1.2-I3D-JOINTFeatures.npy and ActivityNet1.2-Annotations/.
usage="usage: $0 DATA_ROOT [OUTPUT_DIR] [run.py options]"
case "${1:-}" in -h|--help) echo "$usage"; exit 0;; esac
if [ $# -lt 1 ]; then echo "$usage" >&2; exit 2; fi
exec bash "$(dirname "$0")/reproduce.sh" activitynet12 "$@"
