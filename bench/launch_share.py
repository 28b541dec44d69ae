"""How much of a training epoch goes into issuing work rather than doing it (torch.profiler).

One video per step is a few dozen small operations. Each costs the host a fixed amount
(Python, torch's dispatch and, on a GPU, the kernel launch) whatever its size; when the
device finishes each operation sooner than the host issues the next one, the loop runs at
the host's pace. Measured on one epoch:

- ops/step: torch operations the profiler records (nested ones included), per step;
- host share: ops x the host cost of one empty operation on the same device, over the
  epoch's wall time (an estimate; on any device);
- launch share (CUDA): wall time inside the CUDA runtime's launch and copy calls;
- device busy (CUDA): the time the GPU runs kernels or copies (the union of their
  intervals, each counted once) over the wall time; 1 - busy is the time the GPU waits for
  the host. (Summing `self_device_time_total` over every profiler row counts each kernel
  twice: once as its own row, once in the row of the operation that launched it.)
"""
import time

import numpy as np
import torch
from torch.autograd import DeviceType
from torch.profiler import ProfilerActivity, profile

LAUNCH_CALLS = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx",
                "cudaGraphLaunch", "cudaMemcpyAsync", "cudaMemsetAsync")


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    """Wall seconds of fn(), the device's queue drained before and after."""
    synchronize(device)
    t0 = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - t0


def empty_op_seconds(device, n=2000, repeats=5):
    """The host's cost of one operation that does nothing of substance (an in-place add to a
    one-element tensor on `device`): the median over `repeats` runs of n."""
    x = torch.zeros(1, device=device)
    per = []
    for _ in range(repeats):
        t = timed(lambda: [x.add_(0) for _ in range(n)], device)
        per.append(t / n)
    return float(np.median(per))


def epoch_shares(fn, device, steps, wall, op_seconds):
    """Run fn (one epoch of `steps` steps, taking `wall` seconds unprofiled) under the
    profiler: dict(ops_per_step, host_share, launch_share, device_busy); the last two None
    on the CPU."""
    activities = [ProfilerActivity.CPU]
    if device.type == "cuda":
        activities.append(ProfilerActivity.CUDA)
    synchronize(device)
    t0 = time.perf_counter()
    with profile(activities=activities) as prof:
        fn()
        synchronize(device)
    profiled = time.perf_counter() - t0
    rows = prof.key_averages()
    ops = sum(r.count for r in rows if r.key.startswith("aten::"))
    out = {"ops_per_step": ops / max(steps, 1), "host_share": ops * op_seconds / wall,
           "launch_share": None, "device_busy": None}
    if device.type == "cuda":             # profiler times are in microseconds
        launch = sum(r.cpu_time_total for r in rows if r.key in LAUNCH_CALLS)
        out["launch_share"] = launch / 1e6 / profiled
        out["device_busy"] = device_busy_us(prof.events()) / 1e6 / profiled
    return out


def device_busy_us(events):
    """Microseconds during which the GPU ran something: the union of the intervals of the
    profiler's device-side events (kernels, copies; a kernel is one such event, whatever
    operation launched it), overlaps (several streams) counted once."""
    spans = [(e.time_range.start, e.time_range.end) for e in events
             if e.device_type == DeviceType.CUDA]
    return union_length(spans)


def union_length(spans):
    """The length of the union of intervals [(start, end)]."""
    total, reach = 0, None
    for start, end in sorted(spans):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total
