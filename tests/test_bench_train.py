"""bench/bench_train.py at its smoke-test scale: every row of its tables, finite numbers."""
import math
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


def _numbers(line):
    return [float(x) for x in NUMBER.findall(line)]


def test_bench_train_tiny_prints_every_phase_and_path():
    out = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "bench_train.py"),
                          "--scale", "tiny", "--measure-schedule"], cwd=ROOT,
                         capture_output=True, text=True, timeout=600, check=True).stdout
    lines = out.splitlines()
    rows = {line.split()[0]: line for line in lines
            if line.split() and line.split()[0] in ("M1", "E", "M2", "cls", "test")}
    assert set(rows) == {"M1", "E", "M2", "cls", "test"}, out
    for name, line in rows.items():
        values = _numbers(line.split(maxsplit=1)[1])
        # seconds, snippets/s, GFLOP/s, % of matmul, [padded s], reference s, speed-up
        assert len(values) == (7 if name in ("M1", "E", "M2") else 6), line
        assert all(math.isfinite(v) and v >= 0 for v in values), line
        # (a tiny phase may print 0.00 s: its snippets/s says the time was measured)
        assert values[1] > 0 and values[-1] > 0, line
    profiled = [line.split() for line in lines if line.split()[:1] in (["ours"], ["padded"])
                and not line.startswith("padded step:")]
    assert sorted((p[0], p[1]) for p in profiled) == sorted(
        (path, phase) for path in ("ours", "padded") for phase in ("M1", "E", "M2"))
    for p in profiled:            # ops/step, host share (the CPU has no launch or busy figure)
        assert float(p[2]) > 10 and 0 <= float(p[3].rstrip("%")) < 1000 and len(p) == 4, p
    for start in ("padded step:", "projected whole schedule", "reference, the same schedule",
                  "measured dry-run schedule, ours", "measured dry-run schedule, padded"):
        found = [line for line in lines if line.startswith(start)]
        assert len(found) == 1, (start, out)
        assert all(math.isfinite(v) and v > 0 for v in _numbers(found[0])), found[0]


def test_gpu_busy_share_counts_each_kernel_once():
    """Two kernels (0-10 us, 5-15 us on another stream) and a copy (20-30 us), with the CPU
    operations that launched them (0-40 us, which the old sum counted again): 25 us busy."""
    from types import SimpleNamespace
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    from launch_share import DeviceType, device_busy_us, union_length
    event = lambda kind, a, b: SimpleNamespace(device_type=kind,                # noqa: E731
                                               time_range=SimpleNamespace(start=a, end=b))
    gpu = [event(DeviceType.CUDA, *span) for span in ((0, 10), (5, 15), (20, 30))]
    cpu = [event(DeviceType.CPU, 0, 40)]
    assert device_busy_us(cpu + gpu) == 25
    assert union_length([(0, 4), (1, 2), (3, 6), (8, 9)]) == 7
    assert union_length([]) == 0
