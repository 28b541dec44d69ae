"""Print a --seeds summary.json beside the EM-MIL paper's published numbers.

    python scripts/compare_paper.py OUTPUT_DIR/summary.json --paper thumos14|activitynet12
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from analysis.published import PAPER  # noqa: E402  (the paper's numbers, one home)
from analysis.seeds import percent  # noqa: E402


def table(summary, paper):
    rows = [f"{'metric':<22} {'ours (mean ± std over seeds)':>30} {'paper':>7}"]
    for name, s in summary["metrics"].items():
        ref = paper.get(name)
        rows.append(f"{name:<22} {percent(s['mean'], s.get('std'), 1):>30}"
                    f" {'' if ref is None else f'{ref:.1f}':>7}")
    rows.append(f"seeds: {summary['seeds']}")
    return "\n".join(rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("summary")
    p.add_argument("--paper", choices=sorted(PAPER), required=True)
    a = p.parse_args(argv)
    try:
        with open(a.summary) as f:
            summary = json.load(f)
        print(table(summary, PAPER[a.paper]))
    except (OSError, ValueError, KeyError) as e:
        print(f"error: {a.summary}: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
