#!/usr/bin/env bash
# Reproduce the paper's THUMOS14 table (I3D features, W-TALC bundle) with five seeds.
#   bash scripts/reproduce_thumos14.sh DATA_ROOT [OUTPUT_DIR] [extra run.py options]
# DATA_ROOT holds Thumos14reduced-I3D-JOINTFeatures.npy and Thumos14reduced-Annotations/.
usage="usage: $0 DATA_ROOT [OUTPUT_DIR] [run.py options]"
case "${1:-}" in -h|--help) echo "$usage"; exit 0;; esac
if [ $# -lt 1 ]; then echo "$usage" >&2; exit 2; fi
exec bash "$(dirname "$0")/reproduce.sh" thumos14 "$@"
