"""bench/bench_detect.py at its smoke-test scale: every line it prints, finite positive figures."""
import math
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIGURE = re.compile(r"\s(\d+(?:\.\d+)?)\s*(s|x)$")


def test_bench_detect_tiny_prints_every_figure():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "bench_detect.py"),
                          "--scale", "tiny", "--points", "3"], cwd=ROOT, capture_output=True,
                         text=True, timeout=600, check=True).stdout
    starts = ["detect.py (in this process)", "  of which reading the data",
              "run.py's test pass, same nets", "detect.py / test pass",
              "networks' pass, once", "detection + evaluation a point",
              "grid of 3 points, pass reused", "grid of 3 points, pass again",
              "speed-up of reusing the pass"]
    lines = out.splitlines()
    for start in starts:
        found = [line for line in lines if line.startswith(start)]
        assert len(found) == 1, (start, out)
        value = float(FIGURE.search(found[0]).group(1))
        assert math.isfinite(value) and value > 0, found[0]
    speedup = [line for line in lines if line.startswith("speed-up")][0]
    assert float(FIGURE.search(speedup).group(1)) > 1          # the pass is the cost
